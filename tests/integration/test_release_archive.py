"""The release archive, installed by the real django-litestream installer.

django-litestream 0.6.0 (PyPI) downloads the official VFS release archive
`litestream-vfs-vVERSION-linux-amd64.tar.gz` from the GitHub releases and
unpacks `litestream.so` from it (`litestream vfs-install`). Here
scripts/package-release.py packs our library, a loopback HTTP server plays
the releases page, and that installer code, unmodified, downloads, unpacks
and loads it; then a replica is read through it.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import threading
import zipfile
from pathlib import Path

import pytest

import lsvfs

INSTALLER = "django-litestream==0.6.0"
VERSION = "9.8.7"


@pytest.fixture(scope="module")
def installer(tmp_path_factory) -> Path:
    """django-litestream 0.6.0 unpacked (not installed: the project venv holds 0.5.17)."""
    pytest.importorskip("django")
    where = tmp_path_factory.mktemp("installer")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--ignore-requires-python",
                           "--disable-pip-version-check", "-d", str(where), INSTALLER],
                          capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        pytest.skip(f"cannot download {INSTALLER} from PyPI: {proc.stderr.strip()[-300:]}")
    wheel = next(where.glob("django_litestream-0.6.0-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(where / "src")
    return where / "src"


def pack(out: Path, target: str = "x86_64-unknown-linux-gnu") -> Path:
    proc = subprocess.run([sys.executable, str(lsvfs.ROOT / "scripts" / "package-release.py"), "--target", target,
                           "--lib", str(lsvfs.LIB), "--version", VERSION, "--out", str(out), "--no-wheel"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[0])


def test_archive_name_and_layout(tmp):
    path = pack(tmp)
    assert path.name == f"litestream-vfs-v{VERSION}-linux-amd64.tar.gz"
    with tarfile.open(path) as t:
        members = t.getmembers()
        assert [(m.name, m.isfile(), m.mode & 0o111 != 0) for m in members] == [
            ("litestream.so", True, True), ("LICENSE", True, False)]
        assert t.extractfile(members[0]).read() == lsvfs.LIB.read_bytes()
        assert t.extractfile(members[1]).read() == (lsvfs.ROOT / "LICENSE").read_bytes()


@pytest.fixture
def releases(tmp):
    """A loopback server with /releases/download/vVERSION/<archive>."""
    root = tmp / "www"
    pack(root / "releases" / "download" / f"v{VERSION}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"),
                    reason="the archive packed here is the linux-amd64 one")
def test_django_litestream_installer_installs_and_loads_it(installer, releases, tmp):
    installed = tmp / "venv-lib" / "litestream-vfs.so"
    replica = tmp / "replica"
    shutil.copytree(lsvfs.FIXTURES / "basic-4k" / "replica", replica)
    newest = json.loads((lsvfs.FIXTURES / "basic-4k" / "manifest.json").read_text())["history"][-1]
    code = textwrap.dedent(f"""
        import json, sqlite3, sys
        import django
        from django.conf import settings
        settings.configure(INSTALLED_APPS=[], LITESTREAM={{"vfs_extension_path": {str(installed)!r}}})
        django.setup()
        import django_litestream
        assert django_litestream.__file__.startswith({str(installer)!r}), django_litestream.__file__
        from django_litestream.management.commands import litestream as command
        command.UPSTREAM_REPO = {releases!r}
        command.VFS_VERSION = {VERSION!r}
        command.download_vfs_extension()          # what `manage.py litestream vfs-install` runs
        from django_litestream.vfs import ensure_vfs_loaded
        ensure_vfs_loaded()                       # loads it with no entry point named
        db = sqlite3.connect("file:r.db?vfs=litestream&mode=ro&replica_url=" + {lsvfs.file_url(replica)!r}, uri=True)
        print(json.dumps({{"seed": db.execute("SELECT count(*) FROM seed").fetchone()[0]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(installer)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"litestream-vfs-v{VERSION}-linux-amd64.tar.gz" in proc.stdout
    assert installed.read_bytes() == lsvfs.LIB.read_bytes()
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"seed": newest["tables"]["seed"]}


def test_wheel_tag_must_match_the_glibc_the_library_needs(tmp):
    """package-release.py tags Linux wheels manylinux_2_17 (the release
    builds link against glibc 2.17 with cargo-zigbuild); it refuses a
    library that needs a newer glibc rather than mislabel it."""
    needed = [tuple(map(int, v)) for v in re.findall(rb"GLIBC_(\d+)\.(\d+)", lsvfs.LIB.read_bytes())]
    if max(needed, default=(2, 0)) <= (2, 17):
        pytest.skip("this library was built for glibc 2.17 already")
    proc = subprocess.run([sys.executable, str(lsvfs.ROOT / "scripts" / "package-release.py"), "--target",
                           "x86_64-unknown-linux-gnu", "--lib", str(lsvfs.LIB), "--version", VERSION, "--out",
                           str(tmp)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "too new for manylinux_2_17_x86_64" in proc.stderr and "cargo zigbuild" in proc.stderr, proc.stderr
    assert not list(tmp.glob("*.whl"))
