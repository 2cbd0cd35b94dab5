"""Point-in-time queries: exact per step, per connection, explained when
impossible, stable while new files and compactions arrive."""

import datetime as dt
import json
import random
import sqlite3
import time

import pytest

import lsvfs
from test_follow import ACCOUNTS, COMPACTING, START, bank, transfer

BASIC = lsvfs.FIXTURES / "basic-4k"
HISTORY = json.loads((BASIC / "manifest.json").read_text())["history"]


def targets():
    """Each step's time plus 800 ms (Litestream ships a commit within that),
    but never past the next step's commit."""
    for step, nxt in zip(HISTORY, HISTORY[1:] + [None]):
        t = step["time_ms"] + 800
        if nxt is not None:
            t = min(t, nxt["time_ms"])
        yield step, t


def go_rfc3339nano(ms: int) -> str:
    """What Go's time.RFC3339Nano prints: no trailing zeros in the fraction,
    no dot for a whole second."""
    whole = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{ms % 1000:03d}".rstrip("0")
    return whole + (f".{fraction}" if fraction else "") + "Z"


def test_litestream_time_prints_what_go_prints():
    c = basic("tt-format.db")
    base = HISTORY[-1]["time_ms"] // 1000 * 1000 + 1000
    for ms, text in [(730, ".73Z"), (0, ":%02dZ"), (700, ".7Z"), (123, ".123Z"), (5, ".005Z")]:
        c.execute("PRAGMA litestream_time = '%.3f'" % ((base + ms) / 1000))
        got = c.execute("SELECT litestream_time()").fetchone()[0]
        assert got == go_rfc3339nano(base + ms), got
        assert got.endswith(text if ms else text % ((base // 1000) % 60)), got
        assert c.execute("PRAGMA litestream_time").fetchone()[0] == got


def basic(name):
    c = lsvfs.connect(lsvfs.file_url(BASIC / "replica"), name=name)
    c.isolation_level = None
    return c


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")


def test_every_step_of_the_fixture():
    c = basic("tt-steps.db")
    for step, t in targets():
        assert c.execute("SELECT litestream_set_time(?)", (iso(t),)).fetchone() == (None,)
        assert lsvfs.digest(c) == step["digest"], step["step"]
        assert c.execute("PRAGMA page_count").fetchone()[0] == step["page_count"]
        assert c.execute("SELECT litestream_time()").fetchone()[0] == go_rfc3339nano(t)
    assert c.execute("PRAGMA litestream_time = 'LATEST'").fetchone()[0] != ""
    assert lsvfs.digest(c) == HISTORY[-1]["digest"]
    assert c.execute("SELECT litestream_txid()").fetchone()[0] == "0000000000000007"


def test_time_forms_reach_the_same_state():
    step, t = list(targets())[3]
    when = dt.datetime.fromtimestamp(t / 1000, dt.timezone.utc)
    forms = [
        when.isoformat(timespec="milliseconds"),  # RFC 3339 with offset
        when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),  # RFC 3339, Z, microseconds
        when.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat(),  # another offset
        when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}",  # SQLite's form
        f"{t / 1000:.3f}",  # Unix seconds
    ]
    c = basic("tt-forms.db")
    for form in forms:
        c.execute("PRAGMA litestream_time = '%s'" % form)
        assert lsvfs.digest(c) == step["digest"], form
    # SQLite's own datetime() output works as an argument.
    c.execute("SELECT litestream_set_time(strftime('%Y-%m-%d %H:%M:%f', ?, 'unixepoch'))", (t / 1000,))
    assert lsvfs.digest(c) == step["digest"]
    c.execute("SELECT litestream_set_time('1 minute ago')")  # after the fixture was written: newest
    assert lsvfs.digest(c) == HISTORY[-1]["digest"]


def test_two_connections_at_two_times():
    ts = list(targets())
    a, b, live = basic("tt-a.db"), basic("tt-b.db"), basic("tt-live.db")
    a.execute("SELECT litestream_set_time(?)", (iso(ts[1][1]),))
    b.execute("SELECT litestream_set_time(?)", (iso(ts[4][1]),))
    for _ in range(3):
        assert lsvfs.digest(a) == ts[1][0]["digest"]
        assert lsvfs.digest(b) == ts[4][0]["digest"]
        assert lsvfs.digest(live) == HISTORY[-1]["digest"]


def test_errors_explain_themselves():
    c = basic("tt-err.db")
    with pytest.raises(sqlite3.OperationalError) as e:
        c.execute("SELECT litestream_set_time('2001-01-01T00:00:00Z')")
    # The official extension's words exactly, which code may look for; the
    # detail (the oldest reachable state) is in the log and the stats.
    assert str(e.value) == "timestamp is before earliest LTX file"
    stats = c.execute("PRAGMA litestream_stats").fetchone()[0]
    earliest = int(dict(kv.split("=", 1) for kv in stats.split())["earliest_state_ms"])
    assert abs(earliest - HISTORY[0]["time_ms"]) < 10_000, stats  # the header time of TXID 1
    with pytest.raises(sqlite3.OperationalError, match="accepted: RFC 3339"):
        c.execute("SELECT litestream_set_time('next tuesday')")
    with pytest.raises(sqlite3.OperationalError, match="accepted: RFC 3339"):
        c.execute("PRAGMA litestream_time = 'soonish'")
    c.execute("BEGIN")
    c.execute("SELECT count(*) FROM seed").fetchone()
    with pytest.raises(sqlite3.OperationalError, match="inside an open read transaction"):
        c.execute("SELECT litestream_set_time('1 hour ago')")
    c.execute("COMMIT")
    # A failed travel leaves the connection where it was.
    assert lsvfs.digest(c) == HISTORY[-1]["digest"]


def test_history_lists_reachable_states_newest_first():
    c = basic("tt-hist.db")
    rows = c.execute("SELECT txid, time, level, file FROM litestream_history").fetchall()
    txids = [r[0] for r in rows]
    assert txids == sorted(txids, reverse=True)
    assert txids[0] == "0000000000000007" and txids[-1] == "0000000000000001"
    assert {r[2] for r in rows} >= {0, 1, 9}
    assert all(r[1].endswith("Z") and r[3].endswith(".ltx") for r in rows)


def test_travel_is_stable_while_the_primary_moves(tmp_path):
    db, replica = tmp_path / "tt.db", tmp_path / "replica"
    conn = bank(db)
    rnd = random.Random(11)
    config = COMPACTING + lsvfs.file_replica_config(db, replica, l1_interval="1s")
    with lsvfs.Litestream(config, tmp_path):
        url = lsvfs.file_url(replica)
        r = lsvfs.wait_replica_matches(url, lsvfs.digest(conn), timeout=60, name="tt-live.db",
                                       poll_interval="200ms")
        r.isolation_level = None
        for n in range(1, 21):
            transfer(conn, rnd, n)
            time.sleep(0.05)
        lsvfs.wait_for(lambda: lsvfs.digest(r) == lsvfs.digest(conn), 30, what="catch up")
        time.sleep(1)
        r.execute("SELECT litestream_set_time(?)", (f"{time.time():.3f}",))
        frozen = lsvfs.digest(r)
        frozen_n = r.execute("SELECT n FROM counter").fetchone()[0]
        assert frozen_n == 20
        # More transactions, compactions and level-0 deletions arrive.
        for n in range(21, 121):
            transfer(conn, rnd, n)
            time.sleep(0.03)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert lsvfs.digest(r) == frozen
            assert r.execute("SELECT sum(balance) FROM accounts").fetchone()[0] == ACCOUNTS * START
            time.sleep(0.2)
        r.execute("SELECT litestream_set_time('latest')")
        lsvfs.wait_for(lambda: r.execute("SELECT n FROM counter").fetchone()[0] == 120, 30, what="latest")
        assert lsvfs.digest(r) == lsvfs.digest(conn)
