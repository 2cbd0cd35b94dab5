"""Follow a busy primary with compaction and retention on, from many
threads and connections, and watch memory and descriptors.

    .venv/bin/python tests/integration/soak.py --minutes 30

Used with a short duration by the test suite; the long run is `scripts/soak`.
Exits non-zero when an invariant breaks."""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import lsvfs  # noqa: E402
from test_follow import ACCOUNTS, COMPACTING, START, bank, transfer  # noqa: E402


def rss_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def soak(seconds: float, threads: int = 32, conns: int = 64, cache: str = "32MiB", out=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="lsvfs-soak-") as tmp:
        tmp = Path(tmp)
        db, replica = tmp / "bank.db", tmp / "replica"
        primary = bank(db)
        config = COMPACTING + lsvfs.file_replica_config(db, replica, l1_interval="2s")
        with lsvfs.Litestream(config, tmp):
            url = lsvfs.file_url(replica)
            lsvfs.wait_replica_matches(url, lsvfs.digest(primary), timeout=60, name="soak-0.db",
                                       cache_size=cache).close()
            pool = [lsvfs.connect(url, name=f"soak-{i}.db", cache_size=cache) for i in range(conns)]
            stop = threading.Event()
            errors: list[str] = []
            reads = [0] * threads
            written = [0]

            def writer():
                rnd = random.Random(1)
                n = 0
                while not stop.is_set():
                    n += 1
                    transfer(primary, rnd, n)
                    written[0] = n
                    time.sleep(0.01)

            def reader(k: int):
                last = {}
                while not stop.is_set():
                    for c in pool[k::threads]:
                        try:
                            total, n = c.execute("SELECT (SELECT sum(balance) FROM accounts),"
                                                 " (SELECT n FROM counter)").fetchone()
                        except sqlite3.Error as e:
                            errors.append(repr(e))
                            continue
                        if total != ACCOUNTS * START:
                            errors.append(f"torn state: sum {total}")
                        if n < last.get(id(c), 0):
                            errors.append(f"went back: {n} < {last[id(c)]}")
                        last[id(c)] = n
                        reads[k] += 1

            ts = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(k,))
                                                        for k in range(threads)]
            for t in ts:
                t.start()
            start = time.monotonic()
            samples = []
            try:
                while time.monotonic() - start < seconds and not errors:
                    time.sleep(min(10, seconds / 5))
                    samples.append((round(time.monotonic() - start), rss_kb(), fds()))
                    out(f"t={samples[-1][0]}s rss={samples[-1][1] // 1024}MiB fds={samples[-1][2]} "
                        f"reads={sum(reads)} written={written[0]}")
            finally:
                stop.set()
                for t in ts:
                    t.join()
            expected = lsvfs.digest(primary)
            final = lsvfs.connect(url, name="soak-final.db", cache_size=cache)
            lsvfs.wait_for(lambda: lsvfs.digest(final) == expected, 30, what="final digest")
            return {"errors": errors[:10], "reads": sum(reads), "written": written[0], "samples": samples}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--conns", type=int, default=64)
    a = ap.parse_args()
    r = soak(a.minutes * 60, a.threads, a.conns)
    s = r["samples"]
    rss_growth = (s[-1][1] - s[0][1]) // 1024 if len(s) > 1 else 0
    fd_growth = s[-1][2] - s[0][2] if len(s) > 1 else 0
    print(f"reads={r['reads']} written={r['written']} errors={r['errors']} "
          f"rss_growth={rss_growth}MiB fd_growth={fd_growth} peak_rss={max(x[1] for x in s) // 1024}MiB")
    return 0 if not r["errors"] and fd_growth <= 0 and max(x[1] for x in s) < (32 + 40 + 60) * 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
