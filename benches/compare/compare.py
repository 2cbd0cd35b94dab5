#!/usr/bin/env python3
"""End-to-end comparison: native SQLite vs the official Litestream VFS (Go,
PyPI litestream-vfs 0.5.17) vs ours, on a >= 100 MB database replicated by the
real `litestream replicate` to a file:// replica and to S3 (s3s-fs) behind a
round-trip-injecting proxy.  Run through benches/compare/run; see
benches/README.md.

Every measured configuration runs in its own processes (child.py), one per
workload group, so "cold" means a fresh process (and, for the extensions, a
fresh cache) and peak RSS is per configuration.  "Warm" is the median of
`--reps` further passes in the same process.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PY = sys.executable
BUCKET = "bench"
AWS_KEY, AWS_SECRET = "lsvfsbench", "lsvfsbench-secret"
DB_FORMAT = 3  # bump when the generated database changes
WORDS = ("amber basil cedar delta ember fjord garnet harbor indigo juniper kelp lumen maple nectar onyx "
         "pepper quartz raven saffron tundra umber velvet willow xenon yarrow zephyr invoice parcel "
         "express refund priority standard gift wrap fragile returned backorder pending shipped").split()

procs: list[subprocess.Popen] = []  # everything we started, stopped in finally


def log(*a):
    print("[compare]", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def spawn(args, logfile, env=None, **kw):
    f = open(logfile, "ab")
    p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True, **kw)
    f.close()
    procs.append(p)
    return p


def stop(p: subprocess.Popen, sig=signal.SIGTERM, timeout=20):
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in procs:
        procs.remove(p)


def stop_all():
    for p in list(procs):
        stop(p, timeout=10)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not ready after {timeout}s")


def base_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITESTREAM_", "AWS_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


# ---------------------------------------------------------------- database

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


# ---------------------------------------------------------------- litestream

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


# ---------------------------------------------------------------- S3

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


# ---------------------------------------------------------------- runs

def run_child(a, work, spec, env, name):
    spec_path = work / "runs" / f"{name}.spec.json"
    res_path = work / "runs" / f"{name}.result.json"
    spec_path.parent.mkdir(exist_ok=True)
    spec_path.write_text(json.dumps(spec))
    res_path.unlink(missing_ok=True)
    (work / "runs" / f"{name}.log").unlink(missing_ok=True)
    p = spawn([PY, str(HERE / "child.py"), str(spec_path), str(res_path)], work / "runs" / f"{name}.log", env=env)
    try:
        p.wait(timeout=a.cap_s * 8 + 120)
    except subprocess.TimeoutExpired:
        log(f"{name}: timed out")
    stop(p, signal.SIGKILL)
    logtext = (work / "runs" / f"{name}.log").read_text(errors="replace")
    if not res_path.exists():
        return {"fatal": f"no result (exit {p.returncode}); see {work / 'runs' / (name + '.log')}", "steps": {}}
    r = json.loads(res_path.read_text())
    if "not built into this library" in logtext:
        r["fatal"] = "S3 not built into this library yet"
    return r


def measure(a, work, cfg, ids, first_id, rng_bounds):
    """All workload groups of one configuration; merges their steps."""
    merged = {"steps": {}, "hwm": 0}
    for phase in ("lookup", "range", "scan"):
        spec = {"kind": cfg["kind"], "backend": cfg["backend"], "phase": phase, "lib": cfg.get("lib"),
                "db": cfg.get("db"), "url": cfg.get("url"), "control": cfg.get("control"),
                "ids": ids, "first_id": first_id, "range": rng_bounds, "reps": a.reps, "cap_s": cfg["cap_s"],
                "settle_s": a.settle_s, "ids_small": cfg.get("ids_small"),
                "idle_s": a.idle_s if (phase == "range" and cfg["kind"] != "native") else 0}
        t0 = time.time()
        r = run_child(a, work, spec, cfg["env"], f"{cfg['name']}-{phase}")
        log(f"  {cfg['name']:>14} {phase:<6} {time.time() - t0:6.1f} s"
            + (f"  FATAL {r['fatal']}" if r.get("fatal") else "")
            + "".join(f"  {k}: {v['error']}" for k, v in r["steps"].items() if "error" in v))
        for k, v in r["steps"].items():
            merged["steps"][f"{phase}:{k}"] = v
        merged["hwm"] = max(merged["hwm"], r.get("VmHWM", 0))
        if r.get("fatal"):
            merged.setdefault("fatal", r["fatal"])
        if "open" in r["steps"] and "error" in r["steps"]["open"]:
            merged.setdefault("fatal", r["steps"]["open"]["error"])
            break
    return merged


# ---------------------------------------------------------------- follow lag

def follow_lag(a, work: Path, backend: str, ours_lib, official_lib, s3: S3 | None):
    d = work / f"follow-{backend}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    db = d / "primary.db"
    w = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    w.executescript("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=10000;"
                    "CREATE TABLE ticks(id INTEGER PRIMARY KEY, t REAL NOT NULL, pad TEXT);"
                    "INSERT INTO ticks VALUES (1, 0, 'start');")
    stamp = f"{int(time.time())}"
    if backend == "file":
        replica_root = d / "replica"
        target = str(replica_root)
        vfs_url = replica_root.resolve().as_uri()
        l0_dir = replica_root / "ltx" / "0"
    else:
        rpath = f"follow-{stamp}"
        target = "s3:" + rpath
        vfs_url = s3.url(rpath)
        l0_dir = s3.data / BUCKET / rpath / "0000"
    cfg = d / "litestream.yml"
    cfg.write_text(ls_config([(db, target)], s3.port if s3 else None, l1="10s", snapshot="1h", sync="200ms"))
    lsp = spawn([a.litestream, "replicate", "-config", str(cfg)], d / "litestream.log", env=base_env())
    readers = []
    seen_files: dict[str, float] = {}
    watching = threading.Event()

    def watch():
        while not watching.is_set():
            try:
                for name in os.listdir(l0_dir):
                    if name not in seen_files and name.endswith(".ltx"):
                        seen_files[name] = time.time()
            except FileNotFoundError:
                pass
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        end = time.time() + 30
        while not seen_files:
            if time.time() > end or lsp.poll() is not None:
                raise RuntimeError(f"no L0 file in the follow replica: see {d / 'litestream.log'}")
            time.sleep(0.05)
        total = a.follow_s + 8
        for kind, lib in (("official", official_lib), ("ours", ours_lib)):
            env = base_env()
            if backend == "s3":
                env.update(AWS_ACCESS_KEY_ID=AWS_KEY, AWS_SECRET_ACCESS_KEY=AWS_SECRET, AWS_REGION="us-east-1")
            if kind == "official":
                env["LITESTREAM_REPLICA_URL"] = vfs_url
            spec = {"kind": kind, "lib": lib, "url": vfs_url, "seconds": total, "every_s": 0.02}
            sp, rp = d / f"{kind}.spec.json", d / f"{kind}.result.json"
            sp.write_text(json.dumps(spec))
            readers.append((kind, rp, spawn([PY, str(HERE / "follow.py"), str(sp), str(rp)], d / f"{kind}.log", env=env)))
        time.sleep(3)  # let both open and settle
        commits = []
        end = time.time() + a.follow_s
        i = 2
        while time.time() < end:
            w.execute("INSERT INTO ticks VALUES (?, ?, ?)", (i, time.time(), "x" * 100))
            commits.append((i, time.time()))
            i += 1
            time.sleep(0.2)
        for _, _, p in readers:
            try:
                p.wait(timeout=total + 30)
            except subprocess.TimeoutExpired:
                pass
            stop(p, signal.SIGKILL)
    finally:
        watching.set()
        for _, _, p in readers:
            stop(p, signal.SIGKILL)
        stop(lsp)
        w.close()
    landed = sorted(seen_files.values())
    out = {"commits": len(commits)}
    for kind, rp, _ in readers:
        if not rp.exists():
            out[kind] = {"error": "no result"}
            continue
        r = json.loads(rp.read_text())
        if r.get("fatal"):
            out[kind] = {"error": r["fatal"]}
            continue
        seen = r["seen"]
        e2e, vfs, ship, missing = [], [], [], 0
        for cid, ct in commits:
            vis = next((t for t, m in seen if m >= cid), None)
            if vis is None:
                missing += 1
                continue
            e2e.append(vis - ct)
            land = next((t for t in landed if t >= ct), None)
            if land is not None and land <= vis:
                ship.append(land - ct)
                vfs.append(vis - land)
        out[kind] = {"e2e": pct(e2e), "vfs": pct(vfs), "ship": pct(ship), "missing": missing,
                     "errors": r.get("errors", 0)}
    return out


def request_waves(log: Path, t0: float, t1: float, rtt: float) -> int:
    """Sequential round trips between t0 and t1 as the proxy saw them: new
    connections (one round trip each for the handshake) and requests, grouped
    into waves; an event more than half a round trip after the previous one
    starts a new wave (what overlaps in one round trip is one wave)."""
    times = []
    try:
        for line in log.read_text().splitlines():
            t = float(line.split()[0])
            if t0 <= t <= t1:
                times.append(t)
    except (OSError, ValueError, IndexError):
        return -1
    waves, last = 0, None
    for t in sorted(times):
        if last is None or t - last > rtt / 2:
            waves += 1
        last = t
    return waves


def pct(xs):
    if not xs:
        return None
    xs = sorted(xs)
    return {"median": statistics.median(xs), "p99": xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))],
            "n": len(xs)}


# ---------------------------------------------------------------- main

BEGIN, END = "<!-- results:begin (benches/compare/run --update-docs) -->", "<!-- results:end -->"


def splice_docs(doc: Path, text: str):
    body = doc.read_text() if doc.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in body or END not in body:
        body += f"\n{BEGIN}\n{END}\n"
    head, rest = body.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    text = text.replace("\n# litestream-vfs comparison", "\n## litestream-vfs comparison", 1)
    if text.startswith("# "):
        text = "#" + text
    text = text.replace("\n## Targets", "\n### Targets")
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(f"{head}{BEGIN}\n{text.rstrip()}\n{END}{tail}")
    log(f"updated {doc}")


def stripped_size(lib):
    out = Path("/tmp") / f"lsvfs-bench-strip-{os.getpid()}.so"
    try:
        subprocess.run(["strip", "-o", str(out), lib], check=True, capture_output=True)
        return out.stat().st_size
    finally:
        out.unlink(missing_ok=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.environ.get("LSVFS_BENCH_DIR", "/tmp/lsvfs-bench"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--lookups", type=int, default=5000, help="random point lookups per pass (file://, native)")
    ap.add_argument("--s3-lookups", type=int, default=1000, help="random point lookups per pass over S3")
    ap.add_argument("--reps", type=int, default=3, help="warm passes (the median is reported)")
    ap.add_argument("--cap-s", type=float, default=60, help="per-workload time cap (file://, native)")
    ap.add_argument("--s3-cap-s", type=float, default=30, help="per-workload time cap over S3")
    ap.add_argument("--rtt-ms", type=float, default=20, help="round trip the proxy adds to every S3 request")
    ap.add_argument("--idle-s", type=float, default=3.2, help="idle time for the empty-poll measurement")
    ap.add_argument("--settle-s", type=float, default=4,
                    help="idle time before the steady-state lookup passes and the warm scans")
    ap.add_argument("--follow-s", type=float, default=20)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--no-follow", action="store_true")
    ap.add_argument("--only", default="", help="comma list of configs to run (native,official-file,ours-file,...)")
    ap.add_argument("--ours", default=str(ROOT / "target" / "release" / "liblitestream_vfs.so"))
    ap.add_argument("--ours-s3-lib", default="",
                    help="use this build of ours for the S3 column and S3 follow lag (e.g. a preview with S3 support)")
    ap.add_argument("--official", default="")
    ap.add_argument("--litestream", default=shutil.which("litestream") or str(ROOT / ".venv" / "bin" / "litestream"))
    ap.add_argument("--s3s-fs", default=os.environ.get("S3S_FS", str(Path.home() / ".cache/lsvfs-bench/cargo/bin/s3s-fs")))
    ap.add_argument("--nodelay-so", default=os.environ.get("NODELAY_SO", str(Path.home() / ".cache/lsvfs-bench/nodelay.so")))
    ap.add_argument("--results", default=str(HERE / "results.md"))
    ap.add_argument("--update-docs", action="store_true",
                    help="also splice the table into docs/PERFORMANCE.md (between its results markers)")
    ap.add_argument("--render", metavar="REPORT_JSON", help="only re-render a previous run's report.json")
    a = ap.parse_args()
    if a.render:
        rep = json.loads(Path(a.render).read_text())
        print(render(a, rep, rep.get("elapsed_s", 0)))
        return
    if not a.official:
        import litestream_vfs  # noqa: PLC0415 - the PyPI package of the official extension
        a.official = litestream_vfs.loadable_path()
    t_start = time.time()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    s3 = None
    try:
        report = run(a, work)
    finally:
        stop_all()
    report["elapsed_s"] = time.time() - t_start
    text = render(a, report, report["elapsed_s"])
    print(text)
    Path(a.results).write_text(text)
    if a.update_docs:
        splice_docs(ROOT / "docs" / "PERFORMANCE.md", text)
    (work / "report.json").write_text(json.dumps(report, indent=1, default=str))
    log(f"wrote {a.results} and {work / 'report.json'} in {time.time() - t_start:.0f} s")


def run(a, work: Path):
    report = {"args": vars(a), "configs": {}}
    # 1. the database (cached)
    db = work / "primary" / "bench.db"
    meta_path = work / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    want = {"format": DB_FORMAT, "rows": a.rows, "seed": a.seed}
    if meta.get("want") != want or not db.exists():
        shutil.rmtree(work / "primary", ignore_errors=True)
        shutil.rmtree(work / "replica-file", ignore_errors=True)
        shutil.rmtree(work / "s3data", ignore_errors=True)
        (work / "primary").mkdir(parents=True)
        t0 = time.time()
        build_db(db, a.rows, a.seed)
        meta = {"want": want, "build_s": time.time() - t0, "depth": btree_depth(db, "orders"),
                "index_depth": btree_depth(db, "orders_customer")}
        meta_path.write_text(json.dumps(meta))
    report["db"] = {"bytes": db.stat().st_size, "rows": a.rows, **meta}
    log(f"database {db}: {db.stat().st_size / 1e6:.1f} MB, table depth {meta['depth']}")

    # 2. replicas (cached)
    s3 = None
    if not a.no_s3:
        if not Path(a.s3s_fs).exists():
            raise SystemExit(f"s3s-fs not found at {a.s3s_fs} (benches/compare/run installs it; or pass --no-s3)")
        s3 = S3(a, work)
    try:
        todo = []
        file_root = work / "replica-file"
        if not meta.get("file_replicated"):
            shutil.rmtree(file_root, ignore_errors=True)
            todo.append((db, str(file_root), file_root))
        s3_root = work / "s3data" / BUCKET / "bench"
        if s3 and not meta.get("s3_replicated"):
            shutil.rmtree(s3_root, ignore_errors=True)
            db_s3 = work / "primary-s3" / "bench.db"
            shutil.rmtree(db_s3.parent, ignore_errors=True)
            db_s3.parent.mkdir(parents=True)
            shutil.copyfile(db, db_s3)
            todo.append((db_s3, "s3:bench", s3_root))
        if todo:
            replicate(a, work, todo, s3.port if s3 else None)
            meta["file_replicated"] = True
            if s3:
                meta["s3_replicated"] = True
            meta_path.write_text(json.dumps(meta))
        report["replica"] = {"file": ltx_files(file_root), "s3": ltx_files(s3_root) if s3 else None}

        # 3. the workloads
        rnd = random.Random(a.seed + 1)
        ids_file = rnd.sample(range(1, a.rows + 1), min(a.lookups, a.rows))
        ids_s3 = ids_file[:a.s3_lookups]
        first_id = rnd.randrange(1, a.rows + 1)
        customers = max(a.rows // 50, 1)
        c0 = rnd.randrange(customers - 5)
        rng_bounds = [f"cust{c0:06d}", f"cust{c0 + 4:06d}"]
        report["workload"] = {"first_id": first_id, "range": rng_bounds, "lookups_file": len(ids_file),
                              "lookups_s3": len(ids_s3)}
        file_url = file_root.resolve().as_uri()
        cfgs = [
            {"name": "native", "kind": "native", "backend": "local", "db": str(db), "env": base_env(), "cap_s": a.cap_s,
             "ids_small": ids_s3 if (s3 and len(ids_s3) < len(ids_file)) else None},
            {"name": "official-file", "kind": "official", "backend": "file", "lib": a.official,
             "env": {**base_env(), "LITESTREAM_REPLICA_URL": file_url}, "cap_s": a.cap_s},
            {"name": "ours-file", "kind": "ours", "backend": "file", "lib": a.ours, "url": file_url,
             "env": base_env(), "cap_s": a.cap_s},
        ]
        if s3:
            s3env = {**base_env(), "AWS_ACCESS_KEY_ID": AWS_KEY, "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
                     "AWS_REGION": "us-east-1"}
            url = s3.url("bench")
            cfgs += [
                {"name": "official-s3", "kind": "official", "backend": "s3", "lib": a.official, "control": s3.control,
                 "env": {**s3env, "LITESTREAM_REPLICA_URL": url}, "cap_s": a.s3_cap_s},
                {"name": "ours-s3", "kind": "ours", "backend": "s3", "lib": a.ours_s3_lib or a.ours, "url": url,
                 "control": s3.control,
                 "env": s3env, "cap_s": a.s3_cap_s},
            ]
        only = {x for x in a.only.split(",") if x}
        for cfg in cfgs:
            if only and cfg["name"] not in only:
                continue
            ids = ids_s3 if cfg["backend"] == "s3" else ids_file
            log(f"measuring {cfg['name']}")
            r = measure(a, work, cfg, ids, first_id, rng_bounds)
            r["lookups"] = len(ids)
            report["configs"][cfg["name"]] = r

        # round trips on the critical path of the cold open and first lookup over S3
        if s3:
            for name in ("official-s3", "ours-s3"):
                steps = (report["configs"].get(name) or {}).get("steps", {})
                for key in ("lookup:open", "lookup:first_query"):
                    if key in steps and "wall" in steps[key]:
                        lo = steps.get("lookup:load", {}).get("wall", steps[key]["wall"])[0] \
                            if key == "lookup:open" else steps[key]["wall"][0]
                        steps[key]["waves"] = request_waves(work / "requests.log", lo, steps[key]["wall"][1],
                                                            a.rtt_ms / 1000)

        # 4. follow lag
        if not a.no_follow:
            report["follow"] = {}
            for backend in (["file", "s3"] if s3 else ["file"]):
                log(f"follow lag over {backend} ({a.follow_s:.0f} s of commits)")
                try:
                    ours_lib = (a.ours_s3_lib or a.ours) if backend == "s3" else a.ours
                    report["follow"][backend] = follow_lag(a, work, backend, ours_lib, a.official, s3)
                except Exception as e:  # noqa: BLE001
                    report["follow"][backend] = {"error": str(e)}
    finally:
        if s3:
            s3.close()
    report["lib"] = {"official": stripped_size(a.official), "ours": stripped_size(a.ours)}
    if a.ours_s3_lib:
        report["lib"]["ours_s3"] = stripped_size(a.ours_s3_lib)
    return report


# ---------------------------------------------------------------- rendering

def fmt_s(s):
    if s is None:
        return "—"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_b(n):
    if n is None:
        return "—"
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} B"


def traffic(rec, backend):
    """'requests / bytes' of one step: proxy for S3, our counters or read syscalls for file."""
    if rec is None:
        return "—"
    if backend == "s3":
        p = rec.get("proxy") or {}
        if not p:
            return "—"
        kinds = "+".join(f"{p[k]}{k[0]}" for k in ("LIST", "RANGE", "GET", "HEAD") if p.get(k))
        o = rec.get("ours") or {}
        mine = f" [stats: {o['reads']}R / {fmt_b(o['read_bytes'])}]" if "reads" in o else ""
        return f"{p['requests']} req ({kinds or '0'}) / {fmt_b(p['bytes_down'])}{mine}"
    o = rec.get("ours") or {}
    if "reads" in o:
        return f"{o['lists']}L+{o['reads']}R / {fmt_b(o['read_bytes'])}"
    io = rec.get("io") or {}
    return f"{io.get('syscr', 0)} sysr / {fmt_b(io.get('rchar', 0))}" if io else "—"


def warm(steps, prefix):
    xs = [v for k, v in steps.items() if k.startswith(prefix) and "error" not in v]
    if not xs:
        return None
    times = sorted(xs, key=lambda v: v["s"])
    return times[len(times) // 2]


def render(a, rep, elapsed):
    cfgs = rep["configs"]
    names = list(cfgs)
    lines = []
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines.append(f"# litestream-vfs comparison — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    lines.append(f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
                 f"SQLite {sqlite3.sqlite_version} (Python {platform.python_version()}). Run took {elapsed:.0f} s.\n")
    d = rep["db"]
    lines.append(f"Database: `orders` {d['rows']:,} rows + index on `customer`, {d['bytes'] / 1e6:.1f} MB, page 4096, "
                 f"table B-tree depth {d['depth']}, index depth {d['index_depth']}. "
                 f"S3 = s3s-fs behind a proxy adding {a.rtt_ms:g} ms per request (+1 round trip per new connection). "
                 f"Lookups per pass: {rep['workload']['lookups_file']} (native, file://), "
                 f"{rep['workload']['lookups_s3']} (S3). Warm = median of {a.reps} passes. "
                 f"Per-workload cap: {a.cap_s:g} s (file), {a.s3_cap_s:g} s (S3).\n")
    for kind, files in (rep.get("replica") or {}).items():
        if files:
            lines.append(f"Replica {kind}: {len(files)} LTX files, levels {', '.join(levels_of(files))}. ")
    lines.append("")
    lines.append("Traffic: S3 = requests at the proxy (L=LIST, R=ranged GET, G=GET, H=HEAD) / bytes returned "
                 "[ours: what its own `litestream_stats` counted]; "
                 "ours on file:// = our `litestream_stats` (L lists + R reads / bytes); "
                 "native and official on file:// = read syscalls / bytes read (/proc/self/io).\n")
    hdr = "| workload | " + " | ".join(names) + " |"
    lines += [hdr, "|" + "---|" * (len(names) + 1)]

    def backend(n):
        return cfgs[n].get("steps", {}) and ("s3" if n.endswith("-s3") else "file")

    def row(label, fn):
        cells = []
        for n in names:
            c = cfgs[n]
            if c.get("fatal") and label != "status":
                cells.append("—")
                continue
            try:
                cells.append(fn(n, c, c.get("steps", {})))
            except Exception:  # noqa: BLE001
                cells.append("—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def cell_time(rec, per=None):
        if rec is None:
            return "—"
        if "error" in rec:
            return "error"
        if rec.get("capped") and not per:
            return f"> {fmt_s(rec['s'])} (capped)"
        if per:
            done = rec.get("done") or 1
            if rec.get("capped"):
                return f"> {fmt_s(rec['s'])} (capped after {done}; {fmt_s(rec['s'] / done)}/op)"
            return f"{fmt_s(rec['s'])} ({fmt_s(rec['s'] / done)}/op)"
        return fmt_s(rec["s"])

    def status(n, c, st):
        if c.get("fatal"):
            msg = c["fatal"]
            if "not built into this library" in msg or "not built into" in str(c):
                return "**S3 not built into this library yet**"
            return "**failed**: " + msg[:80].replace("|", "/")
        return "ok"

    row("status", status)
    row("load + open", lambda n, c, st: fmt_s(st["lookup:load"]["s"] + st["lookup:open"]["s"]) if "lookup:load" in st
        else fmt_s(st["lookup:open"]["s"]))
    row("  open traffic", lambda n, c, st: traffic(st.get("lookup:open"), backend(n)))
    row("first query (1 lookup)", lambda n, c, st: cell_time(st.get("lookup:first_query")))
    row("  first query traffic", lambda n, c, st: traffic(st.get("lookup:first_query"), backend(n)))
    row("point lookups cold", lambda n, c, st: cell_time(st.get("lookup:lookups_cold"), c["lookups"]))
    row("  cold lookups traffic", lambda n, c, st: traffic(st.get("lookup:lookups_cold"), backend(n)))
    row("point lookups warm", lambda n, c, st: cell_time(warm(st, "lookup:lookups_warm"), c["lookups"]))
    row("  warm lookups traffic", lambda n, c, st: traffic(warm(st, "lookup:lookups_warm"), backend(n)))
    row(f"point lookups warm, after {a.settle_s:g} s idle", lambda n, c, st: cell_time(warm(st, "lookup:lookups_settled"), 1))
    row("  native, warm, on the S3 id subset", lambda n, c, st: cell_time(warm(st, "lookup:lookups_small"), 1)
        if warm(st, "lookup:lookups_small") else "")
    row("  warm lookups in one transaction", lambda n, c, st: cell_time(st.get("lookup:lookups_warm_1tx"), 1))
    row("range query cold (~250 rows)", lambda n, c, st: cell_time(st.get("range:range_cold")))
    row("  cold range traffic", lambda n, c, st: traffic(st.get("range:range_cold"), backend(n)))
    row("range query warm", lambda n, c, st: cell_time(warm(st, "range:range_warm")))
    row("full scan aggregate cold", lambda n, c, st: cell_time(st.get("scan:scan_cold")))
    row("  cold scan traffic", lambda n, c, st: traffic(st.get("scan:scan_cold"), backend(n)))
    row(f"full scan aggregate warm (after {a.settle_s:g} s idle)", lambda n, c, st: cell_time(warm(st, "scan:scan_warm")))
    row("  warm scan traffic", lambda n, c, st: traffic(warm(st, "scan:scan_warm"), backend(n)))
    row(f"idle {a.idle_s:g} s: traffic", lambda n, c, st: traffic(st.get("range:idle"), backend(n)))
    row("peak RSS (max of the 3 processes)", lambda n, c, st: fmt_b(c["hwm"]))
    lines.append("")

    lib = rep.get("lib", {})
    lines.append(f"Stripped library size: official {fmt_b(lib.get('official'))}, ours {fmt_b(lib.get('ours'))}"
                 + (f" (the S3 build: {fmt_b(lib['ours_s3'])})" if lib.get("ours_s3") else "") + ".\n")
    if rep["args"].get("ours_s3_lib"):
        lines.append(f"**Note:** the `ours-s3` column and the S3 follow lag used `{rep['args']['ours_s3_lib']}`, "
                     f"not `{rep['args']['ours']}` (see the notes on how it was built).\n")
    fol = rep.get("follow") or {}
    if fol:
        lines.append("Follow lag (commit on the primary → row visible through the VFS; a commit every 200 ms for "
                     f"{a.follow_s:g} s; readers poll the VFS every 20 ms; default poll interval 1 s for both). "
                     "`ship` = commit → LTX file lands in the replica (Litestream's part); "
                     "`vfs` = file lands → visible (the extension's part):\n")
        lines.append("| backend | extension | e2e median | e2e p99 | ship median | vfs median | vfs p99 | missed |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for b, r in fol.items():
            if "error" in r:
                lines.append(f"| {b} | — | error: {r['error'][:80]} | | | | | |")
                continue
            for kind in ("official", "ours"):
                k = r.get(kind) or {}
                if "error" in k:
                    lines.append(f"| {b} | {kind} | error: {k['error'][:80]} | | | | | |")
                    continue
                g = lambda key, q: fmt_s(k[key][q]) if k.get(key) else "—"  # noqa: E731
                lines.append(f"| {b} | {kind} | {g('e2e', 'median')} | {g('e2e', 'p99')} | {g('ship', 'median')} "
                             f"| {g('vfs', 'median')} | {g('vfs', 'p99')} | {k.get('missing', '—')}/{r['commits']} |")
        lines.append("")
    lines.append(targets(a, rep))
    return "\n".join(lines) + "\n"


def targets(a, rep):
    cfgs = rep["configs"]
    out = ["## Targets (ratios from this run)\n", "| target | measured | verdict |", "|---|---|---|"]

    def st(n):
        return (cfgs.get(n) or {}).get("steps", {})

    def t(n, key, warm_prefix=None):
        s = st(n)
        rec = warm(s, warm_prefix) if warm_prefix else s.get(key)
        if rec is None or "error" in rec:
            return None, False
        per = (rec.get("done") or 1) if "lookups" in (warm_prefix or key) else 1
        return rec["s"] / per, bool(rec.get("capped"))

    def verdict(ok):
        return "**met**" if ok else "**missed**"

    def ratio_line(label, num, den, limit, inverse=False):
        (x, xc), (y, yc) = num, den
        if x is None or y is None:
            out.append(f"| {label} | n/a | — |")
            return
        r = x / y
        capped = " (lower bound: capped)" if (yc if inverse else xc) else ""
        if inverse:
            out.append(f"| {label} | {r:.1f}×{capped} | {verdict(r >= limit)} |")
        else:
            out.append(f"| {label} | {r:.2f}×{capped} | {verdict(r <= limit)} |")

    for back in ("file", "s3"):
        ours, off = f"ours-{back}", f"official-{back}"
        if ours not in cfgs or cfgs[ours].get("fatal"):
            continue
        nat = "lookup:lookups_small" if (back == "s3" and warm(st("native"), "lookup:lookups_small")) \
            else "lookup:lookups_settled"
        ratio_line(f"warm point lookups ≤ 1.5× native ({back}; steady state, after {a.settle_s:g} s idle)",
                   t(ours, None, "lookup:lookups_settled"), t("native", None, nat), 1.5)
        if back == "file":
            ratio_line(f"warm point lookups ≤ 1.5× native ({back}; right after the cold pass)",
                       t(ours, None, "lookup:lookups_warm"), t("native", None, "lookup:lookups_warm"), 1.5)
        ratio_line(f"warm full scan ≤ 2× native ({back})", t(ours, None, "scan:scan_warm"),
                   t("native", None, "scan:scan_warm"), 2)
        if off in cfgs and not cfgs[off].get("fatal"):
            ratio_line(f"warm lookups ≥ 10× faster than official ({back}; steady state)",
                       t(off, None, "lookup:lookups_settled"), t(ours, None, "lookup:lookups_settled"), 10, inverse=True)
            ratio_line(f"warm scan ≥ 10× faster than official ({back})", t(off, None, "scan:scan_warm"),
                       t(ours, None, "scan:scan_warm"), 10, inverse=True)
    o = st("ours-s3")
    if o and not cfgs["ours-s3"].get("fatal"):
        reqs = sum((o.get(k, {}).get("proxy") or {}).get("requests", 0) for k in ("lookup:load", "lookup:open"))
        conns = sum((o.get(k, {}).get("proxy") or {}).get("connections", 0) for k in ("lookup:load", "lookup:open"))
        wall = sum(o.get(k, {}).get("s", 0) for k in ("lookup:load", "lookup:open"))
        waves = o.get("lookup:open", {}).get("waves")
        if waves is not None:
            out.append(f"| cold open ≤ 3 round trips (S3) | {waves} sequential round trips (TCP connects included) "
                       f"for {reqs} requests on {conns} new connections; wall {wall * 1000:.0f} ms "
                       f"= {wall * 1000 / a.rtt_ms:.1f} RTTs | {verdict(waves <= 3)} |")
        else:
            out.append(f"| cold open ≤ 3 round trips (S3) | {reqs} requests, "
                       f"{wall * 1000 / a.rtt_ms:.1f} RTTs of wall time | {verdict(reqs <= 3)} |")
        fq = o.get("lookup:first_query", {})
        depth = rep["db"]["depth"]
        n = fq.get("waves", (fq.get("proxy") or {}).get("requests", 99))
        out.append(f"| cold point lookup ≤ B-tree depth ({depth}) round trips (S3) | {n} round trips, "
                   f"{(fq.get('proxy') or {}).get('requests', '?')} requests, {fmt_s(fq.get('s'))} | {verdict(n <= depth)} |")
    o = st("ours-file")
    if o and not cfgs["ours-file"].get("fatal"):
        op = sum((o.get(k, {}).get("ours") or {}).get(x, 0) for k in ("lookup:open",) for x in ("lists", "reads"))
        fq = (o.get("lookup:first_query", {}).get("ours") or {}).get("reads", 0)
        depth = rep["db"]["depth"]
        out.append(f"| cold open ≤ 3 round trips (file://: storage calls) | {op} calls "
                   f"({o['lookup:open']['ours'].get('lists', 0)} lists + {o['lookup:open']['ours'].get('reads', 0)} reads) "
                   f"| {verdict(op <= 3)} |")
        out.append(f"| cold point lookup ≤ B-tree depth ({depth}) round trips (file://: reads) | {fq} reads | "
                   f"{verdict(fq <= depth)} |")
    for back in ("file", "s3"):
        o = st(f"ours-{back}")
        idle = o.get("range:idle") if o else None
        if idle and idle.get("ours", {}).get("polls"):
            lv = len(levels_of((rep.get("replica") or {}).get(back) or []))
            lists = idle["proxy"]["LIST"] if back == "s3" else idle["ours"]["lists"]
            per = lists / idle["ours"]["polls"]
            out.append(f"| poll with nothing new = one listing per watched level ({back}; {lv} levels in the replica) "
                       f"| {per:.1f} lists/poll ({lists} over {idle['ours']['polls']} polls) | {verdict(per <= lv)} |")
    for back in ("file", "s3"):
        c = cfgs.get(f"ours-{back}")
        if c and not c.get("fatal"):
            budget = None
            for v in c["steps"].values():
                budget = budget or (v.get("ours") or {}).get("cache_budget")
            budget = budget or 128 * 2**20
            out.append(f"| peak RSS ≤ cache budget + 40 MB ({back}) | {fmt_b(c['hwm'])} vs {fmt_b(budget + 40e6)} "
                       f"(128 MiB default budget) | {verdict(c['hwm'] <= budget + 40e6)} |")
    lib = rep.get("lib", {})
    if lib.get("ours"):
        out.append(f"| stripped library ≤ 12 MB | {fmt_b(lib['ours'])} | {verdict(lib['ours'] <= 12e6)} |")
    if lib.get("ours_s3"):
        out.append(f"| stripped library ≤ 12 MB (the S3 build) | {fmt_b(lib['ours_s3'])} | "
                   f"{verdict(lib['ours_s3'] <= 12e6)} |")
    for back, r in (rep.get("follow") or {}).items():
        k = (r or {}).get("ours") or {}
        if k.get("vfs"):
            limit = 1.0 + (a.rtt_ms / 1000 if back == "s3" else 0)
            out.append(f"| follow lag median ≤ poll interval + one round trip ({back}) | vfs part "
                       f"{fmt_s(k['vfs']['median'])} (e2e {fmt_s(k['e2e']['median'])}) vs {fmt_s(limit)} | "
                       f"{verdict(k['vfs']['median'] <= limit)} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
