"""A TCP proxy for HTTP storage servers that injects faults, on loopback
only. Tests switch its mode while the extension talks through it.

modes: pass | delay:<ms> | status:<code>[:<count>] | reset[:<count>] |
       truncate[:<count>] | down
Counts requests and bytes, and keeps an event log in the order the proxy saw
things: each request sent by the client and each answer it passed back, and
marks the test sets (`mark()`). `round_trips(a, b)` reads the sequential
round trips between two marks from that order alone, no clock involved.

`delay:<ms>` holds each request that long before it goes upstream: one round
trip per request/answer exchange, and concurrent requests overlap (each
connection has its own delay).

It also keeps every request head (`heads`), and a `gate` (a function of a
request head) may answer a request with a status of its own instead of
passing it on."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field


@dataclass
class Exchange:
    """One request through the proxy: where in the event log it was sent
    (arrived from the client) and answered (its answer passed back to the
    client; None while pending or when there was no answer)."""

    id: int
    conn: int
    kind: str  # LIST, RANGE, GET, HEAD or the method
    target: str
    sent: int
    answered: int | None = None


@dataclass
class RoundTrips:
    """What happened between two marks: `count` sequential round trips,
    `requests` sent, and the requests of each round (by kind)."""

    count: int
    requests: int
    rounds: list[dict] = field(default_factory=list)
    unanswered: int = 0

    def __str__(self) -> str:
        return (f"{self.count} round trip(s), {self.requests} request(s) "
                f"({self.unanswered} not answered before the end mark): {self.rounds}")


class FaultProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1", log: bool = True):
        self.upstream = (host, upstream_port)
        self.host = host
        self.mode = "pass"
        self.remaining = 0
        self.requests = 0
        self.bytes_down = 0
        # The event log: a position is an event's place in the order the
        # proxy saw things (a request sent, an answer passed back, a mark).
        self._log_lock = threading.Lock()
        self._events = 0
        self.exchanges: list[Exchange] = []
        self._keep_log = log  # False for long runs that never read it
        self._conns = 0
        self.heads: list[bytes] = []
        self.gate = None
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # --- control, from the test thread -------------------------------------------------
    def start(self) -> "FaultProxy":
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        fut.result(10)
        return self

    def stop(self) -> None:
        async def close():
            if self._server:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


    def set(self, mode: str) -> None:
        """Sets the mode; a `:<count>` suffix limits the fault to that many requests."""
        parts = mode.split(":")
        kind = parts[0]
        if kind in ("status",):
            self.mode = f"status:{parts[1]}"
            self.remaining = int(parts[2]) if len(parts) > 2 else -1
        elif kind in ("reset", "truncate"):
            self.mode = kind
            self.remaining = int(parts[1]) if len(parts) > 1 else -1
        else:
            self.mode = mode
            self.remaining = -1

    # --- the event log -------------------------------------------------------------------
    def _next_event(self) -> int:
        with self._log_lock:
            self._events += 1
            return self._events

    def mark(self) -> int:
        """A position in the event log: every request sent after this call
        returns comes later, every answer passed back before it is earlier."""
        return self._next_event()

    def _sent(self, conn: int, head: bytes) -> Exchange:
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        method, target = line[0], line[1] if len(line) > 1 else ""
        kind = method
        if method == "GET":
            query = target.partition("?")[2]
            if "list-type" in query or "prefix=" in query or "delimiter" in query:
                kind = "LIST"
            elif b"\r\nrange:" in head.lower():
                kind = "RANGE"
        with self._log_lock:
            self._events += 1
            ex = Exchange(len(self.exchanges), conn, kind, target, self._events)
            if self._keep_log:
                self.exchanges.append(ex)
        return ex

    def _answered(self, ex: Exchange) -> None:
        ex.answered = self._next_event()

    def round_trips(self, start: int, end: int) -> RoundTrips:
        """Sequential round trips between marks `start` and `end`, from the
        order of events alone: the longest chain of requests, each sent after
        the previous one's answer went back to the client, among the requests
        sent and answered between the marks. Requests in one round were all
        sent before any answer of that round came back, so none of them can
        have waited for another; a request sent after an answer may have (a
        B-tree child after its parent), and starts a later round. A request
        answered after `end` was not waited for by what ran between the
        marks and is counted as sent, not as a round trip."""
        with self._log_lock:
            window = [e for e in self.exchanges if start < e.sent < end]
        done = [e for e in window if e.answered is not None and e.answered < end]
        depth: dict[int, int] = {}
        for e in sorted(done, key=lambda e: e.sent):
            depth[e.id] = 1 + max((depth[d.id] for d in done if d.answered < e.sent), default=0)
        count = max(depth.values(), default=0)
        rounds: list[dict] = [{} for _ in range(count)]
        for e in done:
            r = rounds[depth[e.id] - 1]
            r[e.kind] = r.get(e.kind, 0) + 1
        return RoundTrips(count, len(window), rounds, len(window) - len(done))

    # --- the proxy ----------------------------------------------------------------------
    async def _listen(self):
        self._server = await asyncio.start_server(self._client, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def _take_fault(self) -> str:
        if self.mode == "pass" or self.mode.startswith("delay") or self.mode == "down":
            return self.mode
        if self.remaining == 0:
            return "pass"
        if self.remaining > 0:
            self.remaining -= 1
        return self.mode

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._conns += 1
        conn = self._conns
        try:
            if self.mode == "down":
                writer.transport.abort()
                return
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    break
                body = await _read_body(reader, head)
                self.requests += 1
                if self._keep_log:
                    self.heads.append(head)
                gated = self.gate(head) if self.gate else None
                if gated:
                    msg = f"HTTP/1.1 {gated} Gated\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"
                    writer.write(msg.encode())
                    await writer.drain()
                    continue
                ex = self._sent(conn, head)
                fault = self._take_fault()
                if fault == "down":
                    writer.transport.abort()
                    break
                if fault.startswith("delay:"):
                    await asyncio.sleep(int(fault.split(":")[1]) / 1000)
                if fault.startswith("status:"):
                    code = int(fault.split(":")[1])
                    msg = f"HTTP/1.1 {code} Injected\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"
                    self._answered(ex)
                    writer.write(msg.encode())
                    await writer.drain()
                    continue
                if fault == "reset":
                    writer.transport.abort()
                    break
                up_w.write(head + body)
                await up_w.drain()
                resp_head = await _read_head(up_r)
                if resp_head is None:
                    break
                # A response to HEAD announces a length but carries no body.
                resp_body = b"" if head.startswith(b"HEAD ") else await _read_body(up_r, resp_head)

                if fault == "truncate" and len(resp_body) > 1:
                    writer.write(resp_head + resp_body[: len(resp_body) // 2])
                    await writer.drain()
                    writer.transport.abort()
                    break
                self.bytes_down += len(resp_body)
                # Logged before the write: nothing else runs on this loop in
                # between, and the client cannot see the answer any sooner.
                self._answered(ex)
                writer.write(resp_head + resp_body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            up_w.close()
            writer.close()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    headers = head.decode("latin-1").lower()
    length = 0
    chunked = "transfer-encoding: chunked" in headers
    for line in headers.split("\r\n"):
        if line.startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    if head.split(b" ")[1:2] in ([b"204"], [b"304"]):
        return b""

    if chunked:
        out = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            out += size_line + chunk
            if size == 0:
                return out
    return await reader.readexactly(length) if length else b""
