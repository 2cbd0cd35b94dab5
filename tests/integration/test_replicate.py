"""Real `litestream replicate` to a file:// replica, read back through the
extension with identical content."""

import os
import random
import sqlite3

import pytest

import lsvfs


def fill(conn: sqlite3.Connection, rows: int, blob: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    conn.execute("CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)")
    conn.execute("CREATE INDEX IF NOT EXISTS items_name ON items(name)")
    conn.execute("BEGIN")
    for i in range(rows):
        conn.execute(
            "INSERT INTO items(name, score, data) VALUES (?, ?, ?)",
            (f"name-{rnd.randrange(10**9)}", rnd.random() * 1000, rnd.randbytes(rnd.randrange(blob + 1))),
        )
    conn.execute("COMMIT")


def replicate_and_compare(tmp_path, page_size: int, rows: int, blob: int, timeout: float = 90):
    db, replica = tmp_path / "primary.db", tmp_path / "replica"
    conn = lsvfs.primary(db, page_size)
    fill(conn, rows, blob)
    expected = lsvfs.digest(conn)
    with lsvfs.Litestream(lsvfs.file_replica_config(db, replica), tmp_path):
        r = lsvfs.wait_replica_matches(lsvfs.file_url(replica), expected, timeout=timeout, name=f"r{page_size}.db")
        # And keeps following: more rows, an update, a delete.
        fill(conn, rows // 10 + 1, blob, seed=2)
        conn.execute("UPDATE items SET score = -score WHERE id % 7 = 0")
        conn.execute("DELETE FROM items WHERE id % 11 = 0")
        expected = lsvfs.digest(conn)
        lsvfs.wait_for(lambda: lsvfs.digest(r) == expected, timeout, interval=0.25, what="follow")
        assert r.execute("PRAGMA page_size").fetchone()[0] == page_size
        assert r.execute("PRAGMA page_count").fetchone()[0] == conn.execute("PRAGMA page_count").fetchone()[0]
        assert r.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        q = "SELECT count(*), sum(length(data)) FROM items WHERE name BETWEEN 'name-2' AND 'name-5'"
        assert r.execute(q).fetchone() == conn.execute(q).fetchone()
        return r


@pytest.mark.parametrize("page_size", [512, 4096, 65536])
def test_page_sizes(tmp_path, page_size):
    replicate_and_compare(tmp_path, page_size, rows=3000, blob=300)


def test_fifty_megabyte_database(tmp_path):
    r = replicate_and_compare(tmp_path, 4096, rows=60_000, blob=1700, timeout=180)
    assert r.execute("PRAGMA page_count").fetchone()[0] * 4096 >= 50 * 1024 * 1024


def test_two_replicas_in_one_process(tmp_path):
    """Each connection reads its own replica: chosen by replica_url, and by
    LITESTREAM_REPLICA_URL set between the two opens (read at open time)."""
    a, b = lsvfs.FIXTURES / "basic-4k", lsvfs.FIXTURES / "page-512"
    import json

    want = {n: json.loads((lsvfs.FIXTURES / n / "manifest.json").read_text())["history"][-1]["digest"]
            for n in ("basic-4k", "page-512")}
    ca = lsvfs.connect(lsvfs.file_url(a / "replica"), name="a.db")
    cb = lsvfs.connect(lsvfs.file_url(b / "replica"), name="b.db")
    assert (lsvfs.digest(ca), lsvfs.digest(cb)) == (want["basic-4k"], want["page-512"])
    with lsvfs.env(LITESTREAM_REPLICA_URL=lsvfs.file_url(a / "replica")):
        ea = lsvfs.connect(None, name="alias_a.db")
    with lsvfs.env(LITESTREAM_REPLICA_URL=lsvfs.file_url(b / "replica")):
        eb = lsvfs.connect(None, name="alias_b.db")
    assert (lsvfs.digest(ea), lsvfs.digest(eb)) == (want["basic-4k"], want["page-512"])
    # Still distinct after the variable changes again.
    os.environ.pop("LITESTREAM_REPLICA_URL", None)
    assert lsvfs.digest(ea) == want["basic-4k"]
