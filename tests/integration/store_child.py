#!/usr/bin/env python3
"""One reader process of the local-store tests (test_local_store.py).

    store_child.py URI ACTION [ARG]

Opens URI through the built library and runs ACTION, then prints one JSON
line with the extension's counters at open and after the action:
- `digest`: the content digest of every user table (a full read);
- `lookups N`: N point lookups by rowid over the items table;
- `hydrate`: waits until PRAGMA litestream_hydration_progress is 100 and
  prints each new progress value as a JSON line {"progress": p} first;
- `follow SECONDS`: waits for hydration, then reads everything repeatedly
  for SECONDS while the replica follows;
- `travel TIME`: the digest at TIME (time travel), then at the newest state;
- `dropped N`: waits until the fill dropped N damaged pages of the copy
  and is at 100 % again, then computes the digest.
- `locked FOLDER`: holds the write lock of the store file in FOLDER
  through another open of it (as a process stopped while holding it
  would), then computes the digest.
- `bank SECONDS`: reads the bank tables of test_follow for SECONDS,
  checking the transfer invariant at every read.
"""
import json
import random
import re
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import lsvfs  # noqa: E402


def stats(conn) -> dict:
    text = conn.execute("PRAGMA litestream_stats").fetchone()[0]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", text)}


def main() -> None:
    uri, action = sys.argv[1], sys.argv[2]
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    lsvfs.load_extension()
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    at_open = stats(conn)
    out = {"open": at_open}
    if action == "digest":
        out["digest"] = lsvfs.digest(conn)
    elif action == "lookups":
        rnd = random.Random(5)
        top = conn.execute("SELECT max(id) FROM items").fetchone()[0]
        for _ in range(int(arg)):
            conn.execute("SELECT name FROM items WHERE id = ?", (rnd.randrange(1, top + 1),)).fetchone()
    elif action == "hydrate":
        last = None
        deadline = time.monotonic() + float(arg or 120)
        while time.monotonic() < deadline:
            p = float(conn.execute("PRAGMA litestream_hydration_progress").fetchone()[0])
            if p != last:
                print(json.dumps({"progress": p}), flush=True)
                last = p
            if p >= 100:
                break
            time.sleep(0.05)
        out["file"] = conn.execute("PRAGMA litestream_hydration_file").fetchone()[0]
        out["progress"] = last
        out["before_reads"] = stats(conn)
        out["digest"] = lsvfs.digest(conn)
    elif action == "dropped":
        # Waits (at most 120 s) until the fill dropped ARG damaged pages and
        # is back at 100 %, then reads everything.
        deadline = time.monotonic() + 120
        while stats(conn).get("store_dropped", 0) < int(arg) or \
                float(conn.execute("PRAGMA litestream_hydration_progress").fetchone()[0]) < 100:
            assert time.monotonic() < deadline, stats(conn)
            time.sleep(0.05)
        out["before_reads"] = stats(conn)
        out["digest"] = lsvfs.digest(conn)
    elif action == "follow":
        # Hydrate, then follow for ARG seconds while reading everything.
        while float(conn.execute("PRAGMA litestream_hydration_progress").fetchone()[0]) < 100:
            time.sleep(0.05)
        out["hydrated"] = stats(conn)
        out["txid_before"] = int(conn.execute("SELECT litestream_txid()").fetchone()[0], 16)
        deadline = time.monotonic() + float(arg)
        # A read transaction on a state the poller has since moved past may
        # miss the copy: it holds one version of each page, and the poller
        # writes the newer one before it publishes. "Quiet" reads are those
        # during which the poller neither wrote the copy nor published: all
        # of their pages must come from the copy.
        quiet = {"reads": 0, "store_misses": 0, "store_hits": 0}
        while time.monotonic() < deadline:
            before = stats(conn)
            conn.execute("BEGIN")
            txid = conn.execute("SELECT litestream_txid()").fetchone()[0]
            lsvfs.digest(conn)
            conn.execute("COMMIT")
            after = stats(conn)
            newest = conn.execute("SELECT litestream_txid()").fetchone()[0]
            if after["store_writes"] == before["store_writes"] and newest == txid:
                quiet["reads"] += 1
                for k in ("store_misses", "store_hits"):
                    quiet[k] += after[k] - before[k]
            time.sleep(0.2)
        out["quiet"] = quiet
        out["txid_after"] = int(conn.execute("SELECT litestream_txid()").fetchone()[0], 16)
        out["progress"] = float(conn.execute("PRAGMA litestream_hydration_progress").fetchone()[0])
    elif action == "travel":
        conn.execute("SELECT litestream_set_time(?)", (arg,)).fetchone()
        out["digest_then"] = lsvfs.digest(conn)
        conn.execute("SELECT litestream_set_time('latest')").fetchone()
        out["digest"] = lsvfs.digest(conn)
    elif action == "locked":
        import fcntl
        (pages,) = Path(arg).glob("*.pages")
        with open(pages, "rb") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            out["before_reads"] = stats(conn)
            out["digest"] = lsvfs.digest(conn)
    elif action == "bank":
        deadline = time.monotonic() + float(arg)
        seen, last = 0, 0
        while time.monotonic() < deadline:
            conn.execute("BEGIN")
            total = conn.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
            n = conn.execute("SELECT n FROM counter").fetchone()[0]
            logged = conn.execute("SELECT count(*) FROM log").fetchone()[0]
            conn.execute("COMMIT")
            assert total == 20 * 1000, f"torn state: sum {total} at counter {n}"
            assert n >= last, f"went back in time: {n} after {last}"
            assert logged >= n - 1, f"counter {n} but {logged} log rows"
            last, seen = n, seen + 1
            time.sleep(0.01)
        out["seen"], out["last"] = seen, last
        out["integrity"] = conn.execute("PRAGMA integrity_check").fetchone()[0]
    else:
        raise SystemExit(f"unknown action {action}")
    out["after"] = stats(conn)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
