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


@pytest.mark.parametrize("how", [size_field, literal])
def test_damaged_frame_fails_the_query(tmp_path, big_replica, how):
    replica = tmp_path / "replica"
    shutil.copytree(big_replica[0], replica)
    assert damage(replica, how, big_replica[2]) >= 1
    url = lsvfs.file_url(replica)

    def refused(attempt=[0]) -> bool:
        attempt[0] += 1
        try:
            conn = lsvfs.connect(url, name=f"dmg-{how.__name__}-{attempt[0]}.db")
            conn.execute("SELECT * FROM items ORDER BY id").fetchall()
            return False
        except sqlite3.DatabaseError as e:
            assert "malformed" in str(e)
            return True

    # A damaged literal is only caught by the file checksum, which the
    # background verification checks as soon as the file is first used.
    lsvfs.wait_for(refused, 30, interval=0.2, what="the damaged page to be refused")
    for _ in range(3):
        assert refused()


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
