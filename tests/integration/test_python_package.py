"""The Python package: built by scripts/build-wheel.sh, installed into fresh
virtual environments, used the way its users would.

- Debian's Python (its sqlite3 loads extensions): `loadable_path()`,
  `load(conn)` and `connect(replica_url)` read a real Litestream replica.
- The module API is the official `litestream-vfs` 0.5.17 one.
- A Python whose sqlite3 cannot load extensions (pyenv's default build)
  gets an error that says what to do, and the apsw route it names works.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import lsvfs

DEBIAN_PYTHON = "/usr/bin/python3"
FIXTURE = lsvfs.FIXTURES / "basic-4k"


def run(*args, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 300)
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def can_load_extensions(python: str) -> bool:
    code = "import sqlite3; print(hasattr(sqlite3.Connection, 'enable_load_extension'))"
    return run(python, "-c", code).stdout.strip() == "True"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built by the one command, from the library the other tests use."""
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PYTHON": sys.executable, "NO_BUILD_ISOLATION": "1"}
    proc = check(run(lsvfs.ROOT / "scripts" / "build-wheel.sh", "--lib", lsvfs.LIB, "--out", out, env=env))
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.parent == out and path.exists()
    return path


def make_venv(python: str, where: Path, wheel: Path) -> Path:
    check(run(python, "-m", "venv", where))
    py = where / "bin" / "python"
    check(run(py, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check", "-q", wheel))
    return py


@pytest.fixture(scope="module")
def debian_venv(tmp_path_factory, wheel) -> Path:
    if not Path(DEBIAN_PYTHON).exists() or not can_load_extensions(DEBIAN_PYTHON):
        pytest.skip(f"{DEBIAN_PYTHON} missing or its sqlite3 cannot load extensions")
    return make_venv(DEBIAN_PYTHON, tmp_path_factory.mktemp("venv") / "debian", wheel)


@pytest.fixture
def replica(tmp) -> tuple[str, str]:
    """A copy of a real Litestream 0.5.17 replica and the digest of its newest state."""
    shutil.copytree(FIXTURE / "replica", tmp / "replica")
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    return lsvfs.file_url(tmp / "replica"), manifest["history"][-1]["digest"]


def in_venv(py: Path, code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Runs `code` in the venv, away from the repository, with lsvfs.digest available."""
    helpers = textwrap.dedent(inspect.getsource(lsvfs.user_tables)) + textwrap.dedent(inspect.getsource(lsvfs.digest))
    prelude = "import hashlib, sqlite3\n" + helpers
    return run(py, "-c", prelude + textwrap.dedent(code), cwd=cwd, env={**os.environ, **env})


def test_wheel_is_platform_tagged_and_holds_the_library(wheel):
    assert wheel.name.startswith("litestream_vfs_rs-")
    tags = wheel.name[:-len(".whl")].split("-")[-3:]
    assert tags[:2] == ["py3", "none"] and tags[2].startswith("linux_"), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
    assert "litestream_vfs/__init__.py" in names
    assert "litestream_vfs/litestream-vfs.so" in names
    assert "litestream_vfs/django/management/commands/litestream_vfs_status.py" in names
    licence = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE"))
    with zipfile.ZipFile(wheel) as z:
        assert z.read(licence) == (lsvfs.ROOT / "LICENSE").read_bytes()
    assert "Root-Is-Purelib: false" in meta and "Tag: py3-none-linux_" in meta


def params(fn) -> list:
    """Names, kinds and defaults of a function's parameters (annotations aside)."""
    import inspect
    return [[p.name, p.kind.name, "-" if p.default is p.empty else repr(p.default)]
            for p in inspect.signature(fn).parameters.values()]


def test_module_api_matches_the_official_package(debian_venv, tmp):
    """Same functions with the same signatures as litestream-vfs 0.5.17."""
    official = pytest.importorskip("litestream_vfs")
    if not hasattr(official, "_EXT_MAP"):
        pytest.skip("the project venv does not hold the official litestream-vfs 0.5.17")
    code = """
        import inspect, json, litestream_vfs as m
        print(json.dumps({n: params(getattr(m, n)) for n in ("loadable_path", "load")}))
    """
    ours = json.loads(check(in_venv(debian_venv, textwrap.dedent(inspect.getsource(params)) + textwrap.dedent(code),
                                    tmp)).stdout)
    theirs = {n: params(getattr(official, n)) for n in ("loadable_path", "load")}
    assert ours == theirs == {"loadable_path": [], "load": [["conn", "POSITIONAL_OR_KEYWORD", "-"]]}
    assert os.path.basename(official.loadable_path()) == "litestream-vfs.so"


def test_debian_python_reads_a_replica(debian_venv, replica, tmp):
    url, expected = replica
    code = """
        import os, sys, sqlite3, litestream_vfs
        path = litestream_vfs.loadable_path()
        assert path.startswith(sys.prefix), (path, sys.prefix)
        assert os.path.basename(path) == "litestream-vfs.so", path

        # The official API: load into one connection, the VFS stays for the process.
        loader = sqlite3.connect(":memory:")
        litestream_vfs.load(loader)
        loader.close()
        plain = sqlite3.connect("file:one.db?vfs=litestream&mode=ro&replica_url=" + os.environ["URL"], uri=True)
        assert digest(plain) == os.environ["EXPECTED"]

        # Our helper.
        conn = litestream_vfs.connect(os.environ["URL"], poll_interval="200ms", cache_size="8MB")
        assert isinstance(conn, sqlite3.Connection)
        assert digest(conn) == os.environ["EXPECTED"]
        txid, lag = conn.execute("SELECT litestream_txid(), litestream_lag()").fetchone()
        assert len(txid) == 16 and int(txid, 16) > 0, txid
        assert 0 <= lag < 30, lag  # polled at open: never -1 ("not yet")
        try:
            conn.execute("CREATE TABLE nope(x)")
        except sqlite3.OperationalError as e:
            assert "readonly" in str(e), e
        else:
            raise AssertionError("a write through the replica succeeded")

        # Without a URL: LITESTREAM_REPLICA_URL, read when the database opens.
        os.environ["LITESTREAM_REPLICA_URL"] = os.environ["URL"]
        assert digest(litestream_vfs.connect(name="env.db")) == os.environ["EXPECTED"]
        print("ok")
    """
    proc = check(in_venv(debian_venv, code, tmp, URL=url, EXPECTED=expected))
    assert proc.stdout.strip() == "ok"


def test_connect_reports_a_bad_option(debian_venv, replica, tmp):
    url, _ = replica
    code = """
        import os, sqlite3, litestream_vfs
        try:
            litestream_vfs.connect(os.environ["URL"], poll_interval="soon").execute("SELECT 1 FROM sqlite_master")
        except sqlite3.Error as e:
            print("error:", e)
    """
    proc = check(in_venv(debian_venv, code, tmp, URL=url))
    assert proc.stdout.startswith("error:"), proc.stdout


def test_sqlite3_shell_loads_the_bundled_library(debian_venv, replica, tmp):
    """loadable_path() is what the other hosts are given."""
    url, expected = replica
    path = check(in_venv(debian_venv, "import litestream_vfs; print(litestream_vfs.loadable_path())", tmp)).stdout.strip()
    proc = lsvfs.shell(".open file:r.db?vfs=litestream", "SELECT count(*) FROM seed;",
                       load=path, env={"LITESTREAM_REPLICA_URL": url})
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    assert proc.stdout.strip() == str(manifest["history"][-1]["tables"]["seed"])


def python_without_extension_loading() -> str | None:
    for candidate in (shutil.which("python3"), os.environ.get("NO_EXT_PYTHON")):
        if candidate and Path(candidate).resolve() != Path(DEBIAN_PYTHON).resolve() \
                and not can_load_extensions(candidate):
            return candidate
    return None


def test_python_without_extension_loading_is_told_what_to_do(wheel, tmp, replica):
    python = python_without_extension_loading()
    if python is None:
        pytest.skip("no Python without sqlite3 extension loading on this machine")
    py = make_venv(python, tmp / "venv", wheel)
    url, _ = replica
    code = """
        import os, litestream_vfs
        try:
            litestream_vfs.connect(os.environ["URL"])
        except litestream_vfs.ExtensionLoadingUnavailable as e:
            print(e)
        else:
            raise AssertionError("connect worked without extension loading?")
    """
    proc = check(in_venv(py, code, tmp, URL=url))
    assert "cannot load SQLite extensions" in proc.stdout
    assert "--enable-loadable-sqlite-extensions" in proc.stdout
    assert "apsw" in proc.stdout and "/usr/bin/python3" in proc.stdout


def test_apsw_route_from_the_message_works(debian_venv, replica, tmp):
    """The apsw snippet of the error message, as written, with our package."""
    pytest.importorskip("apsw")
    url, expected = replica
    site = check(in_venv(debian_venv, "import litestream_vfs, os; print(os.path.dirname(os.path.dirname(litestream_vfs.__file__)))", tmp)).stdout.strip()
    code = f"""
        import os, sys
        sys.path.insert(0, {site!r})
        import litestream_vfs
        assert litestream_vfs.__file__.startswith({site!r})
        msg = litestream_vfs._NO_EXTENSIONS_HELP
        snippet = textwrap.dedent(msg[msg.rindex(chr(10), 0, msg.index("import apsw")) + 1:])
        snippet = snippet.replace("replica_url=...", "replica_url=" + os.environ["URL"])
        scope = {{}}
        exec(snippet, scope)
        db = scope["db"]
        rows = [tuple(r) for r in db.execute("SELECT count(*) FROM seed")]
        print(rows[0][0])
    """
    proc = check(run(sys.executable, "-c", "import textwrap\n" + textwrap.dedent(code), cwd=tmp,
                     env={**os.environ, "URL": url}))
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    assert proc.stdout.strip() == str(manifest["history"][-1]["tables"]["seed"])
