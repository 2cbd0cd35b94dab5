#!/usr/bin/env python3
"""Builds the Ruby gem `litestream-vfs-rs` for one platform: the module
`litestream_vfs` with the library inside it, and the LICENSE.

    python3 ruby/build.py                                # cargo build --release, a gem for this machine
    python3 ruby/build.py --lib PATH [--target TRIPLE]   # wrap an already built library
    options: --version X.Y.Z (default: Cargo.toml's), --out DIR (default: dist/)

Runs `gem build` (Ruby's own `gem`); prints the gem's path.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _npm_build():
    """npm/build.py, for its cargo and version helpers (loaded by path: the
    name `build` is also a PyPI package's)."""
    spec = importlib.util.spec_from_file_location("litestream_vfs_npm_build", ROOT / "npm" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _npm_build()
cargo_build, crate_version, host_target = _helpers.cargo_build, _helpers.crate_version, _helpers.host_target

# target triple -> (RubyGems platform, library name in the gem)
TARGETS = {
    "x86_64-unknown-linux-gnu": ("x86_64-linux", "litestream-vfs.so"),
    "aarch64-unknown-linux-gnu": ("aarch64-linux", "litestream-vfs.so"),
    "x86_64-apple-darwin": ("x86_64-darwin", "litestream-vfs.dylib"),
    "aarch64-apple-darwin": ("arm64-darwin", "litestream-vfs.dylib"),
    "x86_64-pc-windows-msvc": ("x64-mingw-ucrt", "litestream-vfs.dll"),
    "x86_64-pc-windows-gnu": ("x64-mingw-ucrt", "litestream-vfs.dll"),
    "aarch64-pc-windows-msvc": ("aarch64-mingw-ucrt", "litestream-vfs.dll"),
}


def build_gem(lib: Path, target: str, version: str, out: Path) -> Path:
    platform, filename = TARGETS[target]
    if lib.suffix != Path(filename).suffix:
        raise SystemExit(f"ruby/build.py: {lib} is not a {Path(filename).suffix}, as {target} builds")
    gem = shutil.which("gem")
    if gem is None:
        raise SystemExit("ruby/build.py: Ruby's `gem` is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "gem"
        shutil.copytree(HERE, stage, ignore=shutil.ignore_patterns("build.py", "*.gem", "__pycache__"))
        shutil.copyfile(lib, stage / "lib" / "litestream_vfs" / filename)
        (stage / "lib" / "litestream_vfs" / filename).chmod(0o755)
        shutil.copyfile(ROOT / "LICENSE", stage / "LICENSE")
        (stage / "VERSION").write_text(version + "\n")
        version_rb = stage / "lib" / "litestream_vfs" / "version.rb"
        version_rb.write_text(re.sub(r'VERSION = ".*"', f'VERSION = "{version}"', version_rb.read_text()))
        env = {**os.environ, "LITESTREAM_VFS_GEM_PLATFORM": platform}
        proc = subprocess.run([gem, "build", "litestream-vfs-rs.gemspec"], cwd=stage, env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"ruby/build.py: gem build failed:\n{proc.stdout}{proc.stderr}")
        built = stage / f"litestream-vfs-rs-{version}-{platform}.gem"
        if not built.is_file():
            raise SystemExit(f"ruby/build.py: gem build made no {built.name}:\n{proc.stdout}")
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(str(built), str(out / built.name)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", type=Path, help="an already built library (default: cargo build --release)")
    parser.add_argument("--target", choices=sorted(TARGETS), help="default: this machine's")
    parser.add_argument("--version", help="default: Cargo.toml's")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args()
    version = (args.version or crate_version()).lstrip("v")
    lib = args.lib.resolve() if args.lib else cargo_build(args.target)
    print(build_gem(lib, args.target or host_target(), version, args.out.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
