"""Clear errors for bad input; nothing wrong is ever returned as data."""

import shutil
import sqlite3

import pytest

import lsvfs

BASIC = lsvfs.FIXTURES / "basic-4k"


def our_message(stderr: str) -> str:
    """What the extension said, without the shell's line that repeats the
    URI (which holds every word of the parameters a test checks for)."""
    lines = [line for line in stderr.splitlines() if 'unable to open database "' not in line]
    assert lines, stderr
    return "\n".join(lines)


def open_error(url_params: str, env: dict | None = None) -> str:
    """Opens through the sqlite3 shell and returns what it printed on stderr."""
    r = lsvfs.shell(f".open file:x.db?vfs=litestream{url_params}", "SELECT count(*) FROM sqlite_master;",
                    env={"LITESTREAM_REPLICA_URL": "", **(env or {})})
    # The shell goes on after a failed .open, so look at what it printed:
    # our message only, without the shell's line that repeats the URI.
    assert "unable to open database" in r.stderr, r.stderr
    return our_message(r.stderr)


def test_no_url_names_both_sources():
    err = open_error("")
    assert "replica_url" in err and "LITESTREAM_REPLICA_URL" in err


def test_unknown_scheme():
    err = open_error("&replica_url=ftp://host/db")
    assert 'unsupported replica URL scheme "ftp"' in err


def test_unknown_parameter_and_bad_value():
    url = lsvfs.file_url(BASIC / "replica")
    assert '"pol_interval"' in open_error(f"&replica_url={url}&pol_interval=1s")
    err = open_error(f"&replica_url={url}&cache_size=lots")
    assert "cache_size" in err and "lots" in err


def test_missing_folder(tmp_path):
    err = open_error(f"&replica_url={lsvfs.file_url(tmp_path / 'nope')}&open_timeout=300ms")
    assert "does not exist" in err and "waited" in err



def test_folder_without_replica_fails_after_bounded_wait(tmp_path):
    err = open_error(f"&replica_url={lsvfs.file_url(tmp_path)}&open_timeout=300ms")
    assert "no Litestream replica" in err and "waited" in err


def copy_replica(tmp_path, name="basic-4k"):
    dst = tmp_path / "replica"
    shutil.copytree(lsvfs.FIXTURES / name / "replica", dst)
    return dst


def test_truncated_ltx_file(tmp_path):
    replica = copy_replica(tmp_path)
    f = replica / "ltx" / "1" / "0000000000000006-0000000000000007.ltx"  # in the restore plan
    data = f.read_bytes()
    for cut in (40, len(data) // 2, len(data) - 10):
        f.write_bytes(data[: len(data) - cut])
        err = open_error(f"&replica_url={lsvfs.file_url(replica)}")
        assert "corrupt LTX file" in err and "0000000000000006-0000000000000007.ltx" in err


def test_flipped_byte_in_a_page_fails_the_query(tmp_path):
    """Files read whole are checksum-verified: the damaged file's pages fail
    with SQLITE_CORRUPT; no row from it is ever returned."""
    replica = copy_replica(tmp_path)
    f = replica / "ltx" / "1" / "0000000000000006-0000000000000007.ltx"
    data = bytearray(f.read_bytes())
    pgno, offset, size = lsvfs.ltx_index(bytes(data))[-1]
    data[offset + size // 2] ^= 0x01  # inside a compressed page
    f.write_bytes(bytes(data))
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        conn = lsvfs.connect(lsvfs.file_url(replica), name="flipped.db")
        lsvfs.digest(conn)

        conn.execute("PRAGMA integrity_check").fetchall()
        pytest.fail("read a database whose file is damaged")


def test_write_attempts_are_readonly():
    conn = lsvfs.connect(lsvfs.file_url(BASIC / "replica"), name="ro.db")
    conn.isolation_level = None
    for sql in ["INSERT INTO t2 DEFAULT VALUES", "CREATE TABLE z(a)", "DELETE FROM seed", "VACUUM"]:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute(sql)
    assert conn.execute("SELECT count(*) FROM t2").fetchone()[0] > 0


def test_readonly_pragmas_refuse_writes_with_their_message():
    conn = lsvfs.connect(lsvfs.file_url(BASIC / "replica"), name="p.db")
    with pytest.raises(sqlite3.OperationalError, match="litestream_txid is read-only"):
        conn.execute("PRAGMA litestream_txid = 5")


def test_a_gap_at_open_fails_naming_the_missing_txids(tmp_path):
    replica = copy_replica(tmp_path)
    # TXIDs 5 and 6: their level-0 files and the compactions that cover them.
    for f in ["0/0000000000000005-0000000000000005.ltx", "0/0000000000000006-0000000000000006.ltx",
              "1/0000000000000004-0000000000000005.ltx", "1/0000000000000006-0000000000000007.ltx"]:
        (replica / "ltx" / f).unlink()
    url = lsvfs.file_url(replica)
    with pytest.raises(sqlite3.Error) as e:
        lsvfs.connect(url, name="gap.db").execute("SELECT count(*) FROM sqlite_master").fetchone()
    msg = str(e.value)
    assert "unable to open" in msg, msg
    err = open_error(f"&replica_url={url}")
    assert "gap in the replica" in err and "TXIDs 0000000000000005..0000000000000006 are missing" in err, err
