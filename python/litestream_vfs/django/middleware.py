"""Read-your-writes: after a request writes through the write alias
(`default`), that client's later reads see the write.

    MIDDLEWARE = [..., "litestream_vfs.django.ReadYourWritesMiddleware"]
    DATABASE_ROUTERS = ["litestream_vfs.django.LitestreamReplicaRouter"]

- A request that writes through `default` (any statement but SELECT,
  EXPLAIN, PRAGMA and transaction control) reads `default` for the rest of
  the request; afterwards the middleware remembers the primary's WAL
  position just past its commit: its salts and offset, read from the
  WAL-index (`-shm`). The position goes into a signed cookie (default) or
  the session (`LITESTREAM["vfs_router"]["read_your_writes"]["store"] =
  "session"`).
- On that client's later requests the router sends a read to a replica
  only once the replica holds that position: Litestream's level-0 file whose
  WAL range (same salts) reaches it names the TXID, and the replica's
  `litestream_txid()` must be at least that. It waits for that at most
  `wait` seconds (default 0.5) once per request, else reads `default`. The
  replica's TXID comes from the router's health checks, which run in the
  background (every 50 ms while a read waits): a replica whose storage does
  not answer costs the read `wait` seconds, never more.
  Once the replica holds it the cookie is dropped.
- When the write alias is not a SQLite file on this host (no WAL to read a
  position from), a timer stands in: reads go to `default` for `pin_seconds`
  (default 5) after the write. That is only as good as replication is fast
  (docs/DJANGO.md has the measured failure rates, two runs of 150 writes
  with Litestream's default intervals: 32-45 % for a 1 s pin, 5-10 % for
  2 s, none for 3 s and 5 s; every write while Litestream is down); the
  exact position is used whenever it can be.

Settings, all optional:

    LITESTREAM["vfs_router"]["read_your_writes"] = {
        "wait": 0.5,            # seconds a read may wait for a replica to catch up
        "store": "cookie",      # or "session"
        "cookie_name": "litestream_rw",
        "max_age": 300,         # seconds a remembered position is kept
        "pin_seconds": 5,       # the timer, when there is no position to read
    }
"""

from __future__ import annotations

import contextvars
import time

from django.core import signing

from . import conf
from . import primary as _primary

_SALT = "litestream_vfs.read_your_writes"
_READ_ONLY = ("SELECT", "EXPLAIN", "PRAGMA", "SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT", "END")


def settings() -> dict:
    router = conf.user_settings().get("vfs_router", {}) or {}
    given = router.get("read_your_writes", {}) or {}
    return {
        "wait": float(given.get("wait", 0.5)),
        "store": given.get("store", "cookie"),
        "cookie_name": given.get("cookie_name", "litestream_rw"),
        "max_age": int(given.get("max_age", 300)),
        "pin_seconds": float(given.get("pin_seconds", 5)),
    }


class RequestState:
    """One request's part in read-your-writes: the client's last write (if
    any), whether this request wrote, and which replicas hold that write."""

    def __init__(self, position: _primary.WalPosition | None, written_at: float | None, options: dict):
        self.position = position
        self.written_at = written_at
        self.options = options
        self.wrote = False
        self.reached: dict[str, bool] = {}

    def watch(self, execute, sql, params, many, context):
        """An execute wrapper on the write alias: notes a write."""
        if not self.wrote:
            text = str(sql).lstrip()
            word = text.split(None, 1)[0].upper() if text else ""
            if word == "WITH":
                upper = text.upper()
                self.wrote = any(w in upper for w in ("INSERT", "UPDATE", "DELETE", "REPLACE"))
            elif word not in _READ_ONLY:
                self.wrote = True
        return execute(sql, params, many, context)

    def pending(self) -> bool:
        return self.position is not None or self.written_at is not None

    def replica_has_write(self, alias: str) -> bool:
        """Whether `alias` holds this client's last write, waiting for it at
        most `wait` seconds, once per request and alias."""
        if self.wrote:
            return False
        if not self.pending():
            return True
        found = self.reached.get(alias)
        if found is None:
            found = self.reached[alias] = self._wait_for(alias)
        return found

    def _wait_for(self, alias: str) -> bool:
        from .health import replica_txid

        db = conf.primary_path(alias)
        if self.position is None or db is None:
            # No position to compare: the timer.
            return self.written_at is None or time.time() - self.written_at >= self.options["pin_seconds"]
        deadline = time.monotonic() + self.options["wait"]
        max_age = None
        while True:
            txid = _primary.covering_txid(_primary.level0(db), self.position)
            if txid is not None:
                have = replica_txid(alias, conf.poll_interval(alias) if max_age is None else max_age)
                if have is not None and have >= txid:
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            max_age = 0.05
            time.sleep(min(0.05, left))

    def caught_up(self, replicas: list[str]) -> bool:
        return self.pending() and bool(replicas) and all(self.reached.get(a) for a in replicas)


_current: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar("litestream_rw", default=None)


def current() -> RequestState | None:
    """The read-your-writes state of the request being served, if any."""
    return _current.get()


def _load(request, options: dict) -> tuple[_primary.WalPosition | None, float | None]:
    if options["store"] == "session":
        data = getattr(request, "session", {}).get(options["cookie_name"])
    else:
        raw = request.COOKIES.get(options["cookie_name"])
        try:
            data = signing.loads(raw, salt=_SALT, max_age=options["max_age"]) if raw else None
        except signing.BadSignature:
            data = None
    if not isinstance(data, dict):
        return None, None
    written_at = data.get("t")
    if not isinstance(written_at, (int, float)) or time.time() - written_at > options["max_age"]:
        return None, None
    position = _primary.WalPosition.decode(data.get("p") or "")
    return position, float(written_at)


def _save(request, response, options: dict, data: dict | None) -> None:
    name = options["cookie_name"]
    if options["store"] == "session":
        session = getattr(request, "session", None)
        if session is None:
            return
        if data is None:
            session.pop(name, None)
        else:
            session[name] = data
        return
    if data is None:
        if name in request.COOKIES:
            response.delete_cookie(name, samesite="Lax")
        return
    response.set_cookie(name, signing.dumps(data, salt=_SALT), max_age=options["max_age"],
                        httponly=True, samesite="Lax", secure=request.is_secure())


class ReadYourWritesMiddleware:
    """See the module's documentation. Put it before any middleware that
    reads through the router."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.db import connections

        from .router import LitestreamReplicaRouter

        options = settings()
        position, written_at = _load(request, options)
        state = RequestState(position, written_at, options)
        write = conf.write_alias()
        token = _current.set(state)
        try:
            with connections[write].execute_wrapper(state.watch):
                response = self.get_response(request)
        finally:
            _current.reset(token)
        if state.wrote:
            db = conf.database_path(write)
            pos = _primary.wal_position(db) if db is not None else None
            _save(request, response, options, {"p": pos.encode() if pos else None, "t": time.time()})
        elif state.caught_up(LitestreamReplicaRouter.read_replicas()):
            _save(request, response, options, None)
        return response
