#!/usr/bin/env python3
"""Round-trip-injecting, request-counting HTTP/1.1 proxy for the comparison.

    proxy.py --target 127.0.0.1:9000 --rtt-ms 20 --ready-file F

It listens on 127.0.0.1 only (an ephemeral port unless --port is given) and
relays each client connection to its own upstream connection.  Requests are
parsed (head + Content-Length/chunked body) in the client->server direction;
each complete request is handed to the server `rtt` after it arrived, through a
per-connection queue, so pipelined requests keep their order and overlap.  That
models a network where every request/response exchange costs one round trip.
A new connection costs `--connect-rtts` more round trips (TCP handshake) before
its first byte reaches the server.  Responses flow back unparsed and are only
counted.

A second listener (the control port, also 127.0.0.1) answers `GET /stats` with
the counters as JSON: connections, requests by kind (LIST = a GET with a
`list-type`/`prefix` query, RANGE = a GET with a Range header, GET, HEAD,
OTHER), bytes up and down.  The counters only grow; readers take differences.
The ready file receives {"port": P, "control_port": C, "pid": PID}.
"""
import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.parse

LOOPBACK = "127.0.0.1"


class Counters:
    def __init__(self):
        self.connections = 0
        self.requests = 0
        self.kinds = {"LIST": 0, "RANGE": 0, "GET": 0, "HEAD": 0, "OTHER": 0}
        self.bytes_up = 0
        self.bytes_down = 0

    def snapshot(self):
        return {"connections": self.connections, "requests": self.requests,
                "bytes_up": self.bytes_up, "bytes_down": self.bytes_down, **self.kinds}


def classify(method: bytes, target: bytes, headers: dict) -> str:
    if method == b"GET":
        query = urllib.parse.urlsplit(target.decode("latin-1")).query
        keys = {k for k, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
        if "list-type" in keys or "prefix" in keys or "delimiter" in keys:
            return "LIST"
        return "RANGE" if b"range" in headers else "GET"
    if method == b"HEAD":
        return "HEAD"
    return "OTHER"


async def read_request(reader: asyncio.StreamReader):
    """One complete HTTP/1.x request as bytes, plus (method, target, headers); None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head[:-4].split(b"\r\n")
    method, target, *_ = lines[0].split(b" ") + [b"", b""]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    parts = [head]
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers up to the empty line
                    line = await reader.readuntil(b"\r\n")
                    parts.append(line)
                    if line == b"\r\n":
                        break
                break
            parts.append(await reader.readexactly(size + 2))
    else:
        n = int(headers.get(b"content-length", b"0") or b"0")
        if n:
            parts.append(await reader.readexactly(n))
    return b"".join(parts), method, target, headers


class Relay:
    def __init__(self, target, rtt_s, connect_rtts, log_path=None):
        self.log = open(log_path, "a", buffering=1) if log_path else None
        self.target = target
        self.rtt = rtt_s
        self.connect_rtts = connect_rtts
        self.c = Counters()

    async def client(self, creader, cwriter):
        self.c.connections += 1
        conn = self.c.connections
        loop = asyncio.get_running_loop()
        if self.log:
            self.log.write(f"{time.time():.4f} conn={conn} CONNECT - range=-\n")
        queue: asyncio.Queue = asyncio.Queue()
        uwriter = None
        try:
            if self.connect_rtts:
                await asyncio.sleep(self.rtt * self.connect_rtts)
            ureader, uwriter = await asyncio.open_connection(*self.target)

            async def downstream():
                while True:
                    data = await ureader.read(1 << 16)
                    if not data:
                        break
                    self.c.bytes_down += len(data)
                    cwriter.write(data)
                    await cwriter.drain()
                cwriter.close()

            async def upstream_sender():
                while True:
                    due, data = await queue.get()
                    if data is None:
                        return
                    delay = due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    uwriter.write(data)
                    await uwriter.drain()

            down = asyncio.create_task(downstream())
            sender = asyncio.create_task(upstream_sender())
            while True:
                req = await read_request(creader)
                if req is None:
                    break
                data, method, target, headers = req
                self.c.requests += 1
                kind = classify(method, target, headers)
                self.c.kinds[kind] += 1
                if self.log:
                    rng = headers.get(b"range", b"-").decode("latin-1")
                    self.log.write(f"{time.time():.4f} conn={conn} {kind} {target.decode('latin-1')} range={rng}\n")
                self.c.bytes_up += len(data)
                queue.put_nowait((loop.time() + self.rtt, data))
            queue.put_nowait((0, None))
            await sender
            await down
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            for w in (cwriter, uwriter):
                if w is not None:
                    try:
                        w.close()
                    except Exception:  # noqa: BLE001
                        pass

    async def control(self, reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = json.dumps(self.c.snapshot()).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def main(a):
    host, _, port = a.target.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit("target must be on loopback")
    relay = Relay((LOOPBACK, int(port)), a.rtt_ms / 1000.0, a.connect_rtts, a.log)
    server = await asyncio.start_server(relay.client, LOOPBACK, a.port, limit=1 << 20)
    ctl = await asyncio.start_server(relay.control, LOOPBACK, 0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    info = {"port": server.sockets[0].getsockname()[1], "control_port": ctl.sockets[0].getsockname()[1],
            "pid": os.getpid()}
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.replace(tmp, a.ready_file)
    print(f"proxy {info} -> {a.target} rtt={a.rtt_ms}ms", file=sys.stderr, flush=True)
    async with server, ctl:
        await stop.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    ap.add_argument("--connect-rtts", type=float, default=1.0)
    ap.add_argument("--ready-file")
    ap.add_argument("--log", help="append one line per request (and per new connection, kind CONNECT): "
                                  "wall time, connection, kind, target, Range")
    asyncio.run(main(ap.parse_args()))
