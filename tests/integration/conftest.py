import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import lsvfs  # noqa: E402
import servers as srv  # noqa: E402


def pytest_sessionstart(session):
    if not lsvfs.LIB.exists():
        raise pytest.UsageError(f"{lsvfs.LIB} is missing: run `cargo build --release` first")


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


@pytest.fixture(scope="session")
def servers():
    """The storage servers of tests/harness/servers.sh: started here if they
    are not running (and stopped again at the end), never skipped."""
    os.environ.pop("AWS_CA_BUNDLE", None)  # litestream 0.5.17 refuses to start with it set
    s, started = srv.start()
    yield s
    if started:
        srv.stop()
