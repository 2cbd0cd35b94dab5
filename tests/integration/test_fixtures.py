"""Every fixture replica (real Litestream 0.5.17 output) reads back exactly."""

import json

import pytest

import lsvfs

FIXTURES = sorted(p.name for p in lsvfs.FIXTURES.iterdir() if (p / "manifest.json").exists())


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_manifest_in_python(name):
    newest = json.loads((lsvfs.FIXTURES / name / "manifest.json").read_text())["history"][-1]
    conn = lsvfs.connect(lsvfs.file_url(lsvfs.FIXTURES / name / "replica"), name=f"{name}.db")
    assert lsvfs.digest(conn) == newest["digest"]
    assert conn.execute("PRAGMA page_count").fetchone()[0] == newest["page_count"]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for table, rows in newest["tables"].items():
        assert conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == rows


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_in_sqlite3_shell(name):
    newest = json.loads((lsvfs.FIXTURES / name / "manifest.json").read_text())["history"][-1]
    url = lsvfs.file_url(lsvfs.FIXTURES / name / "replica")
    r = lsvfs.shell(f".open file:x.db?vfs=litestream&replica_url={url}", "PRAGMA page_count; PRAGMA integrity_check;")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(newest["page_count"]), "ok"]


def test_shrink_reports_vacuumed_size():
    conn = lsvfs.connect(lsvfs.file_url(lsvfs.FIXTURES / "shrink-4k" / "replica"), name="shrink.db")
    assert conn.execute("PRAGMA page_count").fetchone()[0] == 32
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_page1_served_in_rollback_mode():
    conn = lsvfs.connect(lsvfs.file_url(lsvfs.FIXTURES / "basic-4k" / "replica"), name="mode.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    # SQLite's cache follows the state: data_version stays while the state
    # read stays, and moves when the connection reads another state.
    conn.isolation_level = None
    history = json.loads((lsvfs.FIXTURES / "basic-4k" / "manifest.json").read_text())["history"]
    conn.execute("PRAGMA litestream_time = '%.3f'" % ((history[2]["time_ms"] + 800) / 1000))
    conn.execute("SELECT count(*) FROM seed").fetchone()
    first = conn.execute("PRAGMA data_version").fetchone()[0]
    conn.execute("SELECT count(*) FROM seed").fetchone()
    assert conn.execute("PRAGMA data_version").fetchone()[0] == first
    conn.execute("PRAGMA litestream_time = 'latest'")
    conn.execute("SELECT count(*) FROM seed").fetchone()
    assert conn.execute("PRAGMA data_version").fetchone()[0] != first
