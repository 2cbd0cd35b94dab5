#!/usr/bin/env python3
"""One measured configuration, in its own process (run by compare.py).

    child.py SPEC.json RESULT.json

SPEC: {"kind": "native"|"official"|"ours", "backend": "file"|"s3",
       "phase": "lookup"|"range"|"scan", "lib": path, "db": path (native),
       "url": replica URL (ours: URI parameter; official: already in the env),
       "control": proxy stats URL or null, "ids": [...], "first_id": n,
       "range": [lo, hi], "reps": 3, "cap_s": 60, "idle_s": 0}

Every phase loads the library and opens the database (cold: fresh process,
fresh cache), then runs its workload cold and `reps` more times warm. For each
step it records wall time and storage traffic: /proc/self/io (read syscalls and
bytes, all threads), our `PRAGMA litestream_stats`, and the proxy's counters.
The result goes to RESULT.json, never stdout (the official extension logs there).
"""
import json
import os
import re
import sqlite3
import sys
import time
import urllib.parse
import urllib.request

spec = json.load(open(sys.argv[1]))
result_path = sys.argv[2]
kind, backend, phase = spec["kind"], spec["backend"], spec["phase"]
res = {"kind": kind, "backend": backend, "phase": phase, "steps": {}}


def proc_io():
    d = {}
    with open("/proc/self/io") as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k] = int(v)
    return {"syscr": d["syscr"], "rchar": d["rchar"]}


def proxy_stats():
    if not spec.get("control"):
        return {}
    with urllib.request.urlopen(spec["control"], timeout=10) as r:
        return json.load(r)


conn = None


def ours_stats():
    if kind != "ours" or conn is None:
        return {}
    try:
        text = conn.execute("PRAGMA litestream_stats").fetchone()[0]
    except sqlite3.Error:
        return {}
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", text) if k in
            ("lists", "reads", "read_bytes", "polls", "cache_bytes", "cache_budget", "pages")}


def counters():
    return {"io": proc_io(), "proxy": proxy_stats(), "ours": ours_stats()}


def diff(a, b):
    out = {}
    for group in ("io", "proxy", "ours"):
        out[group] = {k: b[group][k] - a[group].get(k, 0) for k in b[group]
                      if isinstance(b[group][k], int) and k not in ("cache_bytes", "cache_budget", "pages")}
    if b.get("ours"):
        for k in ("cache_bytes", "cache_budget", "pages"):
            out["ours"][k] = b["ours"].get(k, 0)
    return out


def step(name, fn):
    """Runs fn() with counters around it; fn returns extra fields (dict) or None."""
    before = counters()
    w0 = time.time()
    t0 = time.perf_counter()
    err = None
    extra = None
    try:
        extra = fn()
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        err = f"{type(e).__name__}: {e}"
    dt = time.perf_counter() - t0
    after = counters()
    rec = {"s": dt, "wall": [w0, time.time()], **diff(before, after)}
    if extra:
        rec.update(extra)
    if err:
        rec["error"] = err
    res["steps"][name] = rec
    return rec


def capped(sql, params=()):
    """Runs a query to completion unless it exceeds cap_s (then interrupted)."""
    deadline = time.monotonic() + spec["cap_s"]
    state = {"capped": False}

    def progress():
        if time.monotonic() > deadline:
            state["capped"] = True
            return 1
        return 0

    conn.set_progress_handler(progress, 1000)
    try:
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as e:
        if state["capped"]:
            return {"capped": True}
        raise
    finally:
        conn.set_progress_handler(None, 0)
    return {"capped": False, "rows": len(rows), "result": repr(rows[0])[:80] if len(rows) == 1 else None}


def lookups(ids):
    deadline = time.monotonic() + spec["cap_s"]
    n = 0
    q = "SELECT id, customer, created, amount, note FROM orders WHERE id = ?"
    for i in ids:
        row = conn.execute(q, (i,)).fetchone()
        if row is None or row[0] != i:
            raise RuntimeError(f"lookup {i} returned {row!r}")
        n += 1
        if time.monotonic() > deadline:
            return {"done": n, "capped": True}
    return {"done": n, "capped": False}


def main():
    global conn
    boot = None
    if kind != "native":
        def load():
            nonlocal boot
            boot = sqlite3.connect(":memory:")
            boot.enable_load_extension(True)
            boot.load_extension(spec["lib"])
        step("load", load)
        if "error" in res["steps"]["load"]:
            return

    if kind == "native":
        uri = "file:" + urllib.parse.quote(spec["db"]) + "?mode=ro"
    elif kind == "ours":
        uri = "file:replica.db?" + urllib.parse.urlencode({"vfs": "litestream", "replica_url": spec["url"]},
                                                        quote_via=urllib.parse.quote)
    else:
        uri = "file:replica.db?vfs=litestream"

    def open_db():
        global conn
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    rec = step("open", open_db)
    if "error" in rec:
        return

    reps = spec["reps"]
    if phase == "lookup":
        step("first_query", lambda: lookups([spec["first_id"]]))
        step("lookups_cold", lambda: lookups(spec["ids"]))
        for r in range(reps):
            rec = step(f"lookups_warm{r}", lambda: lookups(spec["ids"]))
            if rec.get("capped") or "error" in rec:
                break  # a capped warm pass would only repeat the cap

        # steady state: the same passes after settle_s of idling, once any
        # background work the open started (verification, prefetch) is over
        time.sleep(spec.get("settle_s", 0))
        for r in range(reps):
            rec = step(f"lookups_settled{r}", lambda: lookups(spec["ids"]))
            if rec.get("capped") or "error" in rec:
                break
        if spec.get("ids_small"):
            # the S3 configurations use a smaller id set; native measures it too
            # so that the S3 ratios compare the same working set
            for r in range(reps):
                step(f"lookups_small{r}", lambda: lookups(spec["ids_small"]))

        def in_one_transaction():
            conn.execute("BEGIN")
            try:
                return lookups(spec["ids"])
            finally:
                conn.execute("COMMIT")
        # diagnostic: the same warm lookups inside one read transaction, which
        # separates per-transaction cost (lock, page-1 check) from per-page cost
        step("lookups_warm_1tx", in_one_transaction)
    elif phase == "range":
        q = "SELECT id, customer, created, amount, note FROM orders WHERE customer BETWEEN ? AND ?"
        step("range_cold", lambda: capped(q, tuple(spec["range"])))
        for r in range(reps):
            step(f"range_warm{r}", lambda: capped(q, tuple(spec["range"])))
        if spec.get("idle_s"):
            step("idle", lambda: time.sleep(spec["idle_s"]))
    elif phase == "scan":
        q = "SELECT count(*), sum(amount), max(length(note)) FROM orders"
        rec = step("scan_cold", lambda: capped(q))
        time.sleep(spec.get("settle_s", 0))  # let background work the cold pass started finish
        for r in range(reps):
            rec = step(f"scan_warm{r}", lambda: capped(q))
            if rec.get("capped") or "error" in rec:
                break  # a capped warm pass would only repeat the cap

    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                res[line.split(":")[0]] = int(line.split()[1]) * 1024


try:
    main()
except Exception as e:  # noqa: BLE001
    res["fatal"] = f"{type(e).__name__}: {e}"
finally:
    with open(result_path, "w") as f:
        json.dump(res, f)
    sys.stdout.flush()
    os._exit(0)  # do not wait for background threads (pollers) to wind down
