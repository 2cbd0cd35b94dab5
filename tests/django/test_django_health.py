"""The router never waits on a health check (settings.configure in a fresh
process, a fixture replica on the S3 server):

- storage that accepts connections and stays silent (a gate in front of the
  S3 server, closed): the first routed read starts a check and returns
  `default`, and 2000 more return `default` while that one check is still
  pending, without starting another; once the gate opens and the check
  finishes, reads go to the replica;
- a result ages: a replica whose last check found it 1 s behind counts as
  `lag_seconds` plus the time since that check started, so a check that
  hangs cannot keep it healthy.

Counted, not timed: the gate says when the check reached storage, the
process reports the probe's state at each step.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid

import lsvfs
from test_django_trust import package  # noqa: F401 - the fixture

READS = 2000

CODE = r"""
import json, sys
import django
from django.conf import settings

settings.configure(
    SECRET_KEY="test-only",
    INSTALLED_APPS=["django.contrib.contenttypes", "litestream_vfs.django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    DATABASE_ROUTERS=["litestream_vfs.django.LitestreamReplicaRouter"],
    LITESTREAM={"vfs": {"replica": {"replica_url": sys.argv[1], "primary": None, "poll_interval": "200ms",
                                    "storage_timeout": "60s", "open_timeout": "60s"}}},
)
from litestream_vfs.django import get_vfs_databases
settings.DATABASES.update(get_vfs_databases())
django.setup()
from collections import Counter
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router
from litestream_vfs.django import health

def probe():
    p = health._probe("replica")
    return {"checks": health.checks_made("replica"), "checking": getattr(p, "running", None),
            "value": p.value or None}

def report(step, **more):
    print(json.dumps({"step": step, **probe(), **more}), flush=True)
    assert sys.stdin.readline().strip() == "go", step

reads = lambda n: dict(Counter(router.db_for_read(ContentType) for _ in range(n)))
report("first", reads=reads(1))
report("pending", reads=reads(int(sys.argv[2])))
finished = health.wait_for_check("replica", 120)
with connections["replica"].cursor() as cur:
    cur.execute("SELECT count(*) FROM seed")
    seed = cur.fetchone()[0]
report("healthy", finished=finished, reads=reads(int(sys.argv[2])), seed=seed)
"""


class SilentGate:
    """A TCP endpoint in front of `upstream` that accepts connections and
    stays silent (reads nothing, answers nothing) until `open()`; then it
    pipes every connection, the held ones too, to `upstream`."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.opened = threading.Event()
        self.reached = threading.Event()  # a client connected
        self.accepted = 0
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.socks.append(client)
            self.reached.set()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.opened.wait()
        try:
            up = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        up.settimeout(None)
        with self.lock:
            self.socks.append(up)
        threading.Thread(target=_pipe, args=(up, client), daemon=True).start()
        _pipe(client, up)

    def open(self) -> None:
        self.opened.set()

    def close(self) -> None:
        self.server.close()
        self.opened.set()
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def next_report(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"the Django process ended: {proc.wait(30)}\n{proc.stderr.read()}")
    return json.loads(line)


def test_routing_never_waits_on_a_silent_storage(package, servers, tmp_path):  # noqa: F811 - the fixture
    prefix = f"djhealth-{uuid.uuid4().hex[:10]}"
    assert servers.upload_tree("s3", lsvfs.FIXTURES / "basic-4k" / "replica", prefix) > 0
    host, port = servers.env["LSVFS_S3_ENDPOINT"].rsplit("/", 1)[1].split(":")
    gate = SilentGate((host, int(port)))
    url = f"s3://{servers.bucket}/{prefix}?endpoint=http://127.0.0.1:{gate.port}&region=us-east-1&force-path-style=true"
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "LITESTREAM_REPLICA_URL")}
    env.update(PYTHONPATH=str(package), TMPDIR=str(tmp_path), LITESTREAM_LOG_LEVEL="ERROR",
               **servers.reader_env("s3"))
    proc = subprocess.Popen([sys.executable, "-c", CODE, url, str(READS)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = next_report(proc)
        # The first read started the check and did not wait for it.
        assert first["value"] is None, f"the first read waited for the check to end: {first['value']}"
        assert first["reads"] == {"default": 1}, first
        assert first["checks"] == 1 and first["checking"] is True, first
        assert gate.reached.wait(60), "the check never reached storage"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        pending = next_report(proc)
        # The check sits at the silent storage: every read went to `default`
        # at once, and no second check started.
        assert pending["reads"] == {"default": READS}, pending
        assert pending["checks"] == 1 and pending["checking"] is True and pending["value"] is None, pending
        gate.open()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        healthy = next_report(proc)
        assert healthy["finished"] is True and healthy["value"]["error"] is None, healthy
        assert healthy["reads"] == {"replica": READS}, healthy
        assert healthy["seed"] == 2373, healthy
        # At most one check per poll interval (200 ms) since: a few, not one per read.
        assert healthy["checks"] < 50, healthy
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        gate.close()


AGING = r"""
import json, sys, time
import django
from django.conf import settings

settings.configure(
    SECRET_KEY="test-only",
    INSTALLED_APPS=["django.contrib.contenttypes", "litestream_vfs.django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    DATABASE_ROUTERS=["litestream_vfs.django.LitestreamReplicaRouter"],
    # An hour's poll interval: the one check wait_for_check starts is the only one.
    LITESTREAM={"vfs": {"replica": {"replica_url": sys.argv[1], "primary": None, "poll_interval": "3600s"}},
                "vfs_max_lag_seconds": 5},
)
from litestream_vfs.django import get_vfs_databases
settings.DATABASES.update(get_vfs_databases())
django.setup()
from django.contrib.contenttypes.models import ContentType
from django.db import router
from litestream_vfs.django import health

assert health.wait_for_check("replica", 60)
p = health._probe("replica")
out = {"fresh": router.db_for_read(ContentType)}
with p.lock:
    # The last check found the replica 1 s behind; pretend a check runs
    # now (none starts) and that the last one started 3 s, then 10 s ago.
    p.running = True
    p.value = {**p.value, "lag_seconds": 1.0, "error": None}
    p.started = time.monotonic() - 3
out["3s"] = router.db_for_read(ContentType)
with p.lock:
    p.started = time.monotonic() - 10
out["10s"] = router.db_for_read(ContentType)
print(json.dumps(out))
"""


def test_an_old_result_ages_into_unhealthy(package, tmp_path):  # noqa: F811 - the fixture
    """A healthy result counts its age: 1 s lag + 3 s since the check is
    within max_lag_seconds (5), 1 s + 10 s is not, so a check that hangs
    sends reads to `default` once the replica may be too far behind."""
    folder = tmp_path / "replica"
    shutil.copytree(lsvfs.FIXTURES / "basic-4k" / "replica", folder)
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "LITESTREAM_REPLICA_URL")}
    env.update(PYTHONPATH=str(package), TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", AGING, lsvfs.file_url(folder)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"fresh": "replica", "3s": "replica",
                                                                "10s": "default"}


