"""Django with django-litestream 0.5.17 and django-litestream-vfs 0.5.17 from
PyPI, unmodified, reading two Litestream replicas through our library.

`get_vfs_databases()` makes the aliases `replica_a` and `replica_b`
(`file:ALIAS.db?vfs=litestream&mode=ro`), sets LITESTREAM_REPLICA_URL per
connection and loads LITESTREAM["vfs_extension_path"] with the entry point
`sqlite3_litestreamvfs_init`. The replicas are written live by the real
`litestream replicate` from two primaries with different rows.

Replica B is a file:// replica, or an S3 one when the project's storage
servers are up (`eval "$(tests/harness/servers.sh env)"` exports
LSVFS_S3_ENDPOINT and its keys; see replica_b_backend()).

The Django project runs in a subprocess per scenario: settings, loaded
extensions and SQLite's VFS list are per process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import lsvfs

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
SCHEMA = (PROJECT / "shop" / "schema.sql").read_text()

ROWS_A = [("alpha-1", "eu"), ("alpha-2", "eu"), ("alpha-3", "eu")]
ROWS_B = [("beta-1", "us"), ("beta-2", "us"), ("beta-3", "us"), ("beta-4", "us"), ("beta-5", "us")]


def require_django_litestream() -> None:
    try:
        import django_litestream  # noqa: F401
        import django_litestream_vfs  # noqa: F401
    except ImportError as e:
        pytest.fail(f"{e}: install them with tests/django/install-django-litestream.sh {sys.executable}")


def replica_b_backend() -> str:
    """`s3` when the storage servers' environment is there, else `file`.
    To make S3 the only choice once the S3 backend is on main: return "s3"."""
    return "s3" if os.environ.get("LSVFS_S3_ENDPOINT") else "file"


def s3_target(prefix: str) -> tuple[str, str, dict]:
    """(litestream replica YAML, VFS replica URL, VFS environment) for S3."""
    endpoint = os.environ["LSVFS_S3_ENDPOINT"]
    bucket = os.environ.get("LSVFS_BUCKET", "litestream")
    key, secret = os.environ["LSVFS_S3_KEY"], os.environ["LSVFS_S3_SECRET"]
    yaml = f"""    replica:
      type: s3
      bucket: {bucket}
      path: {prefix}
      endpoint: {endpoint}
      region: us-east-1
      force-path-style: true
      access-key-id: {key}
      secret-access-key: {secret}
      sync-interval: 200ms
"""
    url = f"s3://{bucket}/{prefix}?endpoint={endpoint}&region=us-east-1&force-path-style=true"
    return yaml, url, {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1"}


def file_target(path: Path) -> tuple[str, str, dict]:
    yaml = f"""    replica:
      type: file
      path: {path}
      sync-interval: 200ms
"""
    return yaml, lsvfs.file_url(path), {}


def make_primary(path: Path, rows) -> str:
    conn = lsvfs.primary(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO shop_product(name, region) VALUES (?, ?)", rows)
    expected = lsvfs.digest(conn)
    conn.close()
    return expected


def live_replicas(tmp_path_factory, prefix: str):
    """Two primaries replicated live by one `litestream replicate` (B on S3
    or in a folder, see `replica_b_backend`), yielded once both replicas
    match: their folder, URLs and reader environment."""
    require_django_litestream()
    work = tmp_path_factory.mktemp(prefix)
    digest_a = make_primary(work / "a.db", ROWS_A)
    digest_b = make_primary(work / "b.db", ROWS_B)
    yaml_a, url_a, env_a = file_target(work / "replica-a")
    if replica_b_backend() == "s3":
        yaml_b, url_b, env_b = s3_target(f"{prefix}-{uuid.uuid4().hex[:12]}")
    else:
        yaml_b, url_b, env_b = file_target(work / "replica-b")
    config = f"""levels:
  - interval: 2s
dbs:
  - path: {work / 'a.db'}
    monitor-interval: 100ms
{yaml_a}  - path: {work / 'b.db'}
    monitor-interval: 100ms
{yaml_b}"""
    vfs_env = {**env_a, **env_b}
    ls = lsvfs.Litestream(config, work)
    # Litestream's S3 client refuses to start with AWS_CA_BUNDLE set and a
    # plain-HTTP endpoint ("unable to add custom RootCAs").
    ls.env.pop("AWS_CA_BUNDLE", None)
    with ls, lsvfs.env(**vfs_env):
        try:
            lsvfs.wait_replica_matches(url_a, digest_a, name="wait-a.db").close()
            lsvfs.wait_replica_matches(url_b, digest_b, name="wait-b.db").close()
        except TimeoutError as e:
            raise AssertionError(f"{e}\nlitestream log:\n{ls.output()}") from e
        yield {"work": work, "url_a": url_a, "url_b": url_b, "env": vfs_env}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    yield from live_replicas(tmp_path_factory, "django")


def project_env(replicas, extension: str | None, name: str, startup_env: dict | None = None) -> dict:
    """The Django project's environment at start-up: ours plus `startup_env`."""
    work = replicas["work"]
    env = {
        **os.environ,
        **replicas["env"],
        "DJANGO_SETTINGS_MODULE": "settings",
        "LSVFS_DEFAULT_DB": str(work / f"{name}-default.sqlite3"),
        "LSVFS_REPLICA_A_URL": replicas["url_a"],
        "LSVFS_REPLICA_B_URL": replicas["url_b"],
        "LITESTREAM_LOG_LEVEL": "ERROR",
    }
    env.pop("LITESTREAM_REPLICA_URL", None)
    env.update(startup_env or {})
    if extension:
        env["LSVFS_EXTENSION"] = extension
    return env


def manage(env: dict, *args: str, timeout: float = 180) -> None:
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"manage.py {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"


