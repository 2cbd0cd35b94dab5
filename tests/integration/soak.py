"""Long-running checks of a replica under load, used with short durations by
the test suite and at length by `scripts/soak`.

- `soak`: follow a busy primary with compaction and retention on, from many
  threads and connections of one process, and watch memory and descriptors.

      .venv/bin/python tests/integration/soak.py --minutes 30

- `churn`: several reader processes share one disk tier and one hydration
  path over S3 (through the latency proxy) while a bank-transfer writer
  runs on a WAL primary under the real `litestream replicate`, compaction
  every 2 s and a new snapshot every 20 s; readers are killed (SIGKILL) and
  paused (SIGSTOP) at random, some pauses aimed at a reader that holds the
  shared store's lock, the test itself holds that lock past the limit now
  and then, and the replica is reset to a different database twice (one
  reader sleeps through each reset until the new lineage reuses the names
  of the files its state was read from). Every read transaction checks the invariants of
  `check_read`; see `churn()` for what is counted and what must be zero.

      .venv/bin/python tests/integration/soak.py --churn --minutes 10 [--seed N]

  A reader process is this file too: `soak.py reader URI LIMIT_SECONDS`.

Exits non-zero when an invariant breaks."""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import lsvfs  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402
from test_follow import ACCOUNTS, COMPACTING, START, bank, transfer  # noqa: E402


def rss_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def soak(seconds: float, threads: int = 32, conns: int = 64, cache: str = "32MiB", out=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="lsvfs-soak-") as tmp:
        tmp = Path(tmp)
        db, replica = tmp / "bank.db", tmp / "replica"
        primary = bank(db)
        config = COMPACTING + lsvfs.file_replica_config(db, replica, l1_interval="2s")
        with lsvfs.Litestream(config, tmp):
            url = lsvfs.file_url(replica)
            lsvfs.wait_replica_matches(url, lsvfs.digest(primary), timeout=60, name="soak-0.db",
                                       cache_size=cache).close()
            pool = [lsvfs.connect(url, name=f"soak-{i}.db", cache_size=cache) for i in range(conns)]
            stop = threading.Event()
            errors: list[str] = []
            reads = [0] * threads
            written = [0]

            def writer():
                rnd = random.Random(1)
                n = 0
                while not stop.is_set():
                    n += 1
                    transfer(primary, rnd, n)
                    written[0] = n
                    time.sleep(0.01)

            def reader(k: int):
                last = {}
                while not stop.is_set():
                    for c in pool[k::threads]:
                        try:
                            total, n = c.execute("SELECT (SELECT sum(balance) FROM accounts),"
                                                 " (SELECT n FROM counter)").fetchone()
                        except sqlite3.Error as e:
                            errors.append(repr(e))
                            continue
                        if total != ACCOUNTS * START:
                            errors.append(f"torn state: sum {total}")
                        if n < last.get(id(c), 0):
                            errors.append(f"went back: {n} < {last[id(c)]}")
                        last[id(c)] = n
                        reads[k] += 1

            ts = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(k,))
                                                        for k in range(threads)]
            for t in ts:
                t.start()
            start = time.monotonic()
            samples = []
            try:
                while time.monotonic() - start < seconds and not errors:
                    time.sleep(min(10, seconds / 5))
                    samples.append((round(time.monotonic() - start), rss_kb(), fds()))
                    out(f"t={samples[-1][0]}s rss={samples[-1][1] // 1024}MiB fds={samples[-1][2]} "
                        f"reads={sum(reads)} written={written[0]}")
            finally:
                stop.set()
                for t in ts:
                    t.join()
            expected = lsvfs.digest(primary)
            final = lsvfs.connect(url, name="soak-final.db", cache_size=cache)
            lsvfs.wait_for(lambda: lsvfs.digest(final) == expected, 30, what="final digest")
            return {"errors": errors[:10], "reads": sum(reads), "written": written[0], "samples": samples}


# ------------------------------------------------------------------ churn with resets
#
# Each lineage (one database replicated from TXID 1; a reset starts the next)
# has its own tag, number of accounts and bank total, and every row carries
# the tag and a checksum of its own values. A read transaction is right when
# it is the state of one TXID of one lineage: every checksum holds, every row
# has the lineage's tag, the balances add up to that lineage's total, no row
# is newer than the counter, the log holds exactly the counter's last
# entries, and the counter and the lineage never move backwards.

LOG_TAIL = 20  # log rows each read checks, ending at the counter
LOG_KEEP = 500  # log rows the writer keeps
FILL_READ = 30  # filler rows each read checks (a random range)


