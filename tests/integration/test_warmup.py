"""The warm-up of interior B-tree pages (issue 21): after the open, in the
background, every table's and index's interior levels are fetched in wide
ranged reads, so that a cold primary-key lookup costs one request (its
leaf). Requests are counted at a proxy in front of S3 (s3s-fs), never
timed. The replica is written by the real Litestream (test_prefetch's
200,000-row `orders` table with an index: 3 levels)."""

import json
import os
import random
import re
import subprocess
import sys
import time

import pytest

import lsvfs
from servers import unique
from test_prefetch import ROWS, measured, proxied, s3_orders  # noqa: F401

LOOKUPS = 100
Q = "SELECT customer, amount FROM orders WHERE id = ?"


def stats(conn) -> dict:
    text = conn.execute("PRAGMA litestream_stats").fetchone()[0]
    return dict(re.findall(r"(\w+)=(\S+)", text))


def wait_warm(conn, timeout=60.0) -> dict:
    """Polls the stats until the warm-up ended (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        s = stats(conn)
        if s["warmup_state"] != "running":
            return s
        assert time.monotonic() < deadline, f"warm-up still running after {timeout} s: {s}"
        time.sleep(0.05)


def lookups(proxy, conn, primary):
    """LOOKUPS random primary-key lookups; the requests they sent."""
    ids = random.Random(21).sample(range(1, ROWS + 1), LOOKUPS)

    def run():
        for i in ids:
            assert conn.execute(Q, (i,)).fetchone() == primary.execute(Q, (i,)).fetchone()

    _, trips = measured(proxy, run)
    return trips.requests


def test_after_the_warm_up_a_cold_lookup_costs_one_request(proxied):  # noqa: F811
    proxy, url, primary = proxied
    c = lsvfs.connect(url, name=unique("wu-on") + ".db", poll_interval="1h")
    c.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    s = wait_warm(c)
    print("warm-up:", {k: v for k, v in s.items() if k.startswith("warmup")})
    assert s["warmup_state"] == "done", s
    assert int(s["warmup_pages"]) >= 3 and int(s["warmup_levels"]) >= 1, s
    # Interiors of two trees, probes included, in few wide reads.
    assert 0 < int(s["warmup_requests"]) <= int(s["warmup_fetched"]), s
    sent = lookups(proxy, c, primary)
    print(f"{LOOKUPS} lookups after the warm-up: {sent} requests")
    assert sent <= LOOKUPS + 2, sent


def test_without_the_warm_up_lookups_pay_for_interiors(proxied):  # noqa: F811
    proxy, url, primary = proxied
    c = lsvfs.connect(url, name=unique("wu-off") + ".db", poll_interval="1h", warmup="off")
    c.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    assert stats(c)["warmup_state"] == "off"
    sent = lookups(proxy, c, primary)
    print(f"{LOOKUPS} lookups without the warm-up: {sent} requests")
    # The bound the warm-up meets fails without it: each interior page
    # the lookups pass through costs a request of its own.
    assert sent > LOOKUPS + 2, sent


CHILD = """
import json, re, sqlite3, sys, time
sys.path.insert(0, sys.argv[2])
import lsvfs
lsvfs.load_extension()
conn = sqlite3.connect(sys.argv[1], uri=True)
conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
deadline = time.monotonic() + 60
while True:
    s = dict(re.findall(r"(\\w+)=(\\S+)", conn.execute("PRAGMA litestream_stats").fetchone()[0]))
    if s["warmup_state"] != "running" or time.monotonic() > deadline:
        break
    time.sleep(0.05)
print(json.dumps(s))
"""


def child(uri: str) -> dict:
    here = os.path.dirname(os.path.abspath(__file__))
    p = subprocess.run([sys.executable, "-c", CHILD, uri, here], capture_output=True, text=True,
                       timeout=120, env=os.environ.copy())
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_a_next_process_finds_the_interiors_in_the_disk_tier(proxied, tmp_path):  # noqa: F811
    proxy, url, _ = proxied
    uri = lsvfs.replica_uri(url, unique("wu-disk") + ".db", poll_interval="1h",
                            disk_cache=str(tmp_path / "tier"))
    first = child(uri)
    print("first process:", first)
    assert first["warmup_state"] == "done" and int(first["warmup_requests"]) > 0, first
    second = child(uri)
    print("next process:", second)
    assert second["warmup_state"] == "done", second
    assert int(second["warmup_requests"]) == 0 and int(second["warmup_fetched"]) == 0, second
    assert second["warmup_pages"] == first["warmup_pages"], (first, second)


def test_the_warm_up_stops_at_its_cap(proxied):  # noqa: F811
    proxy, url, primary = proxied
    c = lsvfs.connect(url, name=unique("wu-cap") + ".db", poll_interval="1h", warmup_max="8KiB")
    c.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    s = wait_warm(c)
    assert s["warmup_state"] == "capped", s
    assert int(s["warmup_pages"]) <= 2, s
    assert c.execute(Q, (5,)).fetchone() == primary.execute(Q, (5,)).fetchone()


def warm_up(proxy, url, **params) -> tuple[dict, int]:
    """A fresh process's open and warm-up (a replica is set up by its first
    open in a process); its stats and the requests the proxy saw."""
    uri = lsvfs.replica_uri(url, unique("wu-span") + ".db", poll_interval="1h", **params)
    s, trips = measured(proxy, lambda: child(uri))
    print(params, {k: v for k, v in s.items() if k.startswith("warmup")}, trips.requests, "requests")
    assert s["warmup_state"] == "done", s
    return s, trips.requests


def test_over_streamed_bodies_a_wave_is_few_reads_within_its_bound(proxied):  # noqa: F811
    """S3 streams bodies: a wave goes in the fewest ranged reads whose
    bytes, gaps included, stay within warmup_read_max (the gaps thrown
    away as they stream). warmup_read_max=0 keeps the fixed merging of
    frames up to 512 KiB apart, which the bound never does worse than."""
    proxy, url, primary = proxied
    fixed, fixed_sent = warm_up(proxy, url, warmup_read_max="0")
    wide, wide_sent = warm_up(proxy, url)
    # The same pages, in fewer requests; the open's own requests are the
    # same in both, so the difference at the proxy is the warm-up's.
    assert wide["warmup_pages"] == fixed["warmup_pages"], (fixed, wide)
    assert int(wide["warmup_requests"]) < int(fixed["warmup_requests"]), (fixed, wide)
    assert fixed_sent - wide_sent == int(fixed["warmup_requests"]) - int(wide["warmup_requests"])
    # A bound of 4 MiB for the whole warm-up, not each wave: no more
    # requests than the fixed merging, and in all at most the bound, which
    # the fixed merging's bytes (1.1 MB here) fit in; once spent, the waves
    # left would keep the fixed merging. (With the bound per wave this
    # warm-up read 4.4 MB.)
    small, _ = warm_up(proxy, url, warmup_read_max="4MiB")
    assert int(fixed["warmup_read_bytes"]) < 2 << 20, fixed
    assert int(small["warmup_requests"]) <= int(fixed["warmup_requests"]), (fixed, small)
    assert int(small["warmup_read_bytes"]) <= 4 << 20, (fixed, small)
    # And the pages are the replica's.
    c = lsvfs.connect(url, name=unique("wu-span-read") + ".db", poll_interval="1h")
    assert c.execute(Q, (7,)).fetchone() == primary.execute(Q, (7,)).fetchone()
