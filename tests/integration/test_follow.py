"""Following a live primary: consistent snapshots, compaction and retention
under the reader, one poller per replica, clean shutdown."""

import json
import shutil
import random
import re
import sqlite3
import threading
import time

import lsvfs

ACCOUNTS, START = 20, 1000


def stats(conn) -> dict:
    text = conn.execute("PRAGMA litestream_stats").fetchone()[0]
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", text)}


def bank(path):
    conn = lsvfs.primary(path)
    conn.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    conn.execute("CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    conn.execute("CREATE TABLE log(id INTEGER PRIMARY KEY, n INTEGER, note TEXT)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO accounts VALUES (?, ?)", [(i, START) for i in range(ACCOUNTS)])
    conn.execute("INSERT INTO counter VALUES (1, 0)")
    conn.execute("COMMIT")
    return conn


def transfer(conn, rnd, n):
    a, b = rnd.sample(range(ACCOUNTS), 2)
    amount = rnd.randrange(1, 50)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
    conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
    conn.execute("UPDATE counter SET n = ? WHERE id = 1", (n,))
    conn.execute("INSERT INTO log(n, note) VALUES (?, ?)", (n, "x" * rnd.randrange(2000)))
    conn.execute("COMMIT")


COMPACTING = """
l0-retention: 3s
l0-retention-check-interval: 1s
"""


def test_follows_a_busy_primary_through_compaction(tmp_path):
    seconds = float(__import__("os").environ.get("FOLLOW_SECONDS", "60"))
    db, replica = tmp_path / "bank.db", tmp_path / "replica"
    conn = bank(db)
    config = COMPACTING + lsvfs.file_replica_config(db, replica, l1_interval="2s")
    with lsvfs.Litestream(config, tmp_path) as ls:
        reader = lsvfs.wait_replica_matches(lsvfs.file_url(replica), lsvfs.digest(conn), timeout=60,
                                            name="bank.db")
        reader.isolation_level = None
        stop = threading.Event()
        written = [0]

        def write():
            rnd = random.Random(7)
            n = 0
            while not stop.is_set():
                n += 1
                transfer(conn, rnd, n)
                written[0] = n
                time.sleep(rnd.uniform(0.005, 0.03))

        w = threading.Thread(target=write)
        w.start()
        seen, errors, last = 0, [], 0
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                try:
                    # One statement, so one snapshot for all three.
                    total, n, logged = reader.execute(
                        "SELECT (SELECT sum(balance) FROM accounts), (SELECT n FROM counter),"
                        " (SELECT count(*) FROM log)").fetchone()
                except sqlite3.Error as e:
                    errors.append(repr(e))
                    continue
                assert total == ACCOUNTS * START, f"torn state: sum {total} at counter {n}"
                assert n >= last, f"went back in time: {n} after {last}"
                assert n <= written[0]
                assert logged == n, f"torn state: {logged} log rows at counter {n}"  # one row per transfer
                last = n
                seen += 1
                time.sleep(0.01)
        finally:
            stop.set()
            w.join()
        stopped = time.monotonic()
        expected = lsvfs.digest(conn)
        lsvfs.wait_for(lambda: lsvfs.digest(reader) == expected, 30, interval=0.05, what="catch-up")
        caught_up = time.monotonic() - stopped
        st = stats(reader)
        print(f"reads={seen} last_counter={last} written={written[0]} catch_up={caught_up:.2f}s stats={st}")
        assert errors == []
        assert seen > 100
        assert caught_up < 5, f"caught up only after {caught_up:.1f}s"
        assert reader.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert "compaction complete" in ls.output()
    # Retention really deleted level-0 files under the reader.
    l0 = sorted((replica / "ltx" / "0").iterdir())
    assert l0 and not l0[0].name.startswith("0000000000000001-"), "no level-0 file was ever deleted"


def test_read_transaction_keeps_its_snapshot(tmp_path):
    db, replica = tmp_path / "iso.db", tmp_path / "replica"
    conn = bank(db)
    with lsvfs.Litestream(lsvfs.file_replica_config(db, replica), tmp_path):
        url = lsvfs.file_url(replica)
        old = lsvfs.wait_replica_matches(url, lsvfs.digest(conn), timeout=60, name="iso.db",
                                         poll_interval="100ms")
        old.isolation_level = None
        watcher = lsvfs.connect(url, name="iso-watch.db", poll_interval="100ms")
        old.execute("BEGIN")
        before = old.execute("SELECT count(*) FROM log").fetchone()[0]
        txid = old.execute("SELECT litestream_txid()").fetchone()[0]
        rnd = random.Random(1)
        for n in range(1, 31):
            transfer(conn, rnd, n)
        expected = lsvfs.digest(conn)
        lsvfs.wait_for(lambda: lsvfs.digest(watcher) == expected, 30, what="the watcher to see the burst")
        # Inside the transaction: the old state, the old TXID.
        assert old.execute("SELECT count(*) FROM log").fetchone()[0] == before
        assert old.execute("SELECT sum(balance) FROM accounts").fetchone()[0] == ACCOUNTS * START
        assert old.execute("SELECT litestream_txid()").fetchone()[0] == txid
        old.execute("COMMIT")
        assert old.execute("SELECT count(*) FROM log").fetchone()[0] == before + 30
        assert old.execute("SELECT litestream_txid()").fetchone()[0] > txid


def test_many_connections_share_one_poller_and_cache(tmp_path):
    db, replica = tmp_path / "many.db", tmp_path / "replica"
    conn = bank(db)
    with lsvfs.Litestream(lsvfs.file_replica_config(db, replica), tmp_path):
        url = lsvfs.file_url(replica)
        first = lsvfs.wait_replica_matches(url, lsvfs.digest(conn), timeout=60, name="many.db",
                                           poll_interval="200ms")
        conns = [lsvfs.connect(url, name=f"many-{i}.db", poll_interval="200ms") for i in range(24)]
        before = stats(first)
        errors = []

        def work(cs):
            try:
                for _ in range(40):
                    for c in cs:
                        assert c.execute("SELECT sum(balance) FROM accounts").fetchone()[0] == ACCOUNTS * START
                    time.sleep(0.05)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=work, args=(conns[i::4],)) for i in range(4)]
        rnd = random.Random(3)
        for t in threads:
            t.start()
        for n in range(1, 40):
            transfer(conn, rnd, n)
            time.sleep(0.05)
        for t in threads:
            t.join()
        after = stats(first)
        assert errors == []
        polls = int(after["polls"]) - int(before["polls"])
        lists = int(after["lists"]) - int(before["lists"])
        assert polls >= 5
        # One poller: one level-0 listing per poll, whatever the number of
        # connections (a re-plan lists every level; there is none here).
        assert lists == polls + 10 * (int(after["replans"]) - int(before["replans"])), (before, after)
        assert after["replicas"] == after["pollers"]  # one poller per replica, not per connection
        assert all(stats(c)["cache_budget"] == after["cache_budget"] for c in conns[:3])


