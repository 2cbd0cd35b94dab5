#!/usr/bin/env python3
"""Wraps a built library in the Python wheel (the part of
scripts/build-wheel.sh after cargo; also used by scripts/package-release.py).
Plain Python, so it runs the same on Linux, macOS and Windows.

    python scripts/make_wheel.py --lib PATH [--plat-name TAG] [--out DIR]

Stages python/ in a temporary folder with the library copied in as
litestream_vfs/litestream-vfs.{so,dylib,dll}, the LICENSE and the version of Cargo.toml,
runs `pip wheel` on it (NO_BUILD_ISOLATION=1: use this Python's setuptools,
which must be >= 70.1) and prints the wheel's path.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = (".so", ".dylib", ".dll")


def crate_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    if not match:
        raise SystemExit("make_wheel: no version in Cargo.toml")
    return match.group(1)


def build_wheel(lib: Path, out: Path, plat: str | None = None, isolation: bool = True) -> Path:
    if lib.suffix not in SUFFIXES or not lib.is_file():
        raise SystemExit(f"make_wheel: {lib} is not a built .so, .dylib or .dll")
    version = crate_version()
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "stage"
        shutil.copytree(ROOT / "python", stage,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "litestream-vfs.*", "__pycache__"))
        shutil.copyfile(lib, stage / "litestream_vfs" / f"litestream-vfs{lib.suffix}")
        shutil.copyfile(ROOT / "LICENSE", stage / "LICENSE")
        (stage / "VERSION").write_text(version + "\n")
        args = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                "--wheel-dir", str(Path(tmp) / "wheel"), str(stage)]
        if not isolation:
            args.insert(5, "--no-build-isolation")
        env = {**os.environ, "LITESTREAM_VFS_PLAT_NAME": plat or ""}
        subprocess.run(args, env=env, check=True, stdout=sys.stderr)
        built = list((Path(tmp) / "wheel").glob(f"litestream_vfs_rs-{version}-py3-none-*.whl"))
        if len(built) != 1:
            raise SystemExit(f"make_wheel: pip built {len(built)} wheels, expected one")
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(str(built[0]), str(out / built[0].name)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", required=True, type=Path)
    parser.add_argument("--plat-name", help="wheel platform tag; default: this machine's")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args()
    isolation = os.environ.get("NO_BUILD_ISOLATION", "0") != "1"
    print(build_wheel(args.lib.resolve(), args.out.resolve(), args.plat_name, isolation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
