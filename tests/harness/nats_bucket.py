"""Creates a JetStream object store bucket (the stream OBJ_<bucket>) on a
NATS server, speaking the plain NATS protocol, so the test set-up needs no
NATS client library. Exits 0 when the bucket exists afterwards.

    python3 nats_bucket.py HOST PORT USER PASSWORD BUCKET
"""

from __future__ import annotations

import json
import socket
import sys
import time


def request(sock: socket.socket, subject: str, payload: bytes, inbox: str) -> dict:
    sock.sendall(f"PUB {subject} {inbox} {len(payload)}\r\n".encode() + payload + b"\r\n")
    buf = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("server closed the connection")
        buf += chunk
        while b"\r\n" in buf:
            line, rest = buf.split(b"\r\n", 1)
            if line.startswith(b"PING"):
                sock.sendall(b"PONG\r\n")
                buf = rest
            elif line.startswith(b"-ERR"):
                raise RuntimeError(line.decode())
            elif line.startswith(b"MSG "):
                size = int(line.split()[-1])
                if len(rest) < size + 2:
                    break  # wait for the body
                return json.loads(rest[:size])
            else:
                buf = rest
    raise RuntimeError("no answer from JetStream")


def main() -> int:
    host, port, user, password, bucket = sys.argv[1:6]
    sock = socket.create_connection((host, int(port)), timeout=10)
    info = sock.recv(65536)
    if not info.startswith(b"INFO"):
        raise RuntimeError(f"not a NATS server: {info[:60]!r}")
    connect = {"user": user, "pass": password, "verbose": False, "pedantic": False,
               "headers": True, "lang": "python", "version": "0", "protocol": 1}
    inbox = "_INBOX.lsvfs-setup"
    sock.sendall(f"CONNECT {json.dumps(connect)}\r\nSUB {inbox} 1\r\n".encode())
    stream = f"OBJ_{bucket}"
    cfg = {
        "name": stream,
        "description": "litestream-vfs tests",
        "subjects": [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
        "retention": "limits", "max_consumers": -1, "max_msgs": -1, "max_bytes": -1,
        "max_age": 0, "max_msgs_per_subject": -1, "max_msg_size": -1, "discard": "new",
        "storage": "file", "num_replicas": 1, "duplicate_window": 120_000_000_000,
        "allow_rollup_hdrs": True, "allow_direct": True,
    }
    for attempt in range(50):  # JetStream may still be starting
        answer = request(sock, f"$JS.API.STREAM.CREATE.{stream}", json.dumps(cfg).encode(), inbox)
        err = answer.get("error")
        if not err:
            print(f"created object store bucket {bucket}")
            return 0
        if err.get("err_code") == 10058:  # stream name already in use
            return 0
        if err.get("code") == 503 and attempt < 49:
            time.sleep(0.2)
            continue
        raise RuntimeError(f"cannot create bucket {bucket}: {err}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
