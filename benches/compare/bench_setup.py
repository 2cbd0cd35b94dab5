"""Setup for the comparison: the database, the Litestream config and replicas, the S3 server."""
from __future__ import annotations

from pathlib import Path
import datetime
import json
import os
import random
import sqlite3
import time

from bench_common import AWS_KEY, AWS_SECRET, BUCKET, HERE, PY, WORDS, base_env, free_port, log, spawn, stop, wait_port

def build_db(path: Path, rows: int, seed: int):
    log(f"building {path} ({rows} rows)")
    tmp = path.with_suffix(".tmp")
    for p in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
        p.unlink(missing_ok=True)
    rnd = random.Random(seed)
    customers = max(rows // 50, 1)
    db = sqlite3.connect(tmp, isolation_level=None)
    db.executescript("PRAGMA page_size=4096; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                     "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT NOT NULL, created TEXT NOT NULL,"
                     " amount REAL NOT NULL, note TEXT NOT NULL);")
    base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
    db.execute("BEGIN")
    batch = []
    for i in range(1, rows + 1):
        created = datetime.datetime.fromtimestamp(base + i * 30 + rnd.randrange(30), datetime.timezone.utc)
        note = " ".join(rnd.choices(WORDS, k=rnd.randrange(6, 16)))
        batch.append((i, f"cust{rnd.randrange(customers):06d}", created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                      round(rnd.uniform(1, 500), 2), note))
        if len(batch) == 20000:
            db.executemany("INSERT INTO orders VALUES (?,?,?,?,?)", batch)
            batch.clear()
    db.executemany("INSERT INTO orders VALUES (?,?,?,?,?)", batch)
    db.execute("CREATE INDEX orders_customer ON orders(customer)")
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    os.replace(tmp, path)


def btree_depth(path: Path, name: str) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT max(length(path) - length(replace(path, '/', ''))) FROM dbstat WHERE name = ?",
                          (name,)).fetchone()[0]
    finally:
        db.close()


def ls_config(dbs: list[tuple[Path, str]], s3_port: int | None, l1="5s", snapshot="10s", sync="200ms") -> str:
    out = [f"levels:\n  - interval: {l1}\nsnapshot:\n  interval: {snapshot}\ndbs:"]
    for db, target in dbs:
        out.append(f"  - path: {db}\n    monitor-interval: 100ms\n    replica:\n      sync-interval: {sync}")
        if target.startswith("s3:"):
            out.append(f"      type: s3\n      bucket: {BUCKET}\n      path: {target[3:]}\n"
                       f"      endpoint: http://127.0.0.1:{s3_port}\n      region: us-east-1\n"
                       f"      force-path-style: true\n      access-key-id: {AWS_KEY}\n"
                       f"      secret-access-key: {AWS_SECRET}")
        else:
            out.append(f"      type: file\n      path: {target}")
    return "\n".join(out) + "\n"


def ltx_files(root: Path) -> list[str]:
    """LTX file names under a replica root, as level/name (file:// and s3s-fs layouts)."""
    out = []
    if not root.exists():
        return out
    for d in root.rglob("*.ltx"):
        out.append(f"{d.parent.name}/{d.name}")
    return sorted(out)


def levels_of(files):
    return sorted({f.split("/")[0] for f in files})


def replicate(a, work: Path, dbs: list[tuple[Path, str, Path]], s3_port):
    """Runs litestream until every replica holds a snapshot covering the newest
    TXID and nothing has changed for a few seconds, then stops it."""
    cfg = work / "replicate.yml"
    cfg.write_text(ls_config([(d, t) for d, t, _ in dbs], s3_port))
    log("litestream replicate ->", ", ".join(t for _, t, _ in dbs))
    p = spawn([a.litestream, "replicate", "-config", str(cfg)], work / "replicate.log", env=base_env())
    try:
        start, last_change, last = time.time(), time.time(), None
        while True:
            time.sleep(1)
            if p.poll() is not None:
                raise RuntimeError(f"litestream exited: see {work / 'replicate.log'}")
            state = [ltx_files(root) for _, _, root in dbs]
            if state != last:
                last, last_change = state, time.time()

            def done(files):
                snaps = [f for f in files if f.startswith(("9/", "0009/"))]
                if not snaps:
                    return False
                newest = max(int(f.split("-")[-1][:16], 16) for f in files)
                return max(int(s.split("-")[-1][:16], 16) for s in snaps) >= newest
            if all(done(f) for f in state) and time.time() - last_change > 3:
                break
            if time.time() - start > 300:
                raise RuntimeError("replication did not settle in 300 s")
    finally:
        stop(p)
    log(f"replicated in {time.time() - start:.0f} s:", [levels_of(f) for f in state])


class S3:
    def __init__(self, a, work: Path):
        self.a, self.work = a, work
        self.data = work / "s3data"
        (self.data / BUCKET).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = base_env()
        if a.nodelay_so and Path(a.nodelay_so).exists():
            env["LD_PRELOAD"] = a.nodelay_so
        self.proc = spawn([a.s3s_fs, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", AWS_KEY,
                           "--secret-key", AWS_SECRET, str(self.data)], work / "s3s-fs.log", env=env)
        wait_port(self.port, proc=self.proc)
        ready = work / "proxy.ready"
        ready.unlink(missing_ok=True)
        (work / "requests.log").unlink(missing_ok=True)
        self.proxy = spawn([PY, str(HERE / "proxy.py"), "--target", f"127.0.0.1:{self.port}",
                            "--rtt-ms", str(a.rtt_ms), "--ready-file", str(ready),
                            "--log", str(work / "requests.log")], work / "proxy.log")
        end = time.time() + 20
        while not ready.exists():
            if time.time() > end or self.proxy.poll() is not None:
                raise RuntimeError("proxy did not start: see proxy.log")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        self.proxy_port, self.control = info["port"], f"http://127.0.0.1:{info['control_port']}/stats"

    def url(self, path, via_proxy=True):
        port = self.proxy_port if via_proxy else self.port
        return f"s3://{BUCKET}/{path}?endpoint=http://127.0.0.1:{port}&region=us-east-1&force-path-style=true"

    def close(self):
        stop(self.proxy)
        stop(self.proc)