def chk(*fields) -> int:
    """The checksum column: crc32 over the row's other values."""
    return zlib.crc32(repr(fields).encode())


@dataclass(frozen=True)
class Lineage:
    index: int
    tag: str
    accounts: int
    start: int
    filler: int

    @property
    def total(self) -> int:
        return self.accounts * self.start

    @staticmethod
    def nth(index: int, seed: int) -> "Lineage":
        # Sizes differ per lineage, so pages and root pages differ too.
        return Lineage(index, f"L{index}-{seed:x}", 20 + 7 * index, 1000 * (index + 1), 1200 + 400 * index)


def create_lineage(path: Path, lin: Lineage, rnd: random.Random) -> sqlite3.Connection:
    conn = lsvfs.primary(path)
    conn.executescript("""
        CREATE TABLE meta(id INTEGER PRIMARY KEY, lineage INTEGER, tag TEXT, accounts INTEGER,
                          total INTEGER, chk INTEGER);
        CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER, ver INTEGER, tag TEXT, chk INTEGER);
        CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER, tag TEXT, chk INTEGER);
        CREATE TABLE log(n INTEGER PRIMARY KEY, tag TEXT, note TEXT, chk INTEGER);
        CREATE TABLE filler(id INTEGER PRIMARY KEY, ver INTEGER, tag TEXT, data BLOB, chk INTEGER);
    """)
    t = lin.tag
    conn.execute("BEGIN")
    conn.execute("INSERT INTO meta VALUES (1, ?, ?, ?, ?, ?)",
                 (lin.index, t, lin.accounts, lin.total, chk("meta", lin.index, t, lin.accounts, lin.total)))
    conn.executemany("INSERT INTO accounts VALUES (?, ?, 0, ?, ?)",
                     [(i, lin.start, t, chk("acct", i, lin.start, 0, t)) for i in range(lin.accounts)])
    conn.execute("INSERT INTO counter VALUES (1, 0, ?, ?)", (t, chk("counter", 0, t)))
    rows = []
    for i in range(lin.filler):
        data = rnd.randbytes(700)  # incompressible: the snapshot is read frame by frame
        rows.append((i, 0, t, data, chk("fill", i, 0, t, data)))
    conn.executemany("INSERT INTO filler VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    return conn


def churn_transfer(conn: sqlite3.Connection, lin: Lineage, rnd: random.Random, n: int) -> None:
    """One bank transfer, the counter, a log entry and two filler rows, in
    one transaction; every written row gets version n."""
    t = lin.tag
    a, b = rnd.sample(range(lin.accounts), 2)
    amount = rnd.randrange(1, 50)
    conn.execute("BEGIN IMMEDIATE")
    for acct, delta in ((a, -amount), (b, amount)):
        (bal,) = conn.execute("SELECT balance FROM accounts WHERE id = ?", (acct,)).fetchone()
        conn.execute("UPDATE accounts SET balance = ?, ver = ?, chk = ? WHERE id = ?",
                     (bal + delta, n, chk("acct", acct, bal + delta, n, t), acct))
    conn.execute("UPDATE counter SET n = ?, chk = ? WHERE id = 1", (n, chk("counter", n, t)))
    # Notes up to 6 KB: some spill into overflow pages.
    note = rnd.randbytes(rnd.randrange(0, 3000)).hex()
    conn.execute("INSERT INTO log VALUES (?, ?, ?, ?)", (n, t, note, chk("log", n, t, note)))
    # The log keeps its last LOG_KEEP entries: the database stays small in
    # a long run (readers check the last LOG_TAIL).
    conn.execute("DELETE FROM log WHERE n = ?", (n - LOG_KEEP,))
    for i in rnd.sample(range(lin.filler), 2):
        data = rnd.randbytes(700)
        conn.execute("UPDATE filler SET ver = ?, data = ?, chk = ? WHERE id = ?",
                     (n, data, chk("fill", i, n, t, data), i))
    conn.execute("COMMIT")


class Violation(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def check_read(conn: sqlite3.Connection, rnd: random.Random, last: tuple[int, int] | None) -> tuple[int, int]:
    """One read transaction and its invariants; returns (lineage, counter).
    Raises Violation: `wrong` (a checksum fails), `mixed` (rows of two
    lineages), `torn` (rows of two states of one lineage), `back` (the
    counter or the lineage moved backwards)."""
    conn.execute("BEGIN")
    try:
        meta = conn.execute("SELECT lineage, tag, accounts, total, chk FROM meta WHERE id = 1").fetchone()
        accts = conn.execute("SELECT id, balance, ver, tag, chk FROM accounts ORDER BY id").fetchall()
        counter = conn.execute("SELECT n, tag, chk FROM counter WHERE id = 1").fetchone()
        n = counter[0] if counter else 0
        logs = conn.execute("SELECT n, tag, note, chk FROM log WHERE n > ? ORDER BY n",
                            (max(0, n - LOG_TAIL),)).fetchall()
        top = conn.execute("SELECT max(id) FROM filler").fetchone()[0] or 0
        lo = rnd.randrange(0, max(1, top - FILL_READ))
        fill = conn.execute("SELECT id, ver, tag, data, chk FROM filler WHERE id BETWEEN ? AND ? ORDER BY id",
                            (lo, lo + FILL_READ - 1)).fetchall()
    finally:
        conn.execute("COMMIT")
    if meta is None or counter is None:
        raise Violation("torn", f"meta {meta!r} counter {counter!r}")
    lineage, tag, accounts, total, mchk = meta
    if mchk != chk("meta", lineage, tag, accounts, total):
        raise Violation("wrong", f"meta row {meta!r}")
    wrong = [r for r in accts if r[4] != chk("acct", r[0], r[1], r[2], r[3])]
    wrong += [r for r in logs if r[3] != chk("log", r[0], r[1], r[2])]
    wrong += [r[:3] for r in fill if r[4] != chk("fill", r[0], r[1], r[2], r[3])]
    if counter[2] != chk("counter", counter[0], counter[1]):
        wrong.append(counter)
    if wrong:
        raise Violation("wrong", f"{len(wrong)} row(s) with a bad checksum in lineage {tag}: {wrong[:3]!r}")
    tags = {r[3] for r in accts} | {r[1] for r in logs} | {r[2] for r in fill} | {counter[1]}
    if tags != {tag}:
        raise Violation("mixed", f"one read saw lineages {sorted(tags)} (meta says {tag})")
    if len(accts) != accounts or sum(r[1] for r in accts) != total:
        raise Violation("torn", f"{tag}: {len(accts)} accounts summing to {sum(r[1] for r in accts)}, "
                                f"want {accounts} summing to {total}, at counter {n}")
    newest = max([r[2] for r in accts] + [r[1] for r in fill], default=0)
    if newest > n:
        raise Violation("torn", f"{tag}: a row of version {newest} under counter {n}")
    want_log = list(range(max(0, n - LOG_TAIL) + 1, n + 1))
    if [r[0] for r in logs] != want_log:
        raise Violation("torn", f"{tag}: log {[r[0] for r in logs]} under counter {n}")
    if [r[0] for r in fill] != list(range(lo, min(lo + FILL_READ, top + 1))):
        raise Violation("torn", f"{tag}: filler rows {[r[0] for r in fill][:5]}… for {lo}..{lo + FILL_READ - 1}")
    if last is not None and (lineage, n) < last:
        raise Violation("back", f"read lineage {lineage} counter {n} after lineage {last[0]} counter {last[1]}")
    return lineage, n


def classify(e: sqlite3.Error) -> str:
    """An error of a read: `corrupt` and `schema` mean a wrong state was
    read (an invariant broke); anything else (I/O errors after a reset or a
    compaction, a replica that is empty during a reset) is allowed and
    counted."""
    text = str(e).lower()
    if "malformed" in text or "corrupt" in text or "not a database" in text:
        return "corrupt"
    if "no such table" in text or "no such column" in text:
        return "schema"
    return "io_errors"


class LiveClock:
    """Seconds this process was running, not stopped: a thread adds up short
    sleeps, each counted at most `cap` s, so that time under SIGSTOP (one
    long gap) is not counted as waiting."""

    def __init__(self, tick: float = 0.05, cap: float = 0.25):
        self.now = 0.0
        self._tick, self._cap = tick, cap
        self.on_tick = lambda: None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        last = time.monotonic()
        while True:
            time.sleep(self._tick)
            t = time.monotonic()
            self.now += min(t - last, self._cap)
            last = t
            self.on_tick()


# The extension's counters a reader reports (PRAGMA litestream_stats): that
# the run reached storage, the shared store and the reset path.
STATS = ("reads", "resets", "replans", "store_hits", "store_misses", "store_writes", "cache_misses")


def reader_main(uri: str, limit: float) -> int:
    """A reader process of the churn: reads and checks until SIGTERM; one
    JSON line per violation, a status line every second. A read that takes
    longer than `limit` seconds of running time is a `slow` event (printed
    once, as soon as it passes the limit, even if it never returns)."""
    out_lock = threading.Lock()

    def emit(**kv):
        with out_lock:
            print(json.dumps(kv), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    counts = {"reads": 0, "io_errors": 0, "slow": 0}
    state = {"last": None, "started": None, "flagged": False, "what": "open", "stats": {}}
    clock = LiveClock()
    next_status = [0.0]

    def watch():
        started = state["started"]
        if started is not None and not state["flagged"] and clock.now - started > limit:
            state["flagged"] = True
            counts["slow"] += 1
            emit(ev="violation", kind="slow",
                 detail=f"{state['what']} still running after {limit:.0f} s of running time")
        if clock.now >= next_status[0]:
            next_status[0] = clock.now + 1
            emit(ev="status", last=state["last"], stats=state["stats"], **counts)

    clock.on_tick = watch
    lsvfs.load_extension()
    rnd = random.Random(os.getpid())
    conn = None
    while not stop.is_set():
        state["flagged"], state["started"] = False, clock.now
        try:
            if conn is None:
                state["what"] = "open"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA cache_size=20")  # SQLite's own cache small: reads reach the extension
            state["what"] = "read"
            state["last"] = list(check_read(conn, rnd, tuple(state["last"]) if state["last"] else None))
            counts["reads"] += 1
            if counts["reads"] % 20 == 1:
                row = conn.execute("PRAGMA litestream_stats").fetchone()
                state["stats"] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", row[0] if row else "")
                                  if k in STATS}
        except Violation as v:
            emit(ev="violation", kind=v.kind, detail=v.detail)
        except sqlite3.Error as e:
            kind = classify(e)
            if kind == "io_errors":
                counts["io_errors"] += 1
            else:
                emit(ev="violation", kind=kind, detail=repr(e))
            if conn is not None and conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            time.sleep(0.05)
        finally:
            state["started"] = None
        time.sleep(rnd.uniform(0, 0.02))
    emit(ev="status", last=state["last"], stats=state["stats"], final=True, **counts)
    return 0


def utc() -> str:
    """The time of day in UTC, as the extension's log lines in readers.log."""
    now = time.time()
    return time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}"


def waits(pid: int) -> dict[str, int]:
    """Where the threads of a process wait in the kernel (wchan), counted:
    `flock_lock_inode_wait` or `locks_lock_inode_wait` is a flock."""
    out: dict[str, int] = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                    w = f.read().strip() or "-"
            except OSError:
                continue
            out[w] = out.get(w, 0) + 1
    except OSError:
        pass
    return out


class Reader:
    """One reader process and what it has said so far."""

    def __init__(self, uri: str, limit: float, env: dict, log: Path, kind: int = 0):
        self.kind = kind  # index into the churn's URIs: 0 hydrates, 1 uses the disk tier
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), "reader", uri, str(limit)],
                                     stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        self.status: dict = {}
        self.violations: list[dict] = []
        self.stopped_until: float | None = None
        self.wake_at_txid: int | None = None  # asleep through a reset until the new lineage is there
        self.asleep_in = 0  # the lineage it fell asleep in
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("ev") == "status":
                self.status = ev
            elif ev.get("ev") == "violation":
                ev["pid"] = self.proc.pid
                ev["reader"] = ("hydrating", "disk tier")[self.kind]
                ev["at"] = utc()
                if ev.get("kind") == "slow":
                    ev["detail"] += f"; its threads wait in: {waits(self.proc.pid)}"
                self.violations.append(ev)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def finish(self, timeout: float) -> bool:
        """SIGTERM, then wait; False (and SIGKILL) when it did not exit in
        time: a read stuck inside the extension."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            ok = True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            ok = False
        self.thread.join(5)
        self.log.close()
        return ok


def store_files(tmp: Path) -> set[str]:
    """The shared store files of a churn run (the disk tier's page files and
    the hydrated copy), as /proc/locks names them: major:minor:inode."""
    out = set()
    for p in [*(tmp / "disk-tier").glob("*.pages"), tmp / "hydrated"]:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        out.add(f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}")
    return out


def lock_holders(files: set[str]) -> set[int]:
    """Processes holding an exclusive flock on one of `files` now."""
    holders = set()
    with open("/proc/locks") as f:
        for line in f:
            x = line.split()
            # "1: FLOCK  ADVISORY  WRITE 12345 fe:00:1234 0 EOF"; waiters have "->"
            if len(x) >= 6 and x[1] == "FLOCK" and x[3] == "WRITE" and x[5] in files:
                holders.add(int(x[4]))
    return holders


def delete_prefix(servers, path: str) -> int:
    """Deletes every object under `path` in the S3 bucket: the objects'
    files, and the metadata files (ETag, user metadata) s3s-fs keeps beside
    the bucket's folder, named by the base64 of bucket and key; s3s-fs's
    own DeleteObject leaves those behind, so all of the prefix's go here.
    Returns the number of objects."""
    if not path or path.startswith("/") or ".." in path:
        raise ValueError(f"not a replica prefix: {path!r}")
    bucket_dir = Path(servers.env["LSVFS_S3_DIR"])
    b64 = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    sidecar = f".bucket-{b64(servers.bucket.encode())}.object-"
    for name in os.listdir(bucket_dir.parent):
        if not name.startswith(sidecar):
            continue
        enc = name[len(sidecar):].split(".", 1)[0]
        try:
            key = base64.urlsafe_b64decode(enc + "=" * (-len(enc) % 4)).decode()
        except ValueError:
            continue
        if key.startswith(path + "/"):
            (bucket_dir.parent / name).unlink(missing_ok=True)
    objects = [f for f in (bucket_dir / path).rglob("*") if f.is_file()]
    shutil.rmtree(bucket_dir / path, ignore_errors=True)
    return len(objects)


def newest_txid(s3_dir: Path) -> int:
    """The highest TXID any file of the replica ends at (0 when empty)."""
    top = 0
    for f in s3_dir.glob("*/*.ltx"):
        try:
            top = max(top, int(f.stem.split("-")[1], 16))
        except (IndexError, ValueError):
            continue
    return top


def churn_config(db: Path, replica_yaml: str, snapshot_interval: str) -> str:
    return f"""l0-retention: 3s
