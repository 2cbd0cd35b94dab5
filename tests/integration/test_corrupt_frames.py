"""A damaged frame in a large LTX file (one whose frames are fetched one by
one) fails the query with SQLITE_CORRUPT; no row is returned from it."""

import shutil
import sqlite3

import pytest

import lsvfs
from test_replicate import fill

WHOLE_FILE_MAX = 1024 * 1024


@pytest.fixture(scope="module")
def big_replica(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("big")
    db, replica = tmp / "primary.db", tmp / "replica"
    conn = lsvfs.primary(db)
    fill(conn, 20_000, 300)
    expected = lsvfs.digest(conn)
    with lsvfs.Litestream(lsvfs.file_replica_config(db, replica), tmp):
        lsvfs.wait_replica_matches(lsvfs.file_url(replica), expected, timeout=90, name="big-src.db").close()
    leaf = conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'items' AND pagetype = 'leaf' LIMIT 1 OFFSET 50"
    ).fetchone()[0]
    return replica, expected, leaf


def damage(replica, how, page) -> int:
    """Damages the page's frame in every large file; returns how many."""
    n = 0
    for f in replica.rglob("*.ltx"):
        data = bytearray(f.read_bytes())
        if len(data) <= WHOLE_FILE_MAX:
            continue
        for pgno, offset, size in lsvfs.ltx_index(bytes(data)):
            if pgno == page:
                how(data, offset, size)
                n += 1
        f.write_bytes(bytes(data))
    return n


def size_field(data, offset, size):
    data[offset + 9] ^= 0x01  # low byte of the compressed-size field


def literal(data, offset, size):
    data[offset + size // 2] ^= 0x01  # a literal byte: LZ4 itself cannot notice


def damaged_copy(tmp_path, big_replica, how):
    replica = tmp_path / "replica"
    shutil.copytree(big_replica[0], replica)
    assert damage(replica, how, big_replica[2]) >= 1
    return lsvfs.file_url(replica)


def read_all(url, name, **params):
    """A new connection and every row of `items` through it, or the error
    (the connection is None when the open itself failed)."""
    conn = None
    try:
        conn = lsvfs.connect(url, name=name, **params)
        return conn, conn.execute("SELECT * FROM items ORDER BY id").fetchall()
    except sqlite3.DatabaseError as e:
        return conn, e


def stat(conn, name) -> int:
    text = conn.execute("PRAGMA litestream_stats").fetchone()[0]
    return int(dict(kv.split("=", 1) for kv in text.split())[name])


def test_structural_damage_fails_the_first_query(tmp_path, big_replica):
    """A damaged size field breaks the LZ4 block: the very first query that
    needs the page fails, with no background check at all (verify=fetched)."""
    url = damaged_copy(tmp_path, big_replica, size_field)
    for i in range(3):
        _, got = read_all(url, f"dmg-size-{i}.db", verify="fetched")
        assert isinstance(got, sqlite3.DatabaseError) and "malformed" in str(got), got


def test_a_flipped_literal_is_refused_once_the_background_check_ends(tmp_path, big_replica):
    """verify=full (the file:// default): the file checksum, checked in the
    background when the file is first used, marks the file corrupt; from
    then on every query that needs its pages fails. (Before the check ends,
    such a query may return the flipped value: the README says so.)"""
    url = damaged_copy(tmp_path, big_replica, literal)
    conn = lsvfs.connect(url, name="dmg-lit.db", verify="full")
    lsvfs.wait_for(lambda: stat(conn, "corrupt") >= 1, 60, interval=0.1,
                   what="the background check to find the damaged file")
    assert stat(conn, "corrupt") == 1
    for i in range(3):
        _, got = read_all(url, f"dmg-lit-{i}.db", verify="full")
        assert isinstance(got, sqlite3.DatabaseError) and "malformed" in str(got), type(got)


def test_with_verify_fetched_a_flipped_literal_goes_unnoticed(tmp_path, big_replica):
    """verify=fetched (the default on object storage) never streams a large
    file to check it: a bit flipped inside a compressed literal decodes to a
    wrong value, returned as data. The README's failure table says exactly
    this; this test keeps it honest."""
    url = damaged_copy(tmp_path, big_replica, literal)
    conn, got = read_all(url, "dmg-fetched.db", verify="fetched")
    assert not isinstance(got, Exception), got
    assert len(got) == 20_000
    assert lsvfs.digest(conn) != big_replica[1], "the flipped bit was not in the rows after all"
    assert stat(conn, "corrupt") == 0 and stat(conn, "verified") == 0


def test_undamaged_copy_reads_exactly(tmp_path, big_replica):
    replica = tmp_path / "replica"
    shutil.copytree(big_replica[0], replica)
    conn = lsvfs.connect(lsvfs.file_url(replica), name="undamaged.db")
    assert lsvfs.digest(conn) == big_replica[1]
    lsvfs.wait_for(lambda: "verified=1" in conn.execute("PRAGMA litestream_stats").fetchone()[0], 30,
                   what="background verification")

    lsvfs.wait_for(lambda: "verified=1" in conn.execute("PRAGMA litestream_stats").fetchone()[0], 30,
                   what="background verification")


def test_verify_fetched_skips_the_background_download(tmp_path, big_replica):
    """verify=fetched (the default on object storage) checks only files read
    whole: a large file is not streamed a second time."""
    replica = tmp_path / "replica"
    shutil.copytree(big_replica[0], replica)
    conn = lsvfs.connect(lsvfs.file_url(replica), name="fetched.db", verify="fetched")
    assert lsvfs.digest(conn) == big_replica[1]
    import time

    time.sleep(1)
    stats = conn.execute("PRAGMA litestream_stats").fetchone()[0]
    assert "verified=0" in stats and "corrupt=0" in stats