def test_two_replicas_follow_their_own_primaries(tmp_path):
    dbs = [tmp_path / "one.db", tmp_path / "two.db"]
    replicas = [tmp_path / "r1", tmp_path / "r2"]
    prims = [bank(d) for d in dbs]
    config = lsvfs.file_replica_config(dbs[0], replicas[0]) + "\n".join(
        lsvfs.file_replica_config(dbs[1], replicas[1]).splitlines()[5:]) + "\n"
    with lsvfs.Litestream(config, tmp_path) as ls:
        readers = [lsvfs.wait_replica_matches(lsvfs.file_url(r), lsvfs.digest(p), timeout=60, name=f"{r.name}.db")
                   for r, p in zip(replicas, prims)]
        rnd = random.Random(5)
        for n in range(1, 21):
            transfer(prims[0], rnd, n)
        for n in range(1, 6):
            transfer(prims[1], rnd, 100 + n)
        for r, p in zip(readers, prims):
            expected = lsvfs.digest(p)
            lsvfs.wait_for(lambda: lsvfs.digest(r) == expected, 30, what=f"follow; litestream said: {ls.output()}")
        assert [r.execute("SELECT n FROM counter").fetchone()[0] for r in readers] == [20, 105]


POLLER_LIFECYCLE = """
import json, re, sys, threading, time
sys.path.insert(0, {here!r})
import lsvfs

def stats(c):
    return dict(re.findall(r"(\\w+)=(\\S+)", c.execute("PRAGMA litestream_stats").fetchone()[0]))

keeper = lsvfs.connect(lsvfs.file_url(lsvfs.FIXTURES / "basic-4k" / "replica"), name="keeper.db")
threads = threading.active_count()
assert stats(keeper)["pollers"] == "1", stats(keeper)
url = lsvfs.file_url(lsvfs.FIXTURES / "page-512" / "replica")
for round in range(3):
    conns = [lsvfs.connect(url, name="idle-%d.db" % i, idle_timeout="1s", poll_interval="100ms") for i in range(3)]
    for c in conns:
        c.execute("SELECT count(*) FROM sqlite_master").fetchone()
    assert stats(keeper)["pollers"] == "2" and stats(keeper)["replicas"] == "2", stats(keeper)
    for c in conns:
        c.close()
    lsvfs.wait_for(lambda: stats(keeper)["pollers"] == "1", 10, what="the poller to stop")
    assert stats(keeper)["replicas"] == "1"
# Reopening after the grace period builds a fresh replica that works.
again = lsvfs.connect(url, name="idle-again.db")
want = json.loads((lsvfs.FIXTURES / "page-512" / "manifest.json").read_text())["history"][-1]["digest"]
assert lsvfs.digest(again) == want
assert threading.active_count() == threads
print("ok")
"""


