import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import lsvfs  # noqa: E402


def pytest_sessionstart(session):
    if not lsvfs.LIB.exists():
        raise pytest.UsageError(f"{lsvfs.LIB} is missing: run `cargo build --release` first")


@pytest.fixture
def tmp(tmp_path):
    return tmp_path
