"""A replica that is reset under a reader: Litestream's state and the replica
are removed, a different database is replicated to the same place, and TXIDs
start again at 1 with the same file names. A connection held open across the
reset must read the new database, never the old rows; a connection that
travelled to a time of the old lineage must fail cleanly."""

import datetime as dt
import re
import shutil
import sqlite3
import time

import lsvfs


def stats(conn) -> dict:
    text = conn.execute("PRAGMA litestream_stats").fetchone()[0]
    return dict(re.findall(r"(\w+)=(\S+)", text))


def old_rows(conn):
    """3,000 rows in three transactions, each given time to replicate, so
    that the old lineage is a few TXIDs along."""
    for _ in range(3):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t(v) VALUES (?)", [("old",)] * 1000)
        conn.execute("COMMIT")
        time.sleep(0.5)


def new_database(path):
    conn = lsvfs.primary(path)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    conn.executemany("INSERT INTO t(v) VALUES (?)", [("new",)] * 10)
    return conn


def remove_database(path):
    for p in path.parent.iterdir():
        if p.name.startswith(path.name) or p.name.startswith("." + path.name):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()


def test_a_connection_held_open_across_a_reset_reads_the_new_lineage(tmp_path):
    db, replica = tmp_path / "reset.db", tmp_path / "replica"
    url = lsvfs.file_url(replica)
    config = lsvfs.file_replica_config(db, replica)
    conn = lsvfs.primary(db)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    with lsvfs.Litestream(config, tmp_path):
        old_rows(conn)
        reader = lsvfs.wait_replica_matches(url, lsvfs.digest(conn), timeout=60, name="reset.db",
                                            poll_interval="100ms")
        reader.isolation_level = None
        traveller = lsvfs.connect(url, name="reset-travel.db", poll_interval="100ms")
        traveller.isolation_level = None
        time.sleep(0.05)
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        traveller.execute("PRAGMA litestream_time = '%s'" % now)
        assert traveller.execute("SELECT count(*) FROM t").fetchone()[0] == 3000
        old_txid = reader.execute("SELECT litestream_txid()").fetchone()[0]
        assert reader.execute("SELECT count(*), min(v), max(v) FROM t").fetchone() == (3000, "old", "old")
        # Every page of the table in SQLite's own cache, too.
        reader.execute("SELECT sum(length(v)) FROM t").fetchone()
        version_before = reader.execute("PRAGMA data_version").fetchone()[0]
    conn.close()
    assert int(old_txid, 16) > 1

    # The reset: Litestream's state, the database and the replica go; a
    # different database is replicated to the same place, from TXID 1.
    remove_database(db)
    shutil.rmtree(replica)
    conn = new_database(db)
    with lsvfs.Litestream(config, tmp_path):
        def new_rows():
            return reader.execute("SELECT count(*), min(v), max(v) FROM t").fetchone() == (10, "new", "new")

        lsvfs.wait_for(new_rows, 60, interval=0.1, what="the held connection to read the new lineage")
        # The schema is the new one too (the old had Litestream's tables at
        # other root pages, under an equal schema cookie).
        assert reader.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert reader.execute("SELECT count(*) FROM _litestream_seq").fetchone()[0] >= 0
        assert lsvfs.digest(reader) == lsvfs.digest(conn)
        assert int(reader.execute("SELECT litestream_txid()").fetchone()[0], 16) < int(old_txid, 16)
        assert reader.execute("PRAGMA data_version").fetchone()[0] != version_before
        assert int(stats(reader)["resets"]) >= 1, stats(reader)
        # The time traveller's state is gone: an error, not old or mixed rows.
        try:
            rows = traveller.execute("SELECT count(*) FROM t").fetchone()
        except sqlite3.Error as e:
            assert "disk I/O" in str(e) or "reset" in str(e), e
        else:
            raise AssertionError(f"a snapshot of the old lineage answered {rows}")
    # A new connection agrees.
    fresh = lsvfs.connect(url, name="reset-fresh.db")
    assert fresh.execute("SELECT count(*), min(v) FROM t").fetchone() == (10, "new")