def test_poller_stops_after_the_last_connection_closes():
    """In a process of its own, so that no other test's replica is counted."""
    import subprocess
    import sys
    from pathlib import Path

    code = POLLER_LIFECYCLE.format(here=str(Path(__file__).parent))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_open_waits_for_litestream_to_start(tmp_path):
    db, replica = tmp_path / "late.db", tmp_path / "replica"
    conn = bank(db)
    result = {}

    def opener():
        try:
            c = lsvfs.connect(lsvfs.file_url(replica), name="late.db", open_timeout="20s")
            result["sum"] = c.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
        except Exception as e:  # noqa: BLE001
            result["error"] = repr(e)

    t = threading.Thread(target=opener)
    t.start()
    time.sleep(1)
    with lsvfs.Litestream(lsvfs.file_replica_config(db, replica), tmp_path):
        t.join(30)
    assert result == {"sum": ACCOUNTS * START}
    conn.close()


def test_a_gap_is_reported_through_lag_never_served(tmp_path):
    """Level-0 files 5..7 arrive while 4 is missing and nothing covers it:
    the replica stays at TXID 3, the lag grows, and once file 4 appears the
    replica moves on."""
    src = lsvfs.FIXTURES / "basic-4k" / "replica" / "ltx"
    replica = tmp_path / "replica"
    (replica / "ltx" / "0").mkdir(parents=True)
    (replica / "ltx" / "9").mkdir()
    shutil.copy(src / "9" / "0000000000000001-0000000000000001.ltx", replica / "ltx" / "9")
    for n in (2, 3):
        shutil.copy(src / "0" / f"{n:016x}-{n:016x}.ltx", replica / "ltx" / "0")
    c = lsvfs.connect(lsvfs.file_url(replica), name="gap.db", poll_interval="100ms")
    assert c.execute("SELECT litestream_txid()").fetchone()[0] == "0000000000000003"
    for n in (5, 6, 7):
        shutil.copy(src / "0" / f"{n:016x}-{n:016x}.ltx", replica / "ltx" / "0")
    lsvfs.wait_for(lambda: c.execute("SELECT litestream_lag()").fetchone()[0] >= 2, 10, what="lag to grow")
    assert c.execute("SELECT litestream_txid()").fetchone()[0] == "0000000000000003"
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    shutil.copy(src / "0" / f"{4:016x}-{4:016x}.ltx", replica / "ltx" / "0")
    lsvfs.wait_for(lambda: c.execute("SELECT litestream_txid()").fetchone()[0] == "0000000000000007", 10,
                   what="the replica to move on")
    want = json.loads((lsvfs.FIXTURES / "basic-4k" / "manifest.json").read_text())["history"][-1]["digest"]
    assert lsvfs.digest(c) == want
    lsvfs.wait_for(lambda: c.execute("SELECT litestream_lag()").fetchone()[0] == 0, 5, what="lag to recover")
