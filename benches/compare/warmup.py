#!/usr/bin/env python3
"""The warm-up of interior pages (issue 21): a fresh process's first
lookups, ours (warm-up on and off) vs the official extension vs native
SQLite, side by side in one run.

    .venv/bin/python benches/compare/warmup.py [--rows 1000000] [--rtt-ms 20]

Uses cold.py's database (`orders`, ~250 rows per customer scattered over
the table, an index on `customer`; built by the `sqlite3` shell, replicated
by the real Litestream 0.5.17, copied to the shared s3s-fs) behind
benches/compare/proxy.py, which adds a round trip to every request and logs
each. Every cell is a fresh process. Rows:

- **200 random primary-key lookups, fresh process**: requests and sequential
  round trips of the lookups (the proxy's log between their first and last
  moment), worst round trips of one lookup, wall time; and the process's
  requests from before the open to the end (open and warm-up included).
  `ours, warm-up` waits for the warm-up to end before the lookups (polling
  `PRAGMA litestream_stats`), which the wall time of the warm-up shows;
  `ours, no wait` starts the lookups right after the open, the warm-up
  running beside them. `ours, next process` is a fresh process on a host
  whose disk tier (`disk_cache`) an earlier process filled with its warm-up
  alone (it looked nothing up): the interior pages come from disk, so the
  process pays the open and one request per lookup.
- **one customer's orders**: round trips and requests of the query, in a
  fresh process (ours after the warm-up).

For a waited-for warm-up it also reports the warm-up's requests and round
trips at the proxy, the bytes its ranged reads asked for (`MB asked`: gaps
included) and the process's peak RSS when it ended. `--params k=v,...` adds
URI parameters to ours (e.g. `warmup_read_max=0`, the fixed merging);
`--ours LIB` compares another build.

The report goes to stdout and to --out (markdown).
"""
import argparse
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(HERE))

import cold  # noqa: E402
import lsvfs  # noqa: E402
import servers as srv  # noqa: E402

PK = "SELECT id, customer, amount, note FROM orders WHERE id = ?"
CUSTOMER = "SELECT id, amount, note FROM orders WHERE customer = ?"


