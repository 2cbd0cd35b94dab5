import sys
from pathlib import Path

# The helpers of the integration tests (real litestream, digests, loading).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