l0-retention-check-interval: 1s
levels:
  - interval: 2s
snapshot:
  interval: {snapshot_interval}
  retention: 2m
dbs:
  - path: {db}
    monitor-interval: 100ms
    replica:
      sync-interval: 200ms
{replica_yaml}"""


def remove_database(path: Path) -> None:
    """The primary, its -wal and -shm, and Litestream's `.db-litestream` state."""
    for p in path.parent.iterdir():
        if p.name.startswith(path.name) or p.name.startswith("." + path.name):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def churn(servers, seconds: float, readers: int = 4, resets: int = 2, seed: int | None = None,
          snapshot_interval: str = "20s", storage_timeout: float = 3, margin: float = 5,
          rtt_ms: int = 20, out=print, workdir: Path | None = None, kinds: tuple[int, ...] = (0, 1)) -> dict:
    """The churn run. Returns the counts; the caller asserts. Must be zero:
    `wrong` rows (a checksum fails), `mixed` reads (two lineages in one
    transaction), `torn` reads (two states of one lineage), `back` (the
    counter or the lineage went backwards), `corrupt` and `schema` errors,
    `slow` reads (longer than storage_timeout + margin of running time: a
    hang detector, not a speed test), `hung_at_exit` readers, and `stale`
    readers (not at the final state when the writer stopped). Counted and
    allowed: `io_errors` (a read that fails with an I/O error around a
    reset or a compaction, as the README documents)."""
    seed = random.randrange(1 << 32) if seed is None else seed
    out(f"churn: seed={seed} readers={readers} resets={resets} seconds={seconds} "
        f"storage_timeout={storage_timeout}s limit={storage_timeout + margin}s snapshot={snapshot_interval}")
    rnd = random.Random(seed)
    limit = storage_timeout + margin
    with contextlib.ExitStack() as stack:
        tmp = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lsvfs-churn-")))
        db = tmp / "bank.db"
        path = f"churn-{seed:x}-{os.getpid()}"
        s3_dir = Path(servers.env["LSVFS_S3_DIR"]) / path
        port = int(urllib.parse.urlsplit(servers.env["LSVFS_S3_ENDPOINT"]).port)
        proxy = FaultProxy(port, log=False).start()
        stack.callback(proxy.stop)
        proxy.set(f"delay:{rtt_ms}")
        url = (f"s3://{servers.bucket}/{path}?endpoint=http://127.0.0.1:{proxy.port}"
               "&region=us-east-1&force-path-style=true")
        # Every other reader hydrates (all of those share one hydration
        # path); the others share one disk tier (a process that hydrates
        # keeps its pages in the hydrated copy, not in the disk tier). A
        # memory cache of the minimum size: reads keep reaching the store and
        # storage. `poll_interval` short, so resets are seen within the run.
        common = dict(storage_timeout=f"{storage_timeout:g}s", poll_interval="200ms", cache_size="1MiB",
                      verify="fetched")
        uris = [lsvfs.replica_uri(url, "churn.db", hydration_enabled="true", hydration_path=tmp / "hydrated",
                                  **common),
                lsvfs.replica_uri(url, "churn.db", disk_cache=tmp / "disk-tier", **common)]
        env = {**os.environ, **servers.reader_env("s3"), "LITESTREAM_LOG_LEVEL": "INFO"}
        config = churn_config(db, servers.litestream_replica("s3", path), snapshot_interval)
        stack.callback(delete_prefix, servers, path)

        lin = Lineage.nth(0, seed)
        state = {"conn": create_lineage(db, lin, rnd), "lin": lin, "n": 0, "ls": None}
        counts = {"kills": 0, "stops": 0, "stops_holding_lock": 0, "lock_holds": 0, "resets": 0,
                  "slept_through_reset": 0, "compactions": 0}

        def start_litestream():
            state["ls"] = lsvfs.Litestream(config, tmp, env=servers.litestream_env("s3")).__enter__()

        def stop_litestream():
            if state["ls"] is not None:
                state["ls"].__exit__(None, None, None)
                counts["compactions"] += state["ls"].output().count("compaction complete")
                state["ls"] = None

        start_litestream()
        stack.callback(stop_litestream)
        writer_stop = threading.Event()
        writer_errors: list[str] = []

        def write():
            wr = random.Random(rnd.random())
            while not writer_stop.is_set():
                try:
                    churn_transfer(state["conn"], state["lin"], wr, state["n"] + 1)
                    state["n"] += 1
                except sqlite3.Error as e:
                    writer_errors.append(repr(e))
                    time.sleep(0.1)
                time.sleep(wr.uniform(0.01, 0.04))

        def start_writer() -> threading.Thread:
            writer_stop.clear()
            t = threading.Thread(target=write, daemon=True)
            t.start()
            return t

        def wait_first_state(lin: Lineage):
            # Litestream has uploaded the lineage's first level-0 file (s3s-fs
            # keeps objects as files): the replica can be opened. Looked at
            # on disk, so that this process never opens the replica itself.
            lsvfs.wait_for(lambda: any((s3_dir / "0000").glob("*.ltx")), 60, interval=0.1,
                           what=f"lineage {lin.tag} on S3")

        wait_first_state(lin)
        writer = start_writer()
        stack.callback(writer_stop.set)
        pool: list[Reader] = []
        retired: list[Reader] = []
        logs = tmp / "readers.log"
        # On an exception: no reader left behind, stopped or running.
        stack.callback(lambda: [r.proc.kill() for r in pool if r.proc.poll() is None])

        def spawn(kind: int) -> Reader:
            r = Reader(uris[kind], limit, env, logs, kind)
            pool.append(r)
            return r

        for i in range(readers):
            spawn(kinds[i % len(kinds)])
        holds: list[tuple] = []  # (open store file holding our flock, until)
        stack.callback(lambda: [f.close() for f, _ in holds])

        def files_now() -> list[Path]:
            return [p for p in [*(tmp / "disk-tier").glob("*.pages"), tmp / "hydrated"] if p.exists()]

        reset_at = [seconds * (i + 1) / (resets + 1) for i in range(resets)]
        sleep_at = [t - seconds / (resets + 1) / 2 for t in reset_at]
        t0 = time.monotonic()
        try:
            while (now := time.monotonic() - t0) < seconds:
                for r in pool:
                    if (r.wake_at_txid is not None and state["lin"].index > r.asleep_in
                            and newest_txid(s3_dir) >= r.wake_at_txid):
                        out(f"{utc()} t={now:.0f}s waking pid {r.proc.pid}, asleep since the reset, "
                            f"at TXID {r.wake_at_txid:#x} of the new lineage")
                        r.stopped_until, r.wake_at_txid = time.monotonic(), None
                    if r.stopped_until is not None and time.monotonic() >= r.stopped_until:
                        r.signal(signal.SIGCONT)
                        r.stopped_until = None
                for h in [h for h in holds if time.monotonic() >= h[1]]:
                    h[0].close()  # releases the flock
                    holds.remove(h)
                if sleep_at and now >= sleep_at[0]:
                    sleep_at.pop(0)
                    # Halfway to a reset, one reader is stopped (SIGSTOP) and
                    # sleeps through the reset until the new lineage has
                    # reached the TXID of the state it holds: files of the
                    # same names now hold the new lineage's bytes, and its
                    # next reads may reach them before its poller sees the
                    # reset. They must fail or read the new state, never mix.
                    running = [r for r in pool if r.stopped_until is None]
                    if len(running) > 1:
                        sleeper = rnd.choice(running)
                        sleeper.signal(signal.SIGSTOP)
                        sleeper.stopped_until = float("inf")
                        sleeper.wake_at_txid = newest_txid(s3_dir)
                        sleeper.asleep_in = state["lin"].index
                        counts["slept_through_reset"] += 1
                        out(f"{utc()} t={now:.0f}s pid {sleeper.proc.pid} stopped at TXID "
                            f"{sleeper.wake_at_txid:#x}, to sleep through the reset")
                if reset_at and now >= reset_at[0]:
                    reset_at.pop(0)
                    writer_stop.set()
                    writer.join()
                    stop_litestream()
                    state["conn"].close()
                    remove_database(db)
                    delete_prefix(servers, path)
                    lin = Lineage.nth(state["lin"].index + 1, seed)
                    state.update(conn=create_lineage(db, lin, rnd), lin=lin, n=0)
                    start_litestream()
                    counts["resets"] += 1
                    out(f"{utc()} t={now:.0f}s reset to lineage {lin.tag}")
                    wait_first_state(lin)
                    writer = start_writer()
                    continue
                action = rnd.random()
                if not counts["lock_holds"] and now > seconds / 6:
                    action = 0.45  # at least one lock hold per run (the branch below)
                running = [r for r in pool if r.stopped_until is None]
                if action < 0.25 and running:
                    victim = rnd.choice(running)
                    victim.signal(signal.SIGKILL)
                    victim.proc.wait()
                    pool.remove(victim)
                    victim.finish(1)
                    retired.append(victim)
                    spawn(victim.kind)  # its successor uses the same kind of store
                    counts["kills"] += 1
                elif action < 0.4 and len(running) > 1:
                    victim = rnd.choice(running)
                    victim.signal(signal.SIGSTOP)
                    victim.stopped_until = time.monotonic() + rnd.uniform(2, 2.5 * limit)
                    counts["stops"] += 1
                elif action < 0.5 and not holds and files_now():
                    # The store's lock held by a process that makes no
                    # progress, for longer than the limit: what a reader
                    # stopped inside a store write does (aimed SIGSTOPs, below,
                    # catch one only now and then: the lock is held for
                    # microseconds at a time). Here this process holds it.
                    store_path = rnd.choice(sorted(files_now()))
                    f = open(store_path, "rb")
                    deadline = time.monotonic() + 1
                    while True:
                        try:
                            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            if time.monotonic() > deadline:
                                f.close()
                                f = None
                                break
                            time.sleep(0.001)
                    if f is not None:
                        holds.append((f, time.monotonic() + rnd.uniform(limit + 2, limit + 6)))
                        counts["lock_holds"] += 1
                        out(f"{utc()} t={now:.0f}s holding the lock of {store_path.name} for more than {limit:g} s")
                elif action < 0.6 and len(running) > 1:
                    # Aimed: a process stopped while it holds the shared
                    # store's lock, for longer than the limit. Every other
                    # reader that needs the lock must still not wait past
                    # storage_timeout.
                    files = store_files(tmp)
                    pids = {r.proc.pid: r for r in running}
                    # Locks are held for a moment at a time: look often.
                    deadline = time.monotonic() + 3
                    while time.monotonic() < deadline:
                        held = lock_holders(files) & pids.keys()
                        if held:
                            victim = pids[rnd.choice(sorted(held))]
                            victim.signal(signal.SIGSTOP)
                            victim.stopped_until = time.monotonic() + rnd.uniform(limit + 2, limit + 6)
                            counts["stops"] += 1
                            if victim.proc.pid in lock_holders(files):
                                counts["stops_holding_lock"] += 1
                                out(f"{utc()} t={now:.0f}s stopped pid {victim.proc.pid} "
                                    f"({('hydrating', 'disk tier')[victim.kind]}) holding the store lock")
                            break
                        time.sleep(0.0001)
                time.sleep(rnd.uniform(0.5, 2.0))
            # The end: no more chaos; every reader must reach the final state.
            for f, _ in holds:
                f.close()
            holds.clear()
            for r in pool:
                r.signal(signal.SIGCONT)
                r.stopped_until, r.wake_at_txid = None, None
            writer_stop.set()
            writer.join()
            final = [state["lin"].index, state["n"]]
            out(f"{utc()} writer stopped at lineage {state['lin'].tag} counter {final[1]}; waiting for every reader")
            try:
                lsvfs.wait_for(lambda: all(r.status.get("last") == final for r in pool), 30, interval=0.2,
                               what="every reader at the final state")
                stale = []
            except TimeoutError:
                stale = [(r.proc.pid, r.status.get("last")) for r in pool if r.status.get("last") != final]
        finally:
            writer_stop.set()
            hung = [r.proc.pid for r in pool if not r.finish(limit + 5)]
            stop_litestream()
        everyone = retired + pool
        violations = [v for r in everyone for v in r.violations]
        by_kind: dict[str, int] = {}
        for v in violations:
            by_kind[v["kind"]] = by_kind.get(v["kind"], 0) + 1
        result = {
            "seed": seed,
            "reads": sum(r.status.get("reads", 0) for r in everyone),
            "io_errors": sum(r.status.get("io_errors", 0) for r in everyone),
            **{k: by_kind.get(k, 0) for k in ("wrong", "mixed", "torn", "back", "corrupt", "schema", "slow")},
            "hung_at_exit": len(hung),
            # Exited on its own or by another signal than ours (SIGKILL).
            "crashed": sum(1 for r in everyone if r.proc.returncode not in (0, -signal.SIGKILL)),
            "stale": len(stale),
            "stale_detail": stale,
            "written": state["n"],
            "writer_errors": writer_errors[:5],
            "violations": violations[:20],
            "processes": len(everyone),
            "ext": {k: sum(r.status.get("stats", {}).get(k, 0) for r in everyone) for k in STATS},
            **counts,
        }
        if any(result[k] for k in FAILURES) and workdir is None:
            tail = logs.read_text(errors="replace")[-4000:] if logs.exists() else ""
            result["reader_log_tail"] = tail
        out(churn_summary(result))
        return result


