#!/usr/bin/env python3
"""Cold reads: ours vs the official extension, side by side in one run.

    .venv/bin/python benches/compare/cold.py [--rows 1000000] [--rtt-ms 20]

Needs the shared storage servers (`tests/harness/servers.sh up`; this script
never stops them), `.venv` (scripts/venv: litestream, the official
extension) and `cargo build --release`. It builds a database with the real
`sqlite3` shell (an `orders` table, ~250 rows per customer scattered over the
table, an index on `customer`), replicates it with the real `litestream`
into a folder, copies that to S3 (s3s-fs) and puts benches/compare/proxy.py
in front of S3, adding a round trip to every request. Every measurement runs
in a fresh process (cold cache) and reports wall time, requests and
sequential round trips (waves of concurrent requests in the proxy's log, as
compare.py counts them). Rows:

- one customer's orders (`WHERE customer = ?`) over S3;
- 200 random primary-key lookups over S3, after one lookup has warmed the
  table's interior pages (wall time, requests, worst round trips per lookup);
- a cold full scan over S3 vs one large GET of the snapshot file (MB/s of
  the compressed snapshot);
- a warm full scan over file:// with a cache smaller than the database
  (`cache_size=64MiB` for ours, the same for the official, native SQLite
  with a 64 MiB page cache) .

The report goes to stdout and to --out (markdown).
"""
import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import lsvfs  # noqa: E402
import servers as srv  # noqa: E402

QUERIES = {
    "customer": "SELECT id, amount, note FROM orders WHERE customer = ?",
    "pk": "SELECT id, customer, amount, note FROM orders WHERE id = ?",
    "scan": "SELECT count(*), sum(amount), max(length(note)) FROM orders",
}


# ---------------------------------------------------------------- child

def child(spec: dict) -> dict:
    """One measurement in this (fresh) process."""
    kind = spec["kind"]
    if kind != "native":
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension(spec["lib"])
    if kind == "native":
        uri = "file:" + urllib.parse.quote(spec["db"]) + "?mode=ro"
    elif kind == "ours":
        params = {"vfs": "litestream", "replica_url": spec["url"], "poll_interval": "1h",
                  "cache_size": spec.get("cache", "64MiB"), **spec.get("params", {})}
        uri = "file:replica.db?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    else:
        uri = "file:replica.db?vfs=litestream"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    if spec.get("sqlite_cache_kib"):
        conn.execute(f"PRAGMA cache_size=-{spec['sqlite_cache_kib']}")
    conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    out = {}
    started = time.time()
    deadline = started + spec["cap_s"]

    def progress():
        return 1 if time.time() > deadline else 0

    conn.set_progress_handler(progress, 1000)
    w = spec["workload"]
    try:
        if w in ("mem", "bare"):
            out.update(memory_child(spec, conn, started))
        elif w == "customer":
            t0 = time.time()
            rows = conn.execute(QUERIES["customer"], (spec["customer"],)).fetchall()
            out.update(wall=[t0, time.time()], rows=len(rows))
        elif w == "pk":
            conn.execute(QUERIES["pk"], (spec["warm_id"],)).fetchone()
            windows = []
            t0 = time.time()
            for i in spec["ids"]:
                a = time.time()
                row = conn.execute(QUERIES["pk"], (i,)).fetchone()
                assert row and row[0] == i, (i, row)
                windows.append([a, time.time()])
            out.update(wall=[t0, time.time()], windows=windows, rows=len(windows))
        elif w in ("scan", "warm_scan"):
            if w == "warm_scan":
                conn.execute(QUERIES["scan"]).fetchone()
            best = None
            for _ in range(spec.get("reps", 1)):
                t0 = time.time()
                r = conn.execute(QUERIES["scan"]).fetchone()
                t1 = time.time()
                if best is None or t1 - t0 < best[1] - best[0]:
                    best = [t0, t1]
            out.update(wall=best, rows=r[0])
    except sqlite3.OperationalError as e:
        out.update(capped=e.args and "interrupt" in str(e), error=str(e), wall=[started, time.time()])
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                out["hwm"] = int(line.split()[1]) * 1024
    return out