def child(spec: dict) -> dict:
    """One fresh process."""
    t_start = time.time()
    kind = spec["kind"]
    if kind == "native":
        conn = sqlite3.connect(f"file:{spec['db']}?mode=ro", uri=True)
    else:
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension(spec["lib"])
        if kind == "official":
            uri = "file:replica.db?vfs=litestream"
        else:
            # s3s-fs spends ~0.2 s of CPU per ranged GET of the 87 MB
            # snapshot on 2 shared cores: 128 parallel prefetches queue for
            # longer than the default 20 s budget of one call.
            params = {"vfs": "litestream", "replica_url": spec["url"], "poll_interval": "1h",
                      "storage_timeout": "180s",
                      "warmup": "on" if spec.get("warmup", True) else "off"}
            if spec.get("disk_cache"):
                params["disk_cache"] = spec["disk_cache"]
            params.update(spec.get("params", {}))
            uri = "file:replica.db?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    out = {"start": t_start, "opened": time.time()}
    if kind == "ours" and spec.get("wait"):
        deadline = time.time() + 120
        while time.time() < deadline:
            s = conn.execute("PRAGMA litestream_stats").fetchone()[0]
            if "warmup_state=running" not in s:
                break
            time.sleep(0.02)
        out["warm"] = time.time()
        out["stats"] = dict(re.findall(r"(warmup_\w+)=(\S+)", s))
        out["warm_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    w = spec["workload"]
    if w == "none":
        out["end"] = time.time()
        return out
    if w == "lookups":
        windows = []
        for i in spec["ids"]:
            a = time.time()
            row = conn.execute(PK, (i,)).fetchone()
            assert row and row[0] == i, (i, row)
            windows.append([a, time.time()])
        out.update(wall=[windows[0][0], windows[-1][1]], windows=windows)
    else:
        t0 = time.time()
        rows = conn.execute(CUSTOMER, (spec["customer"],)).fetchall()
        out.update(wall=[t0, time.time()], rows=len(rows))
    out["end"] = time.time()
    return out


def run_child(spec: dict, env: dict, work: Path) -> dict:
    sp = work / "warmup-spec.json"
    sp.write_text(json.dumps(spec))
    r = subprocess.run([sys.executable, __file__, "--child", str(sp)], env=env, capture_output=True,
                       text=True, timeout=600)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return {"error": (r.stderr or r.stdout)[-3000:]}
    return json.loads(lines[-1][7:])


def prime_disk_cache(spec: dict, env: dict, work: Path, key: str) -> dict:
    """A new, empty disk tier that one process's warm-up alone fills (it
    looks nothing up); `spec` reads through it."""
    cache = work / f"disk-cache-{key}"
    if cache.exists():
        shutil.rmtree(cache)
    spec = {**spec, "disk_cache": str(cache)}
    r = run_child({**spec, "workload": "none"}, env, work)
    assert "error" not in r, r
    return spec


def measure(r: dict, log: Path, rtt: float) -> dict:
    if "error" in r:
        return r
    r["trips"], r["requests"] = cold.waves(log, *r["wall"], rtt)
    r["process_requests"] = cold.waves(log, r["start"], r["end"] + 1, rtt)[1]
    if "warm" in r:
        r["warmup_trips"], r["warmup_requests_proxy"] = cold.waves(log, r["opened"], r["warm"], rtt)
        r["warmup_bytes_asked"] = asked_bytes(log, r["opened"], r["warm"])
    if "windows" in r:
        per = [cold.waves(log, a, b, rtt) for a, b in r.pop("windows")]
        r["worst_trips"] = max(t for t, _ in per)
        r["mean_trips"] = sum(t for t, _ in per) / len(per)
    return r


def asked_bytes(log: Path, t0: float, t1: float) -> int:
    """Bytes the ranged reads logged between t0 and t1 asked for (a read
    of a body that streams to its end transfers them all)."""
    total = 0
    for line in log.read_text().splitlines():
        parts = line.split()
        if not parts or not t0 <= float(parts[0]) <= t1:
            continue
        m = re.search(r"range=bytes=(\d+)-(\d+)", line)
        if m:
            total += int(m.group(2)) - int(m.group(1)) + 1
    return total


def secs(r: dict) -> str:
    if not r or "wall" not in r:
        return "error" if r and "error" in r else "-"
    s = r["wall"][1] - r["wall"][0]
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def failed(r: dict | None) -> str | None:
    if not r:
        return "-"
    if "error" in r:
        return "failed: " + r["error"].strip().splitlines()[-1][:120]
    return None


def lookup_cells(lk: dict | None) -> str:
    if failed(lk):
        return f"{failed(lk)} | | "
    warm = ""
    if "warm" in lk:
        st = lk.get("stats", {})
        warm = (f"; warm-up {lk['warm'] - lk['opened']:.1f} s, {lk.get('warmup_requests_proxy')} requests, "
                f"{lk.get('warmup_trips')} round trips, {lk.get('warmup_bytes_asked', 0) / 1e6:.1f} MB asked, "
                f"peak RSS {lk.get('warm_rss_mb', 0):.0f} MB, "
                f"{st.get('warmup_pages')} interior pages")
    return (f"{lk.get('requests')} ({lk.get('process_requests')}{warm}) "
            f"| {lk.get('trips')} ({lk.get('mean_trips', 0):.2f}, worst {lk.get('worst_trips')}) | {secs(lk)}")


def customer_cell(cu: dict | None) -> str:
    return failed(cu) or f"{secs(cu)}, {cu.get('trips')} round trips, {cu.get('requests')} requests"


def render(rep: dict) -> str:
    lines = [f"`orders`, {rep['rows']:,} rows ({rep['db_bytes'] / 1e6:.0f} MB), S3 = s3s-fs behind a proxy "
             f"adding {rep['rtt_ms']:.0f} ms per request; each cell a fresh process.", "",
             "| configuration | 200 random PK lookups: requests (process total) | round trips (per lookup, worst) "
             "| time | one customer's orders ({} rows) |".format(rep["customer_rows"]),
             "|---|---|---|---|---|"]
    names = {"native": "native", "ours-warm": "ours, warm-up (waited for)",
             "ours-nowait": "ours, warm-up (not waited for)", "ours-off": "ours, warm-up off",
             "ours-next": "ours, next process (disk tier warmed)",
             "official": "official 0.5.17"}
    for key, name in names.items():
        lk, cu = rep.get(f"lookups-{key}"), rep.get(f"customer-{key}")
        if lk is None and cu is None:
            continue
        if key == "native":
            lines.append(f"| {name} | 0 | 0 | {secs(lk)} | {secs(cu)} |")
            continue
        lines.append(f"| {name} | {lookup_cells(lk)} | {customer_cell(cu)} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rtt-ms", type=float, default=20)
    ap.add_argument("--work", default="/tmp/lsvfs-warmup-bench")
    ap.add_argument("--ours", default=str(ROOT / "target" / "release" / "liblitestream_vfs.so"))
    ap.add_argument("--out", default=str(HERE / "warmup-results.md"))
    ap.add_argument("--kinds", default="native,ours-warm,ours-nowait,ours-off,ours-next,official")
    ap.add_argument("--workloads", default="lookups,customer")
    ap.add_argument("--params", default="",
                    help="extra URI parameters of ours, k=v,k=v (e.g. warmup_read_max=0)")
    a = ap.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(json.loads(Path(a.child).read_text()))), flush=True)
        os._exit(0)

    import litestream_vfs  # the official extension (PyPI)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    db, replica = cold.build(work, a.rows)
    s, _ = srv.start()
    prefix = f"warmup-bench-{a.rows}"
    if not (Path(s.env["LSVFS_S3_DIR"]) / prefix).exists():
        s.upload_tree("s3", replica, prefix)
    port = int(urllib.parse.urlsplit(s.env["LSVFS_S3_ENDPOINT"]).port)
    log, ready = work / "requests.log", work / "proxy.json"
    log.unlink(missing_ok=True)
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
        rnd = random.Random(7)
        cust = f"cust{rnd.randrange(max(a.rows // 250, 1)):06d}"
        nat = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        n_rows = nat.execute("SELECT count(*) FROM orders WHERE customer = ?", (cust,)).fetchone()[0]
        ids = rnd.sample(range(1, a.rows + 1), 200)
        rtt = a.rtt_ms / 1000
        rep = {"rows": a.rows, "db_bytes": db.stat().st_size, "customer_rows": n_rows, "rtt_ms": a.rtt_ms}
        configs = {
            "native": ({"kind": "native", "db": str(db)}, base),
            "ours-warm": ({"kind": "ours", "lib": a.ours, "url": s3url, "wait": True}, s3env),
            "ours-nowait": ({"kind": "ours", "lib": a.ours, "url": s3url}, s3env),
            "ours-off": ({"kind": "ours", "lib": a.ours, "url": s3url, "warmup": False}, s3env),
            "ours-next": ({"kind": "ours", "lib": a.ours, "url": s3url, "wait": True, "disk_cache": "?"}, s3env),
            "official": ({"kind": "official", "lib": litestream_vfs.loadable_path(), "url": s3url},
                         {**s3env, "LITESTREAM_REPLICA_URL": s3url}),
        }
        extra = dict(kv.split("=", 1) for kv in a.params.split(",") if kv)
        for key, (spec, _) in configs.items():
            if spec["kind"] == "ours" and extra:
                spec["params"] = extra
        workloads = a.workloads.split(",")
        for key in a.kinds.split(","):
            spec, env = configs[key]
            if spec.get("disk_cache"):
                spec = prime_disk_cache(spec, env, work, key)
            if "lookups" in workloads:
                rep[f"lookups-{key}"] = measure(
                    run_child({**spec, "workload": "lookups", "ids": ids}, env, work), log, rtt)
            if "customer" in workloads:
                if spec.get("disk_cache"):
                    spec = prime_disk_cache(spec, env, work, key)
                rep[f"customer-{key}"] = measure(
                    run_child({**spec, "workload": "customer", "customer": cust}, env, work), log, rtt)
            print(key, json.dumps({k: v for k, v in rep.items() if k.endswith(key)}), flush=True)
    finally:
        proxy.terminate()
        proxy.wait(10)
    text = render(rep)
    print(text)
    Path(a.out).write_text(text)
    (work / "warmup-report.json").write_text(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()
