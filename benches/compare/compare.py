#!/usr/bin/env python3
"""End-to-end comparison (the command line; setup, measuring and reporting
live in bench_setup.py, bench_measure.py and bench_report.py, shared bits in
bench_common.py): native SQLite vs the official Litestream VFS (Go,
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

from pathlib import Path
import argparse
import json
import os
import shutil
import time

from bench_common import HERE, ROOT, log, stop_all
from bench_measure import run
from bench_report import render, splice_docs

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


if __name__ == "__main__":
    main()
