"""The copy-paste snippets of docs/INSTALL.md, run as written.

Each block preceded by `<!-- test: NAME -->` runs in its real host (bash and
the sqlite3 shell, Python with our wheel, Django, Node, Go), with
`file:///path/to/replica` replaced by a copy of a real Litestream replica and
`/path/to/litestream-vfs` by the built library."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lsvfs

DOC = lsvfs.ROOT / "docs" / "INSTALL.md"
PLACEHOLDER_URL = "file:///path/to/replica"
PLACEHOLDER_LIB = "/path/to/litestream-vfs"
BLOCK = re.compile(r"<!-- test: (\S+) -->\n```(\w+)\n(.*?)```", re.S)


def snippets() -> dict[str, str]:
    return {name: body for name, _, body in BLOCK.findall(DOC.read_text())}


def newest(fixture: str) -> dict:
    return json.loads((lsvfs.FIXTURES / fixture / "manifest.json").read_text())["history"][-1]


def run(args, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 180)
    proc = subprocess.run(args, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture
def replica(tmp) -> str:
    shutil.copytree(lsvfs.FIXTURES / "basic-4k" / "replica", tmp / "replica")
    return lsvfs.file_url(tmp / "replica")


def table_names(url: str) -> list[str]:
    """What the docs' query returns, read through the library in this process."""
    conn = lsvfs.connect(url, name="expected.db")
    try:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    finally:
        conn.close()


def fill(snippet: str, url: str) -> str:
    return snippet.replace(PLACEHOLDER_URL, url).replace(PLACEHOLDER_LIB, str(lsvfs.LIB.with_suffix("")))


@pytest.fixture(scope="module")
def our_package(tmp_path_factory) -> Path:
    """Our wheel, built by the one command and installed into a directory
    that goes first on PYTHONPATH (the project venv holds the official one)."""
    where = tmp_path_factory.mktemp("pkg")
    env = {**os.environ, "PYTHON": sys.executable, "NO_BUILD_ISOLATION": "1"}
    wheel = run([str(lsvfs.ROOT / "scripts" / "build-wheel.sh"), "--lib", str(lsvfs.LIB), "--out", str(where / "dist")],
                env=env).stdout.strip().splitlines()[-1]
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check",
         "--target", str(where / "site"), wheel])
    return where / "site"


def python(code: str, site: Path, cwd: Path, **env: str) -> str:
    return run([sys.executable, "-c", code], cwd=cwd,
               env={**os.environ, "PYTHONPATH": str(site), **env}).stdout


def test_every_marked_snippet_is_known():
    assert set(snippets()) == {"shell", "shell-interactive", "python", "python-official-api", "python-apsw",
                               "django-settings", "django-ours", "node", "go"}


def test_shell(tmp, replica):
    subprocess.run([sys.executable, str(lsvfs.ROOT / "scripts" / "package-release.py"), "--target",
                    "x86_64-unknown-linux-gnu", "--lib", str(lsvfs.LIB), "--version", "X.Y.Z", "--out", str(tmp),
                    "--no-wheel"], check=True, capture_output=True)
    out = run(["bash", "-euo", "pipefail", "-c", fill(snippets()["shell"], replica)], cwd=tmp).stdout
    assert out.split() == table_names(replica)
    assert {"seed", "t2"} <= set(out.split())


def test_shell_interactive(tmp, replica):
    shutil.copy(lsvfs.LIB, tmp / "litestream.so")
    out = run([lsvfs.SQLITE3, "-batch", "-bail"], cwd=tmp, input=fill(snippets()["shell-interactive"], replica)).stdout
    txid, lag_ok = out.strip().split("|")
    assert re.fullmatch("[0-9a-f]{16}", txid) and lag_ok == "1", out


def test_python(tmp, replica, our_package):
    out = python(fill(snippets()["python"], replica), our_package, tmp).splitlines()
    assert out[0] == repr([(t,) for t in table_names(replica)])
    assert re.fullmatch(r"\('[0-9a-f]{16}', -?\d+\)", out[1]), out


def test_python_official_api(tmp, replica, our_package):
    out = python(fill(snippets()["python-official-api"], replica), our_package, tmp)
    assert re.fullmatch(r"\([1-9]\d*,\)\n", out), out


def test_python_apsw(tmp, replica, our_package):
    pytest.importorskip("apsw")
    out = python(fill(snippets()["python-apsw"], replica), our_package, tmp)
    assert re.fullmatch(r"\[\([1-9]\d*,\)\]\n", out), out


