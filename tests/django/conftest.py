import os
import sys
from pathlib import Path

import pytest

# The helpers of the integration tests (real litestream, digests, loading).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))


@pytest.fixture(scope="session")
def servers():
    """The storage servers of tests/harness/servers.sh, as tests/integration
    has them: started here only if they are not running, never skipped."""
    import servers as srv

    os.environ.pop("AWS_CA_BUNDLE", None)  # litestream 0.5.17 refuses to start with it set
    s, started = srv.start()
    yield s
    if started:
        srv.stop()
