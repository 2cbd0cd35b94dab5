#!/usr/bin/env python3
"""Follow-lag reader (run by compare.py, one process per extension).

    follow.py SPEC.json RESULT.json

SPEC: {"kind": "ours"|"official", "lib": path, "url": replica URL (ours),
       "seconds": 25, "every_s": 0.02}

Opens the replica through the VFS and, every `every_s`, reads the newest row
of `ticks` in a fresh read transaction; records (wall time, newest id) each
time the newest id changes.  Output goes to RESULT.json (never stdout).
"""
import json
import os
import sqlite3
import sys
import time
import urllib.parse

spec = json.load(open(sys.argv[1]))
out = {"kind": spec["kind"], "seen": [], "errors": 0}
try:
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(spec["lib"])
    if spec["kind"] == "ours":
        uri = "file:follow.db?" + urllib.parse.urlencode({"vfs": "litestream", "replica_url": spec["url"]},
                                                        quote_via=urllib.parse.quote)
    else:
        uri = "file:follow.db?vfs=litestream"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    last = None
    end = time.time() + spec["seconds"]
    while time.time() < end:
        try:
            row = conn.execute("SELECT max(id) FROM ticks").fetchone()
        except sqlite3.Error as e:
            out["errors"] += 1
            out["last_error"] = str(e)
            row = (last,)
        now = time.time()
        if row[0] is not None and row[0] != last:
            last = row[0]
            out["seen"].append([now, last])
        time.sleep(spec["every_s"])
except Exception as e:  # noqa: BLE001
    out["fatal"] = f"{type(e).__name__}: {e}"
finally:
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
    os._exit(0)
