#!/usr/bin/env python3
"""One hydration measurement, in its own process (run by local_store.py).

    hydrate_child.py SPEC.json RESULT.json

SPEC: {"kind": "native"|"official"|"ours", "lib": path, "db": path (native),
       "url": replica URL (ours), "control": proxy stats URL or null,
       "ids": [...], "range": [lo, hi], "cap_s": 300, "wait": true}

Opens the database (the extensions: with hydration configured in the
environment), waits until PRAGMA litestream_hydration_progress reports 100
(`wait`), then times the workloads of compare.py on what is now local:
point lookups, one customer's orders, a full scan; cold (first pass in this
process) and warm (second pass).
"""
import json
import sqlite3
import sys
import time
import urllib.parse
import urllib.request

spec = json.load(open(sys.argv[1]))
res = {"kind": spec["kind"]}


def proxy():
    if not spec.get("control"):
        return {}
    with urllib.request.urlopen(spec["control"], timeout=10) as r:
        return json.load(r)


def delta(a, b):
    out = {}
    for k, v in b.items():
        if isinstance(v, int):
            out[k] = v - a.get(k, 0)
        elif isinstance(v, dict):
            out[k] = delta(a.get(k, {}), v)
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def timed_cpu(key, fn):
    """Wall time, and the CPU time of the whole process (every thread) in
    res[key + "_cpu_s"]: on a machine shared with other work the wall time
    moves with the load, the CPU time much less."""
    c0 = time.process_time()
    out = timed(fn)
    res[key + "_cpu_s"] = time.process_time() - c0
    return out


def main():
    kind = spec["kind"]
    p0, t0 = proxy(), time.perf_counter()
    if kind == "native":
        conn = sqlite3.connect("file:" + urllib.parse.quote(spec["db"]) + "?mode=ro", uri=True,
                               isolation_level=None)
    else:
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension(spec["lib"])
        if kind == "ours":
            uri = "file:replica.db?" + urllib.parse.urlencode({"vfs": "litestream", "replica_url": spec["url"]},
                                                            quote_via=urllib.parse.quote)
        else:
            uri = "file:replica.db?vfs=litestream"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    res["open_s"] = time.perf_counter() - t0
    if kind != "native" and spec.get("wait", True):
        seen = []
        deadline = time.monotonic() + spec["cap_s"]
        while time.monotonic() < deadline:
            p = float(conn.execute("PRAGMA litestream_hydration_progress").fetchone()[0])
            if not seen or seen[-1][1] != p:
                seen.append((round(time.perf_counter() - t0, 3), p))
            if p >= 100:
                break
            time.sleep(0.02)
        res["hydrated_s"] = time.perf_counter() - t0
        res["progress"] = seen
        res["file"] = conn.execute("PRAGMA litestream_hydration_file").fetchone()[0]
        res["complete"] = bool(seen) and seen[-1][1] >= 100
    res["fill_proxy"] = delta(p0, proxy())
    q_id = "SELECT id, customer, created, amount, note FROM orders WHERE id = ?"
    q_range = "SELECT id, customer, created, amount, note FROM orders WHERE customer BETWEEN ? AND ?"
    q_scan = "SELECT count(*), sum(amount), max(length(note)) FROM orders"
    p1 = proxy()
    for label in ("cold", "warm"):
        res[f"lookups_{label}_s"], _ = timed_cpu(f"lookups_{label}",
                                                 lambda: [conn.execute(q_id, (i,)).fetchone() for i in spec["ids"]])
        res[f"range_{label}_s"], _ = timed(lambda: conn.execute(q_range, tuple(spec["range"])).fetchall())
        res[f"scan_{label}_s"], res["scan_result"] = timed_cpu(f"scan_{label}", lambda: conn.execute(q_scan).fetchone())
    res["read_proxy"] = delta(p1, proxy())
    res["lookups"] = len(spec["ids"])


try:
    main()
except Exception as e:  # noqa: BLE001
    res["fatal"] = f"{type(e).__name__}: {e}"
finally:
    with open(sys.argv[2], "w") as f:
        json.dump(res, f)
    sys.stdout.flush()
    import os
    os._exit(0)