FAILURES = ("wrong", "mixed", "torn", "back", "corrupt", "schema", "slow", "hung_at_exit", "stale", "crashed")


def churn_summary(r: dict) -> str:
    lines = [f"churn seed={r['seed']}: reads={r['reads']} io_errors={r['io_errors']} "
             f"processes={r['processes']} kills={r['kills']} stops={r['stops']} "
             f"(holding the store lock: {r['stops_holding_lock']}) store lock held by the test: {r['lock_holds']} "
             f"resets={r['resets']} (a reader asleep through it: {r['slept_through_reset']}) "
             f"compactions={r['compactions']} written(last lineage)={r['written']}",
             "  must be zero: " + " ".join(f"{k}={r[k]}" for k in FAILURES)]
    lines.append("  extension counters, all readers: " + " ".join(f"{k}={v}" for k, v in r["ext"].items()))
    lines += [f"  {v['at']} {v['kind']} (pid {v['pid']}, {v['reader']}): {v['detail']}"
              for v in r["violations"][:10]]
    if r["stale_detail"]:
        lines.append(f"  stale readers (pid, last read): {r['stale_detail']}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--churn", action="store_true", help="the churn run with resets (needs the S3 server)")
    ap.add_argument("--readers", type=int, default=6)
    ap.add_argument("--resets", type=int, default=2)
    ap.add_argument("--seed", type=int)
    a = ap.parse_args()
    if a.churn:
        import servers as srv

        os.environ.pop("AWS_CA_BUNDLE", None)  # litestream 0.5.17 refuses to start with it set
        s, started = srv.start()
        try:
            r = churn(s, a.minutes * 60, readers=a.readers, resets=a.resets, seed=a.seed,
                      out=lambda m: print(m, flush=True))
        finally:
            if started:
                srv.stop()
        return 1 if any(r[k] for k in FAILURES) else 0
    r = soak(a.minutes * 60, a.threads, a.conns)
    s = r["samples"]
    rss_growth = (s[-1][1] - s[0][1]) // 1024 if len(s) > 1 else 0
    fd_growth = s[-1][2] - s[0][2] if len(s) > 1 else 0
    print(f"reads={r['reads']} written={r['written']} errors={r['errors']} "
          f"rss_growth={rss_growth}MiB fd_growth={fd_growth} peak_rss={max(x[1] for x in s) // 1024}MiB")
    return 0 if not r["errors"] and fd_growth <= 0 and max(x[1] for x in s) < (32 + 40 + 60) * 1024 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "reader":
        # A reader that dies of anything else than its signals is counted
        # by the churn as `crashed` (its traceback goes to the reader log).
        sys.exit(reader_main(sys.argv[2], float(sys.argv[3])))
    sys.exit(main())