FORK = r"""
import json, os, sys
import django
from django.conf import settings

settings.configure(
    SECRET_KEY="test-only",
    INSTALLED_APPS=["django.contrib.contenttypes", "litestream_vfs.django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    DATABASE_ROUTERS=["litestream_vfs.django.LitestreamReplicaRouter"],
    LITESTREAM={"vfs": {"replica": {"replica_url": sys.argv[1], "primary": None}}},
)
from litestream_vfs.django import get_vfs_databases
settings.DATABASES.update(get_vfs_databases())
django.setup()
from django.contrib.contenttypes.models import ContentType
from django.db import router
from litestream_vfs.django import health

p = health._probe("replica")
with p.lock:
    p.running = True        # a check in flight in the parent at the fork (its thread is not in the child)
pid = os.fork()
if pid == 0:
    code = 1
    try:
        finished = health.wait_for_check("replica", 30)
        print(json.dumps({"child": [finished, router.db_for_read(ContentType), health.checks_made("replica")]}),
              flush=True)
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
print(json.dumps({"parent": [router.db_for_read(ContentType), health.checks_made("replica")],
                  "child_exit": os.waitstatus_to_exitcode(status)}))
"""


def test_a_forked_child_checks_afresh(package, tmp_path):  # noqa: F811 - the fixture
    """A check running in the parent when it forks (gunicorn --preload) has
    no thread in the child: the child's probes start afresh, so its first
    wait for a check starts one and the replica is read."""
    folder = tmp_path / "replica"
    shutil.copytree(lsvfs.FIXTURES / "basic-4k" / "replica", folder)
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "LITESTREAM_REPLICA_URL")}
    env.update(PYTHONPATH=str(package), TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", FORK, lsvfs.file_url(folder)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    child, parent = [json.loads(line) for line in proc.stdout.strip().splitlines()[-2:]]
    assert child == {"child": [True, "replica", 1]}, proc.stdout
    # The parent's check is still "running" (none ends: none was started): `default`, no new check.
    assert parent == {"parent": ["default", 0], "child_exit": 0}, proc.stdout
