"""Replication delay with Litestream's default intervals (monitor 1s, sync 1s)
and the extension's default poll (1s): the time from a commit on the primary
until a replica connection sees it, N samples at random moments. The numbers
behind docs/DJANGO.md's read-your-writes timer failure rates:

    .venv/bin/python tests/django/measure_replication_delay.py 150
"""
import tempfile
import json, random, sqlite3, subprocess, sys, time, signal
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "integration"))
import lsvfs
from pathlib import Path
N = int(sys.argv[1])
work = Path(tempfile.mkdtemp(prefix="lsvfs-delay-")); db = work / "m.db"
p = lsvfs.primary(db); p.execute("CREATE TABLE t(x)")
(work / "ls.yml").write_text(f"dbs:\n  - path: {db}\n    replica:\n      type: file\n      path: {work/'replica'}\n")
ls = subprocess.Popen([lsvfs.litestream_bin(), "replicate", "-config", str(work / "ls.yml")], stdout=open(work/"ls.log","w"), stderr=subprocess.STDOUT)
try:
    r = lsvfs.wait_for(lambda: lsvfs.connect(lsvfs.file_url(work/'replica'), name="m.db"), 60)
    delays = []
    for i in range(N):
        time.sleep(random.uniform(0, 1.5))
        p.execute("INSERT INTO t VALUES (?)", (i,)); t0 = time.monotonic()
        while r.execute("SELECT count(*) FROM t WHERE x = ?", (i,)).fetchone()[0] == 0:
            time.sleep(0.01)
        delays.append(time.monotonic() - t0)
    delays.sort()
    q = lambda f: round(delays[min(len(delays) - 1, int(f * len(delays)))], 2)
    print(json.dumps({"n": N, "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(delays[-1], 2),
                      "over": {s: sum(d > s for d in delays) for s in (1, 2, 3, 5)}}))
finally:
    ls.send_signal(signal.SIGTERM); ls.wait()
