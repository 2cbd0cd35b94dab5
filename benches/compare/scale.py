#!/usr/bin/env python3
"""Scale: a 1,000,000-page (4 GB) replica opened cold over S3.

    .venv/bin/python benches/compare/scale.py [--rtt-ms 20]

Writes the replica with `cargo test --release --test scale_open -- --ignored`
(a snapshot of 1,000,000 pages whose first pages come from a real sqlite3
database), copies it into the shared s3s-fs (`tests/harness/servers.sh up`;
never stopped here), puts benches/compare/proxy.py in front, and opens it
through our extension in a fresh process: open time, sequential round trips
of the open (waves in the proxy log, as compare.py counts them, TCP connects
included), requests, the page index size (`PRAGMA litestream_stats`) and RSS.
"""
import argparse
import json
import os
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

import lsvfs  # noqa: E402
import servers as srv  # noqa: E402


def child(url: str, lib: str) -> dict:
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(lib)
    uri = "file:scale.db?" + urllib.parse.urlencode(
        {"vfs": "litestream", "replica_url": url, "verify": "fetched", "poll_interval": "1h"},
        quote_via=urllib.parse.quote)
    t0 = time.time()
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    t1 = time.time()
    rows = conn.execute("SELECT * FROM t").fetchall()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    stats = conn.execute("PRAGMA litestream_stats").fetchone()[0]
    rss = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return {"open": [t0, t1], "rows": rows, "pages": pages, "stats": stats, "rss": rss}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--rtt-ms", type=float, default=20)
    ap.add_argument("--work", default="/tmp/lsvfs-scale-bench")
    ap.add_argument("--ours", default=str(ROOT / "target" / "release" / "liblitestream_vfs.so"))
    a = ap.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(*a.child)), flush=True)
        os._exit(0)
    work = Path(a.work)
    replica = work / "replica"
    if not (replica / "ltx" / "9").exists():
        subprocess.run(["cargo", "test", "--release", "--test", "scale_open", "--", "--ignored", "--nocapture"],
                       cwd=ROOT, check=True, env={**os.environ, "LSVFS_SCALE_OUT": str(replica)})
    s, _ = srv.start()
    prefix = "scale-bench-1m"
    dest = Path(s.env["LSVFS_S3_DIR"]) / prefix
    if not dest.exists():
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
        url = (f"s3://{s.bucket}/{prefix}?endpoint=http://127.0.0.1:{pport}&region=us-east-1"
               "&force-path-style=true")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("LITESTREAM_", "AWS_"))},
               **s.reader_env("s3")}
        r = subprocess.run([sys.executable, __file__, "--child", url, a.ours], env=env, capture_output=True,
                           text=True, timeout=300)
        res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    finally:
        proxy.terminate()
        proxy.wait(10)
    t0, t1 = res["open"]
    times = sorted(float(ln.split()[0]) for ln in log.read_text().splitlines() if t0 <= float(ln.split()[0]) <= t1)
    waves, last = 0, None
    for t in times:
        if last is None or t - last > a.rtt_ms / 2000:
            waves += 1
        last = t
    snap = max((replica / "ltx" / "9").glob("*.ltx"), key=lambda p: p.stat().st_size)
    print(f"1,000,000-page replica over S3 (+{a.rtt_ms:.0f} ms per request), LTX snapshot "
          f"{snap.stat().st_size / 1e6:.0f} MB: open {(t1 - t0) * 1000:.0f} ms, {waves} sequential round trips "
          f"({len(times)} requests and connects), page_count {res['pages']}, RSS {res['rss'] / 1e6:.0f} MB; "
          f"rows {res['rows']}; stats {res['stats']}")
    shutil.rmtree(work / "unused", ignore_errors=True)


if __name__ == "__main__":
    main()