def run_report(replicas, extension: str | None, name: str, startup_env: dict | None = None) -> dict:
    """Migrates `default`, then runs the ORM scenario in a fresh process."""
    env = project_env(replicas, extension, name, startup_env)
    out = replicas["work"] / f"{name}.json"
    manage(env, "migrate", "--run-syncdb", "--database", "default", "-v", "0")
    manage(env, "replica_report", str(out))
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def ours(replicas) -> dict:
    return run_report(replicas, str(lsvfs.LIB), "ours")


def primary_rows(replicas, db: str) -> list:
    conn = sqlite3.connect(replicas["work"] / db)
    try:
        return [list(r) for r in conn.execute("SELECT name, region FROM shop_product ORDER BY id")]
    finally:
        conn.close()


def ok(report: dict, step: str):
    assert "ok" in report[step], f"{step}: {report[step]}"
    return report[step]["ok"]


def test_each_alias_reads_its_own_replica(ours):
    assert ok(ours, "replica_a") == [list(r) for r in ROWS_A]
    assert ok(ours, "replica_b") == [list(r) for r in ROWS_B]
    assert ok(ours, "count_b") == len(ROWS_B)


def test_default_database_keeps_working_after_the_extension_loaded(ours, replicas):
    assert ok(ours, "default_before") == 1
    assert ok(ours, "default_after") == 2
    assert ok(ours, "plain_sqlite_after") == 1
    default = sqlite3.connect(replicas["work"] / "ours-default.sqlite3")
    assert [r[0] for r in default.execute("SELECT product_name FROM shop_order ORDER BY id")] == ["before", "after"]


def test_litestream_functions_through_the_replica_connection(ours):
    for step in ("lag_a", "lag_b"):
        lag, txid = ok(ours, step)
        assert isinstance(lag, int) and 0 <= lag <= 5, (step, lag)
        assert len(txid) == 16 and int(txid, 16) >= 1, (step, txid)


def test_write_through_a_replica_alias_is_refused_read_only(ours):
    error = ours["replica_write"].get("error", "")
    assert error.startswith("OperationalError:") and "readonly database" in error, ours["replica_write"]
    assert ok(ours, "replica_a_after_write") == len(ROWS_A)


def test_orm_follows_new_writes_on_the_primary(replicas):
    """A Django process keeps its replica connection while the primary gets
    a new row: the next ORM query shows it (replicated by litestream, found
    by the poller), with no reconnect."""
    env = project_env(replicas, str(lsvfs.LIB), "follow")
    out = replicas["work"] / "follow.json"
    manage(env, "migrate", "--run-syncdb", "--database", "default", "-v", "0")
    django = subprocess.Popen([sys.executable, "manage.py", "replica_report", str(out), "--follow", str(len(ROWS_A) + 1)],
                              cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lsvfs.wait_for(out.exists, 60, what="the Django report")
        primary = lsvfs.primary(replicas["work"] / "a.db")
        primary.execute("INSERT INTO shop_product(name, region) VALUES ('alpha-new', 'eu')")
        primary.close()
        stdout, stderr = django.communicate(timeout=90)
    finally:
        if django.poll() is None:
            django.kill()
            django.wait()
    assert django.returncode == 0, stdout + stderr
    follow = json.loads(out.with_suffix(".follow.json").read_text())
    assert follow["counts"][0] == len(ROWS_A) and follow["counts"][-1] == len(ROWS_A) + 1, follow
    assert follow["names"] == [name for name, _ in ROWS_A] + ["alpha-new"], follow


def test_replica_b_backend_is_reported(replicas):
    """Which backend replica B used in this run (file, or s3 with the servers up)."""
    scheme = replicas["url_b"].split(":", 1)[0]
    assert scheme == replica_b_backend()


def official_library() -> str | None:
    try:
        import litestream_vfs
    except ImportError:
        return None
    if not hasattr(litestream_vfs, "_EXT_MAP"):  # ours, not the official wheel
        return None
    return litestream_vfs.loadable_path()


@pytest.fixture(scope="module")
def official(replicas) -> str:
    path = official_library()
    if path is None:
        pytest.skip("the official litestream-vfs 0.5.17 wheel is not installed")
    return path


def test_official_extension_mixes_up_the_aliases(replicas, official):
    """For contrast, the official 0.5.17 library in the same project, with
    LITESTREAM_REPLICA_URL exported at start-up as its docs say: it reads the
    start-up environment, not the per-connection value django-litestream-vfs
    sets, so both aliases read replica A; and every later plain connection
    fails. Our library fixes both; if the official one ever stops doing this,
    this test says so."""
    theirs = run_report(replicas, official, "official", {"LITESTREAM_REPLICA_URL": replicas["url_a"]})
    rows_a = primary_rows(replicas, "a.db")  # other tests may have added rows
    assert ok(theirs, "replica_a") == rows_a
    assert ok(theirs, "replica_b") == rows_a, "the official extension read replica B correctly"
    assert "automatic extension loading failed" in theirs["default_after"].get("error", ""), theirs
    assert "automatic extension loading failed" in theirs["plain_sqlite_after"].get("error", ""), theirs


def test_official_extension_without_startup_url_cannot_open(replicas, official):
    """The official library with the URLs only in Django's settings (the
    django-litestream-vfs way): every replica open fails with a bare
    "SQL logic error", and so does every later plain connection."""
    theirs = run_report(replicas, official, "official-settings-only")
    assert theirs["replica_a"] == {"error": "OperationalError: SQL logic error"}, theirs
    assert theirs["replica_b"] == {"error": "OperationalError: SQL logic error"}, theirs
    assert "automatic extension loading failed" in theirs["default_after"].get("error", ""), theirs
