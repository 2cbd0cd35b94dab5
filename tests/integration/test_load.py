"""Loading the library into real SQLite hosts."""

import shutil
import sqlite3
import subprocess
import sys

import pytest

import lsvfs

BASIC = lsvfs.FIXTURES / "basic-4k"


def manifest(name):
    import json

    return json.loads((lsvfs.FIXTURES / name / "manifest.json").read_text())


@pytest.mark.parametrize("filename", ["liblitestream_vfs.so", "litestream-vfs.so", "litestream.so"])
def test_shell_loads_by_file_name(tmp_path, filename):
    lib = tmp_path / filename
    shutil.copy(lsvfs.LIB, lib)
    url = lsvfs.file_url(BASIC / "replica")
    r = lsvfs.shell(
        f".open file:db?vfs=litestream&replica_url={url}",
        "SELECT count(*) FROM seed; PRAGMA integrity_check;",
        load=lib.with_suffix(""),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(manifest("basic-4k")["history"][-1]["tables"]["seed"]), "ok"]
    assert r.stderr == ""


def test_exports_only_entry_points():
    out = subprocess.run(["nm", "-D", "--defined-only", str(lsvfs.LIB)], capture_output=True, text=True, check=True)
    names = sorted(line.split()[-1] for line in out.stdout.splitlines() if line.strip())
    # The three entry points, and the failed open's message for hosts that
    # see only "unable to open database file" (litestream_vfs reads it).
    assert names == ["litestream_vfs_clear_last_error", "litestream_vfs_last_error",
                     "sqlite3_extension_init", "sqlite3_litestream_init", "sqlite3_litestreamvfs_init"]


def test_links_no_sqlite():
    out = subprocess.run(["ldd", str(lsvfs.LIB)], capture_output=True, text=True, check=True)
    assert "sqlite" not in out.stdout


def test_load_needs_no_url_and_is_permanent_and_repeatable():
    # A separate interpreter: this process may have loaded the library already.
    code = f"""
import os, sqlite3
os.environ.pop("LITESTREAM_REPLICA_URL", None)
c = sqlite3.connect(":memory:")
c.enable_load_extension(True)
c.load_extension({str(lsvfs.LIB.with_suffix(''))!r})
c.load_extension({str(lsvfs.LIB.with_suffix(''))!r})
c.close()  # the VFS outlives the loading connection
r = sqlite3.connect("file:x.db?vfs=litestream&replica_url={lsvfs.file_url(BASIC / 'replica')}", uri=True)
print(r.execute("SELECT count(*) FROM t2").fetchone()[0])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(manifest("basic-4k")["history"][-1]["tables"]["t2"])


def test_plain_connections_keep_working_after_load(tmp_path):
    code = f"""
import sqlite3
c = sqlite3.connect(":memory:")
c.enable_load_extension(True)
c.load_extension({str(lsvfs.LIB.with_suffix(''))!r})
plain = sqlite3.connect({str(tmp_path / 'plain.db')!r})
plain.execute("CREATE TABLE x(a)")
plain.execute("INSERT INTO x VALUES (1)")
plain.commit()
mem = sqlite3.connect(":memory:")
print(plain.execute("SELECT count(*) FROM x").fetchone()[0], mem.execute("SELECT 1").fetchone()[0])
try:
    plain.execute("SELECT litestream_txid()").fetchone()
except sqlite3.OperationalError as e:
    print("error:", e)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "1 1"
    assert "not a Litestream replica" in lines[1]


def test_loads_into_current_sqlite_via_apsw():
    # apsw carries its own, current SQLite; run it in a process of its own.
    code = f"""
import apsw
assert apsw.sqlitelibversion() >= "3.45", apsw.sqlitelibversion()
c = apsw.Connection(":memory:")
c.enable_load_extension(True)
c.load_extension({str(lsvfs.LIB)!r})
r = apsw.Connection("file:x.db?vfs=litestream&replica_url={lsvfs.file_url(BASIC / 'replica')}",
                    flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
print(r.execute("PRAGMA integrity_check").fetchall()[0][0], r.execute("SELECT litestream_txid()").fetchall()[0][0])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "0000000000000007"]


def test_second_sqlite_library_in_one_process_is_refused_not_crashed():
    code = f"""
import sqlite3, apsw
c = sqlite3.connect(":memory:")
c.enable_load_extension(True)
c.load_extension({str(lsvfs.LIB.with_suffix(''))!r})
a = apsw.Connection(":memory:")
a.enable_load_extension(True)
try:
    a.load_extension({str(lsvfs.LIB)!r})
    print("loaded")
except apsw.Error as e:
    print("refused:", e)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "another SQLite library" in r.stdout, r.stdout