# ---------------------------------------------------------------- parent

def build(work: Path, rows: int) -> tuple[Path, Path]:
    db, replica = work / "orders.db", work / "replica"
    meta = work / "meta.json"
    if meta.exists() and json.loads(meta.read_text()).get("rows") == rows and (replica / "ltx").exists():
        return db, replica
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", str(replica)], check=True)
    customers = max(rows // 250, 1)
    sql = f"""PRAGMA page_size=4096; PRAGMA journal_mode=WAL;
      CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT NOT NULL, created TEXT NOT NULL,
                          amount REAL NOT NULL, note TEXT NOT NULL);
      WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<{rows})
        INSERT INTO orders SELECT i, printf('cust%06d', abs(random()) % {customers}),
          datetime(1700000000 + i * 30, 'unixepoch'), (abs(random()) % 50000) / 100.0,
          hex(randomblob(12 + abs(random()) % 24)) FROM c;
      CREATE INDEX orders_customer ON orders(customer);"""
    subprocess.run([lsvfs.SQLITE3, str(db)], input=sql, text=True, check=True, capture_output=True)
    primary = sqlite3.connect(db)
    expected_count = primary.execute("SELECT count(*) FROM orders").fetchone()[0]
    primary.close()
    cfg = lsvfs.file_replica_config(db, replica)
    with lsvfs.Litestream(cfg, work):
        lsvfs.wait_for(lambda: any((replica / "ltx" / "9").glob("*.ltx")), 300, interval=0.5, what="snapshot")
        lsvfs.wait_for(lambda: lsvfs.connect(lsvfs.file_url(replica), name="chk.db").execute(
            "SELECT count(*) FROM orders").fetchone()[0] == expected_count, 300, interval=1, what="replica")
    meta.write_text(json.dumps({"rows": rows}))
    return db, replica


def waves(log: Path, t0: float, t1: float, rtt: float) -> tuple[int, int]:
    times = sorted(float(line.split()[0]) for line in log.read_text().splitlines()
                   if t0 <= float(line.split()[0]) <= t1)
    n, last = 0, None
    for t in times:
        if last is None or t - last > rtt / 2:
            n += 1
        last = t
    return n, len(times)


def run_child(spec: dict, env: dict, work: Path) -> dict:
    sp = work / "spec.json"
    sp.write_text(json.dumps(spec))
    r = subprocess.run([sys.executable, __file__, "--child", str(sp)], env=env, capture_output=True, text=True,
                       timeout=spec["cap_s"] + 120)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return {"error": (r.stderr or r.stdout)[-500:]}
    return json.loads(lines[-1][7:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rtt-ms", type=float, default=20)
    ap.add_argument("--work", default="/tmp/lsvfs-cold-bench")
    ap.add_argument("--cap-s", type=float, default=60)
    ap.add_argument("--ours", default=str(ROOT / "target" / "release" / "liblitestream_vfs.so"))
    ap.add_argument("--out", default=str(HERE / "cold-results.md"))
    ap.add_argument("--only", default="", help="comma list of rows to run: customer,pk,scan,warm,mem (default all)")
    ap.add_argument("--kinds", default="ours,official", help="which extensions to measure")
    ap.add_argument("--prefix", default="", help="S3 prefix of the replica (default cold-bench-ROWS); "
                    "give each --work its own, since an existing prefix is not uploaded again")
    ap.add_argument("--debug-log", default="", help="ours writes its debug log to this file (appended)")
    a = ap.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(json.loads(Path(a.child).read_text()))), flush=True)
        os._exit(0)

    import litestream_vfs  # the official extension (PyPI)
    official = litestream_vfs.loadable_path()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    db, replica = build(work, a.rows)
    s, _ = srv.start()
    prefix = a.prefix or f"cold-bench-{a.rows}"
    dest = Path(s.env["LSVFS_S3_DIR"]) / prefix
    if not dest.exists():
        s.upload_tree("s3", replica, prefix)
    port = int(urllib.parse.urlsplit(s.env["LSVFS_S3_ENDPOINT"]).port)
    log = work / "requests.log"
    log.unlink(missing_ok=True)
    ready = work / "proxy.json"
    ready.unlink(missing_ok=True)
    proxy = subprocess.Popen([sys.executable, str(HERE / "proxy.py"), "--target", f"127.0.0.1:{port}",
                              "--rtt-ms", str(a.rtt_ms), "--ready-file", str(ready), "--log", str(log)],
                             stderr=subprocess.DEVNULL)
    try:
        lsvfs.wait_for(ready.exists, 20, what="proxy")
        pport = json.loads(ready.read_text())["port"]
        s3url = (f"s3://{s.bucket}/{prefix}?endpoint=http://127.0.0.1:{pport}&region=us-east-1"
                 "&force-path-style=true")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LITESTREAM_", "AWS_"))}
        s3env = {**base, **s.reader_env("s3"), "AWS_REGION": "us-east-1"}
        if a.debug_log:
            s3env.update(LITESTREAM_LOG_LEVEL="debug", LITESTREAM_LOG_FILE=a.debug_log)
        envs = {"ours": s3env, "official": {**s3env, "LITESTREAM_REPLICA_URL": s3url}}
        libs = {"ours": a.ours, "official": official}
        nat = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        customers = max(a.rows // 250, 1)
        rnd = random.Random(7)
        cust = f"cust{rnd.randrange(customers):06d}"
        n_rows = nat.execute("SELECT count(*) FROM orders WHERE customer = ?", (cust,)).fetchone()[0]
        ids = rnd.sample(range(1, a.rows + 1), 200)
        rtt = a.rtt_ms / 1000
        rep = {"rows": a.rows, "db_bytes": db.stat().st_size, "customer_rows": n_rows, "rtt_ms": a.rtt_ms}

        # The snapshot file a full scan reads, for the one-GET baselines.
        snap = max((replica / "ltx" / "9").glob("*.ltx"), key=lambda p: p.stat().st_size)
        get = OneGet(s, pport, f"{prefix}/{9:04x}/{snap.name}", snap.stat().st_size)

        only = set(filter(None, a.only.split(","))) or {"customer", "pk", "scan", "warm", "mem"}
        kinds = [k for k in a.kinds.split(",") if k in libs]
        for kind in kinds:
            common = {"kind": kind, "lib": libs[kind], "url": s3url, "cap_s": a.cap_s}
            if "customer" in only:
                r = run_child({**common, "workload": "customer", "customer": cust}, envs[kind], work)
                if "wall" in r:
                    r["waves"], r["requests"] = waves(log, *r["wall"], rtt)
                rep[f"customer-{kind}"] = r
            if "pk" in only:
                r = run_child({**common, "workload": "pk", "ids": ids, "warm_id": ids[0] ^ 1}, envs[kind], work)
                if "windows" in r:
                    per = [waves(log, w0, w1, rtt) for w0, w1 in r.pop("windows")]
                    r["worst_waves"] = max(w for w, _ in per)
                    r["mean_waves"] = sum(w for w, _ in per) / len(per)
                    r["requests"] = sum(n for _, n in per)
                rep[f"pk-{kind}"] = r
            if "scan" in only:
                # The fair baseline, next to the scan: one GET of the kind
                # the scan sends (If-Match, Range), right before and after.
                before = get.seconds(like_ours=True)
                r = run_child({**common, "workload": "scan", "cap_s": min(a.cap_s, 60)}, envs[kind], work)
                if "wall" in r:
                    r["waves"], r["requests"] = waves(log, *r["wall"], rtt)
                r["get_like_ours"] = [before, get.seconds(like_ours=True)]
                rep[f"scan-{kind}"] = r

        if "mem" in only:
            rep["mem"] = memory_rows(a, work, db, s3url, ids, libs, envs, kinds)

        # one large GET of the snapshot through the proxy, plain, once, after
        # the scans (the old baseline, kept for comparison with past runs)
        rep["get"] = {"s": get.seconds(like_ours=False), "bytes": snap.stat().st_size}

        # warm scan over file:// with a cache smaller than the database
        furl = lsvfs.file_url(replica)
        fenv = {"ours": base, "official": {**base, "LITESTREAM_REPLICA_URL": furl}}
        for kind in ("native", *kinds) if "warm" in only else ():
            spec = {"kind": kind, "lib": libs.get(kind), "db": str(db), "url": furl, "cap_s": a.cap_s,
                    "workload": "warm_scan", "reps": 3, "cache": "64MiB", "sqlite_cache_kib": 65536}
            if kind != "native":
                spec["sqlite_cache_kib"] = 2000  # SQLite's default; the VFS cache is the 64 MiB one
            rep[f"warm-{kind}"] = run_child(spec, fenv.get(kind, base), work)
    finally:
        proxy.terminate()
        proxy.wait(10)
    text = render(rep)
    print(text)
    Path(a.out).write_text(text)
    (work / "report.json").write_text(json.dumps(rep, indent=1))


class OneGet:
    """One GET of the whole snapshot file through the proxy, with curl.

    Plain (no conditional header, no Range: the old baseline), or like our
    reads: `If-Match` with the object's ETag and a `Range` of the whole
    object. On s3s-fs both cost the same (it hashes the whole object for
    its ETag on every GET, HEAD and ranged GET alike: 0.2 s for 87 MB), so
    a scan that sends k requests to the file pays that k times where the
    GET pays it once; the fair baseline is the GET of our kind measured
    next to the scan, at the same load."""

    EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    def __init__(self, s, port: int, key: str, size: int):
        self.url = f"http://127.0.0.1:{port}/{s.bucket}/{key}"
        self.auth = ["--aws-sigv4", "aws:amz:us-east-1:s3", "-H", f"x-amz-content-sha256: {self.EMPTY_SHA256}",
                     "--user", f"{s.env['LSVFS_S3_KEY']}:{s.env['LSVFS_S3_SECRET']}"]
        self.size = size
        self.etag = None

    def seconds(self, like_ours: bool) -> float:
        headers = []
        if like_ours:
            if self.etag is None:
                out = subprocess.run(["curl", "-sfI", *self.auth, self.url], check=True, capture_output=True,
                                     text=True).stdout
                self.etag = next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                                 if ln.lower().startswith("etag:"))
            headers = ["-H", f"If-Match: {self.etag}", "-H", f"Range: bytes=0-{self.size - 1}"]
        t0 = time.time()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", *self.auth, *headers, self.url], check=True)
        return time.time() - t0


def secs(r):
    if not r or "wall" not in r:
        return "error" if r and "error" in r else "-"
    s = r["wall"][1] - r["wall"][0]
    text = ("> " if r.get("capped") else "") + (f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s")
    if r.get("error") and not r.get("capped"):
        text += f" (failed: {r['error']})"
    return text


def render(rep):
    snap_mb = rep["get"]["bytes"] / 1e6
    get_mbs = snap_mb / rep["get"]["s"]

    def scan_mbs(r):
        if not r or "wall" not in r or r.get("capped"):
            return "-"
        return f"{snap_mb / (r['wall'][1] - r['wall'][0]):.0f} MB/s"

    lines = [
        f"Cold reads, {rep['rows']:,} rows ({rep['db_bytes'] / 1e6:.0f} MB database), S3 (s3s-fs) behind a proxy "
        f"adding {rep['rtt_ms']:.0f} ms per request; each cell a fresh process.",
        "",
        "| workload | ours | official |",
        "|---|---|---|",
    ]
    o, f = rep.get("customer-ours", {}), rep.get("customer-official", {})
    lines.append(f"| one customer's orders ({rep['customer_rows']} rows) | {secs(o)}, {o.get('waves')} round trips, "
                 f"{o.get('requests')} requests | {secs(f)}, {f.get('waves')} round trips, {f.get('requests')} requests |")
    o, f = rep.get("pk-ours", {}), rep.get("pk-official", {})
    lines.append(f"| 200 random PK lookups (interiors warm) | {secs(o)}, worst {o.get('worst_waves')} round trip(s) "
                 f"per lookup, {o.get('requests')} requests | {secs(f)}, worst {f.get('worst_waves')}, "
                 f"{f.get('requests')} requests |")
    o, f = rep.get("scan-ours", {}), rep.get("scan-official", {})
    lines.append(f"| cold full scan | {secs(o)} ({scan_mbs(o)}), {o.get('requests')} requests | {secs(f)} "
                 f"({scan_mbs(f)}), {f.get('requests')} requests |")
    lines.append(f"| one GET of the {snap_mb:.0f} MB snapshot | {rep['get']['s']:.2f} s ({get_mbs:.0f} MB/s) | |")
    lines.append(f"| cold full scan / one GET (bandwidth) | {scan_ratio(o, rep)} | {scan_ratio(f, rep)} |")
    lines.append(f"| one GET like ours (If-Match, Range), right before / after the scan | {gets_like_ours(o)} | "
                 f"{gets_like_ours(f)} |")
    lines.append(f"| cold full scan / the faster GET like ours next to it (bandwidth) | {fair_ratio(o)} | "
                 f"{fair_ratio(f)} |")
    n, o, f = rep.get("warm-native", {}), rep.get("warm-ours", {}), rep.get("warm-official", {})

    def ratio(r):
        try:
            return f"{(r['wall'][1] - r['wall'][0]) / (n['wall'][1] - n['wall'][0]):.2f}x native"
        except (KeyError, TypeError, ZeroDivisionError):
            return "-"
    lines.append(f"| warm full scan, file://, 64 MiB cache (native {secs(n)}) | {secs(o)} ({ratio(o)}) | "
                 f"{secs(f)} ({ratio(f)}) |")
    if rep.get("mem"):
        lines += ["", *render_memory(rep["mem"])]
    return "\n".join(lines) + "\n"


def gets_like_ours(r):
    g = (r or {}).get("get_like_ours")
    return f"{g[0]:.2f} s / {g[1]:.2f} s" if g else "-"


def fair_ratio(r):
    """The cold scan's bandwidth as a share of the faster of the two GETs of
    our kind measured right before and after it (the faster: a GET that
    met a stall of the shared server would flatter the scan)."""
    g = (r or {}).get("get_like_ours")
    if not g or "wall" not in r or r.get("capped"):
        return "-"
    return f"{min(g) / (r['wall'][1] - r['wall'][0]) * 100:.0f} %"


def scan_ratio(r, rep):
    """The cold scan's bandwidth as a share of one GET's (same bytes: the snapshot)."""
    if not r or "wall" not in r or r.get("capped"):
        return "-"
    return f"{rep['get']['s'] / (r['wall'][1] - r['wall'][0]) * 100:.0f} %"


# ---------------------------------------------------------------- memory rows
# Peak RSS (VmHWM) of a fresh process per cell, over S3 behind the proxy,
# cache_size=64MiB for ours (native: a 64 MiB SQLite page cache; the
# official extension has no cache size to set). Kept apart from the other
# rows so that rows added elsewhere merge cleanly.

MEM_LOOKUPS = 200


def memory_child(spec: dict, conn, started: float) -> dict:
    """A memory workload in this process: `bare` (nothing read), or a mode
    (`scan`: a cold full scan then lookups; `hydrate`: wait for hydration to
    reach 100 %, then the same; `verify`: the same with verify=full, then
    wait until the snapshot is verified)."""
    out = {}
    if spec["workload"] == "bare":
        return out
    mode = spec["mode"]
    deadline = started + spec["cap_s"]
    if mode == "hydrate":
        while time.time() < deadline:
            if float(conn.execute("PRAGMA litestream_hydration_progress").fetchone()[0]) >= 100:
                break
            time.sleep(0.05)
        out["hydrated_s"] = time.time() - started
    t0 = time.time()
    r = conn.execute(QUERIES["scan"]).fetchone()
    for i in spec["ids"]:
        conn.execute(QUERIES["pk"], (i,)).fetchone()
    out.update(wall=[t0, time.time()], rows=r[0])
    if mode == "verify":
        while time.time() < deadline:
            stats = conn.execute("PRAGMA litestream_stats").fetchone()[0]
            if "verified=0" not in stats:
                out["verified"] = True
                break
            time.sleep(0.05)
    return out


def memory_rows(a, work: Path, db: Path, s3url: str, ids: list, libs: dict, envs: dict, kinds: list) -> dict:
    rnd = random.Random(11)
    ids = rnd.sample(range(1, a.rows + 1), MEM_LOOKUPS)
    hyd = work / "mem-hydrated"
    subprocess.run(["rm", "-rf", str(hyd)], check=True)
    hyd.mkdir(parents=True)
    out = {}
    common = {"url": s3url, "cap_s": a.cap_s, "ids": ids, "db": str(db), "cache": "64MiB"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LITESTREAM_", "AWS_"))}
    cells = [("bare", "native", {"workload": "bare"}, base),
             ("scan", "native", {"workload": "mem", "mode": "scan", "sqlite_cache_kib": 65536}, base)]
    for kind in kinds:
        env = envs[kind]
        cells.append(("bare", kind, {"workload": "bare"}, env))
        cells.append(("scan", kind, {"workload": "mem", "mode": "scan"}, env))
        path = str(hyd / f"{kind}.db")
        henv = {**env, "LITESTREAM_HYDRATION_ENABLED": "true", "LITESTREAM_HYDRATION_PATH": path}
        cells.append(("hydrate", kind, {"workload": "mem", "mode": "hydrate",
                                        "params": {"hydration_enabled": "1", "hydration_path": path}}, henv))
        if kind == "ours":
            cells.append(("verify", kind, {"workload": "mem", "mode": "verify", "params": {"verify": "full"}}, env))
    for row, kind, extra, env in cells:
        spec = {**common, "kind": kind, "lib": libs.get(kind), **extra}
        if kind == "native" and row == "bare":
            spec["workload"] = "bare"
        out[f"{row}-{kind}"] = run_child(spec, env, work)
    return out


def render_memory(mem: dict) -> list:
    def mb(r):
        if not r:
            return "-"
        if "hwm" not in r:
            return "error" if "error" in r else "-"
        text = f"{r['hwm'] / 1e6:.0f} MB"
        if r.get("error") and not r.get("capped"):
            text += f" (failed: {r['error'][:60]})"
        elif r.get("capped"):
            text += " (capped)"
        return text

    rows = [("open and read the schema only", "bare"),
            (f"cold full scan, then {MEM_LOOKUPS} lookups", "scan"),
            ("hydration to 100 %, then the scan and lookups", "hydrate"),
            ("verify=full: the scan and lookups, then the verification", "verify")]
    lines = ["Peak RSS (VmHWM, a fresh process per cell), S3 behind the proxy; `cache_size=64MiB` for ours "
             "(target: at most the cache + 40 MB), a 64 MiB page cache for native SQLite, the official "
             "extension's defaults.", "",
             "| workload | native | ours | official |", "|---|---|---|---|"]
    for label, key in rows:
        lines.append(f"| {label} | {mb(mem.get(f'{key}-native'))} | {mb(mem.get(f'{key}-ours'))} | "
                     f"{mb(mem.get(f'{key}-official'))} |")
    return lines


if __name__ == "__main__":
    main()
