"""The Ruby gem (ruby/): built by `ruby/build.py`, installed with `gem
install --local` into a fresh gem folder, and used from Debian's `ruby` with
its `ruby-sqlite3` (`Database#load_extension`): the library path, a real
Litestream replica read through `open_replica`, the URI it builds, a write
refused, the PRAGMAs Rails sends on connect, and threads opening at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

import lsvfs

FIXTURE = lsvfs.FIXTURES / "basic-4k"
VERSION = "9.8.7"
RUBY = shutil.which("ruby") or "/usr/bin/ruby"


def run(args, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{proc.args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def gem(tmp_path_factory) -> Path:
    if not Path(RUBY).exists() or shutil.which("gem") is None:
        pytest.skip("ruby is not installed: apt-get install ruby ruby-sqlite3")
    if subprocess.run([RUBY, "-e", 'require "sqlite3"'], capture_output=True).returncode != 0:
        pytest.skip("the sqlite3 gem is not installed: apt-get install ruby-sqlite3")
    out = tmp_path_factory.mktemp("gem-dist")
    proc = run([sys.executable, lsvfs.ROOT / "ruby" / "build.py", "--lib", lsvfs.LIB, "--target",
                "x86_64-unknown-linux-gnu", "--version", VERSION, "--out", out])
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def gem_home(gem, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("gem-home")
    run(["gem", "install", "--local", "--no-document", "--ignore-dependencies", "--install-dir", home, gem])
    return home


def test_gem_holds_the_library_and_the_licence(gem):
    assert gem.name == f"litestream-vfs-rs-{VERSION}-x86_64-linux.gem"
    with tarfile.open(gem) as outer:
        data = tarfile.open(fileobj=outer.extractfile("data.tar.gz"))
        assert sorted(data.getnames()) == ["LICENSE", "README.md", "lib/litestream_vfs.rb",
                                           "lib/litestream_vfs/litestream-vfs.so", "lib/litestream_vfs/version.rb"]
        assert data.extractfile("LICENSE").read() == (lsvfs.ROOT / "LICENSE").read_bytes()
        assert data.extractfile("lib/litestream_vfs/litestream-vfs.so").read() == lsvfs.LIB.read_bytes()


def ruby(gem_home: Path, code: str, **env: str) -> dict:
    default = run([RUBY, "-e", "print Gem.path.join(':')"]).stdout
    full = {**os.environ, "GEM_PATH": f"{gem_home}:{default}", **env}
    prelude = f'gem "litestream-vfs-rs", "{VERSION}"\nrequire "litestream_vfs"\nrequire "json"\n'
    out = run([RUBY, "-e", prelude + textwrap.dedent(code)], env=full, cwd=gem_home).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_ruby_sqlite3_reads_a_replica(gem_home, tmp_path):
    shutil.copytree(FIXTURE / "replica", tmp_path / "replica")
    newest = json.loads((FIXTURE / "manifest.json").read_text())["history"][-1]
    result = ruby(gem_home, """
        db = LitestreamVfs.open_replica(ENV["URL"], name: "orders copy.db", poll_interval: "500ms")
        seed = db.get_first_value("SELECT count(*) FROM seed")
        txid, lag = db.get_first_row("SELECT litestream_txid(), litestream_lag()")
        write = begin; db.execute("CREATE TABLE nope(x)"); "no error"; rescue SQLite3::Exception => e; e.message; end
        # What Rails' sqlite3 adapter sends when it connects.
        rails = ["foreign_keys = ON", "journal_mode = WAL", "synchronous = NORMAL", "mmap_size = 134217728",
                 "journal_size_limit = 67108864", "cache_size = 2000"].map { |p| db.execute("PRAGMA #{p}") && p }
        threads = 8.times.map { Thread.new { d = LitestreamVfs.open_replica(ENV["URL"]); n = d.get_first_value("SELECT count(*) FROM seed"); d.close; n } }
        puts JSON.dump(path: LitestreamVfs.loadable_path, version: LitestreamVfs::VERSION, seed: seed, txid: txid,
                       lag: lag, write: write, rails: rails.size, threads: threads.map(&:value).uniq,
                       uri: LitestreamVfs.replica_uri("s3://b/p?region=x", cache_size: "64MB"))
    """, URL=lsvfs.file_url(tmp_path / "replica"))
    assert result["path"].startswith(str(gem_home)) and result["path"].endswith("/lib/litestream_vfs/litestream-vfs.so")
    assert result["version"] == VERSION
    assert result["seed"] == newest["tables"]["seed"]
    assert len(result["txid"]) == 16 and int(result["txid"], 16) >= 1 and result["lag"] >= 0
    assert "readonly" in result["write"], result
    assert result["rails"] == 6 and result["threads"] == [newest["tables"]["seed"]]
    assert result["uri"] == "file:replica.db?vfs=litestream&mode=ro&replica_url=s3%3A%2F%2Fb%2Fp%3Fregion%3Dx&cache_size=64MB"


def test_load_into_an_open_database(gem_home, tmp_path):
    """The official way round: load into any connection, then open by URI."""
    shutil.copytree(FIXTURE / "replica", tmp_path / "replica")
    result = ruby(gem_home, """
        require "sqlite3"
        LitestreamVfs.load(SQLite3::Database.new(":memory:"))
        uri = "file:app.db?vfs=litestream&replica_url=" + ENV["URL"]
        db = SQLite3::Database.new(uri, flags: SQLite3::Constants::Open::READONLY | SQLite3::Constants::Open::URI)
        puts JSON.dump(tables: db.get_first_value("SELECT count(*) FROM sqlite_master WHERE type = 'table'"))
    """, URL=lsvfs.file_url(tmp_path / "replica"))
    assert result["tables"] >= 1