def test_django_settings(tmp, replica, our_package):
    """The settings snippet as a project's settings, both aliases on real
    replicas with different data (the S3 one replaced by a second folder)."""
    pytest.importorskip("django_litestream_vfs")
    shutil.copytree(lsvfs.FIXTURES / "page-512" / "replica", tmp / "replica-2")
    settings = fill(snippets()["django-settings"], replica).replace(
        "s3://my-bucket/analytics?region=us-east-1", lsvfs.file_url(tmp / "replica-2"))
    (tmp / "docsettings.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        BASE_DIR = Path({str(tmp)!r})
        SECRET_KEY = "test-only"
        USE_TZ = True
        INSTALLED_APPS = ["django_litestream", "django_litestream_vfs"]
    """) + settings)
    code = textwrap.dedent("""
        import json, django
        django.setup()
        from django.conf import settings
        from django.db import connections
        import litestream_vfs
        assert settings.LITESTREAM["vfs_extension_path"] == litestream_vfs.loadable_path()
        out = {}
        for alias in ("orders_replica", "analytics_replica"):
            with connections[alias].cursor() as cur:
                cur.execute("SELECT count(*) FROM seed")
                out[alias] = cur.fetchone()[0]
        with connections["default"].cursor() as cur:
            cur.execute("CREATE TABLE t(x)")
            cur.execute("INSERT INTO t VALUES (1)")
        print(json.dumps(out))
    """)
    out = python(code, our_package, tmp, DJANGO_SETTINGS_MODULE="docsettings")
    assert json.loads(out.strip().splitlines()[-1]) == {
        "orders_replica": newest("basic-4k")["tables"]["seed"],
        "analytics_replica": newest("page-512")["tables"]["seed"],
    }


def test_django_ours(tmp, replica, our_package):
    """litestream_vfs.django's settings snippet as a project's settings, both
    replicas real (the S3 one replaced by a second folder): each alias reads
    its own, the status and the command report both, the router reads from
    the replica it lists."""
    pytest.importorskip("django")
    shutil.copytree(lsvfs.FIXTURES / "page-512" / "replica", tmp / "replica-2")
    settings = fill(snippets()["django-ours"], replica).replace(
        "s3://my-bucket/analytics?region=us-east-1", lsvfs.file_url(tmp / "replica-2"))
    (tmp / "oursettings.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        BASE_DIR = Path({str(tmp)!r})
        SECRET_KEY = "test-only"
        USE_TZ = True
    """) + settings)
    code = textwrap.dedent("""
        import io, json, django
        django.setup()
        from django.contrib.contenttypes.models import ContentType
        from django.core.management import call_command
        from django.db import connections, router
        from litestream_vfs.django import get_vfs_status
        out = {}
        for alias in ("orders_replica", "analytics_replica"):
            with connections[alias].cursor() as cur:
                cur.execute("SELECT count(*) FROM seed")
                out[alias] = cur.fetchone()[0]
        buf = io.StringIO()
        call_command("litestream_vfs_status", "--json", stdout=buf)
        out["command"] = [s["ok"] for s in json.loads(buf.getvalue())]
        out["status"] = get_vfs_status("analytics_replica")["txid"]
        # Until its first health check finishes, a replica is not read
        # (reads go to default at once); wait for it as DJANGO.md says.
        from litestream_vfs.django.health import wait_for_check
        out["first"] = router.db_for_read(ContentType)
        out["checked"] = wait_for_check("orders_replica", 30)
        out["read"] = router.db_for_read(ContentType)
        out["write"] = router.db_for_write(ContentType)
        print(json.dumps(out))
    """)
    out = json.loads(python(code, our_package, tmp, DJANGO_SETTINGS_MODULE="oursettings").strip().splitlines()[-1])
    assert out == {
        "orders_replica": newest("basic-4k")["tables"]["seed"],
        "analytics_replica": newest("page-512")["tables"]["seed"],
        "command": [True, True],
        "status": out["status"],
        "first": "default",
        "checked": True,
        "read": "orders_replica",
        "write": "default",
    }
    assert len(out["status"]) == 16


def test_node(tmp, replica):
    node_dir = lsvfs.ROOT / "tests" / "node"
    if shutil.which("node") is None or not (node_dir / "node_modules" / "better-sqlite3").is_dir():
        pytest.skip("node or better-sqlite3 missing: npm ci --prefix tests/node")
    env = {k: v for k, v in os.environ.items() if k != "SQLITE_USE_URI"}
    out = run(["node", "-e", fill(snippets()["node"], replica)], cwd=node_dir, env=env).stdout
    assert "name: 'seed'" in out and "name: 't2'" in out and re.search(r"txid: '[0-9a-f]{16}'", out), out


def test_go(tmp, replica):
    gopath = Path("/usr/share/gocode")
    if shutil.which("go") is None or not (gopath / "src" / "github.com" / "mattn" / "go-sqlite3").is_dir():
        pytest.skip("go or mattn/go-sqlite3 missing: apt-get install golang-go golang-github-mattn-go-sqlite3-dev "
                    "libsqlite3-dev")
    (tmp / "main.go").write_text(fill(snippets()["go"], replica))
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(gopath), "GOCACHE": str(tmp / "gocache"),
           "CGO_ENABLED": "1"}
    run(["go", "build", "-o", str(tmp / "app"), "main.go"], cwd=tmp, env=env, timeout=600)
    tables, txid = run([str(tmp / "app")], cwd=tmp).stdout.split()
    assert int(tables) >= 2 and re.fullmatch("[0-9a-f]{16}", txid)
