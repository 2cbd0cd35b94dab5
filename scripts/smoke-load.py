#!/usr/bin/env python3
"""Smoke test of a built library on the machine at hand (the release
workflow runs it on every runner): load it into SQLite without naming an
entry point, open the fixture replica tests/fixtures/basic-4k through the
`litestream` VFS, and compare its rows with the fixture's manifest.

    python scripts/smoke-load.py LIB... [--sqlite3 PATH]

Each LIB is loaded in a fresh process, so each name's entry point is proven
(`litestream.so` -> sqlite3_litestream_init, `litestream-vfs.so` ->
sqlite3_litestreamvfs_init). Python's sqlite3 is used when it can load
extensions, else apsw (pip install apsw). With --sqlite3, the sqlite3 shell
at PATH loads each LIB too. Standard library only, besides the apsw fallback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "basic-4k"


def replica_uri() -> str:
    url = (FIXTURE / "replica").resolve().as_uri()
    return "file:smoke.db?vfs=litestream&mode=ro&replica_url=" + urllib.parse.quote(url, safe="")


def digest(rows_by_table) -> str:
    """The manifest digest: sha256 over repr(row), tables by name, rowid order."""
    h = hashlib.sha256()
    for _, rows in sorted(rows_by_table.items()):
        for row in rows:
            h.update(repr(tuple(row)).encode())
    return h.hexdigest()


def child(lib: str) -> None:
    """Runs in a fresh process: load `lib`, read the replica, print JSON."""
    import sqlite3

    path = os.path.splitext(os.path.abspath(lib))[0]
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        host = f"python sqlite3 {sqlite3.sqlite_version}"
        loader = sqlite3.connect(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(path)
        loader.close()
        db = sqlite3.connect(replica_uri(), uri=True)
        query = lambda sql: db.execute(sql).fetchall()  # noqa: E731
    else:
        import apsw

        host = f"apsw {apsw.apsw_version()} (sqlite {apsw.sqlite_lib_version()})"
        loader = apsw.Connection(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(path)
        db = apsw.Connection(replica_uri(), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
        query = lambda sql: list(db.execute(sql))  # noqa: E731
    tables = [r[0] for r in query("SELECT name FROM sqlite_master WHERE type='table' "
                                  "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_litestream%' ESCAPE '\\'")]
    rows = {t: query(f'SELECT * FROM "{t}" ORDER BY rowid') for t in tables}
    counts = {t: len(r) for t, r in rows.items()}
    txid = query("SELECT litestream_txid()")[0][0]
    print(json.dumps({"host": host, "digest": digest(rows), "tables": counts, "txid": txid}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("libs", nargs="+")
    parser.add_argument("--sqlite3", help="a sqlite3 shell that loads each library too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.libs[0])
        return 0

    newest = json.loads((FIXTURE / "manifest.json").read_text())["history"][-1]
    failed = False
    for lib in args.libs:
        proc = subprocess.run([sys.executable, __file__, "--child", lib], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            print(f"FAIL {lib}: {proc.stderr.strip()}")
            failed = True
            continue
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        ok = got["digest"] == newest["digest"] and got["tables"] == newest["tables"]
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {lib}: {got['host']}, txid {got['txid']}, tables {got['tables']}")
        if args.sqlite3:
            shell = subprocess.run(
                [args.sqlite3, "-batch", "-bail", "-cmd", f".load {os.path.splitext(os.path.abspath(lib))[0]}",
                 "-cmd", f".open {replica_uri()}", ":memory:", "SELECT count(*) FROM seed;"],
                capture_output=True, text=True, timeout=120)
            count = shell.stdout.strip()
            ok = shell.returncode == 0 and count == str(newest["tables"]["seed"])
            failed |= not ok
            print(f"{'ok  ' if ok else 'FAIL'} {lib}: {args.sqlite3} -> seed count {count or shell.stderr.strip()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
