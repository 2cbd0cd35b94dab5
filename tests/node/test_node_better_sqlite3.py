"""Runs the Node tests (node --test) against the library the other tests use.

They need better-sqlite3 installed here: `npm ci --prefix tests/node` (it
compiles from source where its prebuilt binaries cannot be downloaded; Node's
headers must then be at hand, e.g. npm's `nodedir`)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import lsvfs

HERE = Path(__file__).resolve().parent


def test_better_sqlite3_reads_a_replica():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (HERE / "node_modules" / "better-sqlite3").is_dir():
        pytest.skip("better-sqlite3 is not installed: npm ci --prefix tests/node")
    proc = subprocess.run([node, "--test", str(HERE / "replica.test.mjs")], cwd=HERE, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "LITESTREAM_VFS_LIB": str(lsvfs.LIB)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "# fail 0" in proc.stdout and "# pass 2" in proc.stdout, proc.stdout
