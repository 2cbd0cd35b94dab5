"""Measuring: one child process per configuration and workload, follow lag, request waves."""
from __future__ import annotations

from pathlib import Path
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

from bench_common import AWS_KEY, AWS_SECRET, BUCKET, DB_FORMAT, HERE, PY, base_env, log, spawn, stop
from bench_setup import S3, btree_depth, build_db, ls_config, ltx_files, replicate
from bench_report import pct, stripped_size

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
