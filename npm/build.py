#!/usr/bin/env python3
"""Builds the npm packages: `litestream-vfs-rs` (the JavaScript, with an
optional dependency per platform) and `litestream-vfs-rs-<os>-<arch>` (one
platform's library), laid out like the official `litestream-vfs` packages.

    python3 npm/build.py                                   # cargo build --release, both packages for this machine
    python3 npm/build.py --lib PATH [--target TRIPLE]      # wrap an already built library
    python3 npm/build.py --only main                       # the main package alone (release: once)
    python3 npm/build.py --only platform --lib PATH --target TRIPLE
    options: --version X.Y.Z (default: Cargo.toml's), --out DIR (default: dist/)

Each package gets the LICENSE and is packed with `npm pack` (offline); the
paths of the tarballs are printed, one a line.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NAME = "litestream-vfs-rs"

# target triple -> (suffix of the package name, npm os, npm cpu, library name in the package)
TARGETS = {
    "x86_64-unknown-linux-gnu": ("linux-amd64", "linux", "x64", "litestream-vfs.so"),
    "aarch64-unknown-linux-gnu": ("linux-arm64", "linux", "arm64", "litestream-vfs.so"),
    "x86_64-apple-darwin": ("darwin-amd64", "darwin", "x64", "litestream-vfs.dylib"),
    "aarch64-apple-darwin": ("darwin-arm64", "darwin", "arm64", "litestream-vfs.dylib"),
    "x86_64-pc-windows-msvc": ("windows-amd64", "win32", "x64", "litestream-vfs.dll"),
    "x86_64-pc-windows-gnu": ("windows-amd64", "win32", "x64", "litestream-vfs.dll"),
    "aarch64-pc-windows-msvc": ("windows-arm64", "win32", "arm64", "litestream-vfs.dll"),
}
CARGO_LIBS = ("liblitestream_vfs.so", "liblitestream_vfs.dylib", "litestream_vfs.dll")


def crate_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    if not match:
        raise SystemExit("npm/build.py: no version in Cargo.toml")
    return match.group(1)


def host_target() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(machine)
    system = {"linux": "unknown-linux-gnu", "darwin": "apple-darwin", "windows": "pc-windows-msvc"}.get(
        platform.system().lower())
    if not arch or not system:
        raise SystemExit(f"npm/build.py: no package for {platform.system()} {machine}")
    return f"{arch}-{system}"


def npm_pack(stage: Path, out: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm/build.py: npm is not installed")
    proc = subprocess.run([npm, "pack", "--offline", "--silent", "--json", "--pack-destination", str(out), str(stage)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"npm/build.py: npm pack failed:\n{proc.stderr}")
    return out / json.loads(proc.stdout)[0]["filename"]


def write_package(stage: Path, manifest: dict, readme: str) -> None:
    stage.mkdir(parents=True)
    (stage / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (stage / "README.md").write_text(readme)
    shutil.copyfile(ROOT / "LICENSE", stage / "LICENSE")


def main_package(version: str, tmp: Path, out: Path) -> Path:
    stage = tmp / NAME
    optional = {f"{NAME}-{suffix}": version for suffix, *_ in dict.fromkeys(t for t in TARGETS.values())}
    manifest = {
        "name": NAME,
        "version": version,
        "description": "Query a Litestream replica in place from SQLite: the litestream VFS extension (Rust), "
                       "with helpers for better-sqlite3 and node:sqlite",
        "main": "index.js",
        "types": "index.d.ts",
        "files": ["index.js", "index.d.ts", "LICENSE", "README.md"],
        "license": "Apache-2.0",
        "keywords": ["sqlite", "litestream", "vfs", "replication", "better-sqlite3"],
        "engines": {"node": ">=18"},
        "optionalDependencies": optional,
        "peerDependencies": {"better-sqlite3": ">=12.3.0"},
        "peerDependenciesMeta": {"better-sqlite3": {"optional": True}},
    }
    write_package(stage, manifest, (HERE / "README.md").read_text())
    for name in ("index.js", "index.d.ts"):
        shutil.copyfile(HERE / name, stage / name)
    return npm_pack(stage, out)


def platform_package(version: str, target: str, lib: Path, tmp: Path, out: Path) -> Path:
    suffix, npm_os, cpu, filename = TARGETS[target]
    if Path(lib).suffix != Path(filename).suffix:
        raise SystemExit(f"npm/build.py: {lib} is not a {Path(filename).suffix}, as {target} builds")
    name = f"{NAME}-{suffix}"
    stage = tmp / name
    manifest = {
        "name": name,
        "version": version,
        "description": f"The litestream VFS extension (Rust) for {npm_os} {cpu}: installed by {NAME}",
        "os": [npm_os],
        "cpu": [cpu],
        "files": [filename, "LICENSE", "README.md"],
        "license": "Apache-2.0",
    }
    if npm_os == "linux":
        manifest["libc"] = ["glibc"]
    readme = f"# {name}\n\nThe library of [{NAME}](https://www.npmjs.com/package/{NAME}) for {npm_os} {cpu}. " \
             f"Installed by `{NAME}` as an optional dependency: install that one.\n"
    write_package(stage, manifest, readme)
    shutil.copyfile(lib, stage / filename)
    (stage / filename).chmod(0o755)
    return npm_pack(stage, out)


def cargo_build(target: str | None) -> Path:
    args = ["cargo", "build", "--release", "--lib"] + (["--target", target] if target else [])
    subprocess.run(args, cwd=ROOT, check=True, stdout=sys.stderr)
    folder = ROOT / "target" / (target or "") / "release"
    for name in CARGO_LIBS:
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"npm/build.py: no library in {folder} after cargo build")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", type=Path, help="an already built library (default: cargo build --release)")
    parser.add_argument("--target", choices=sorted(TARGETS), help="default: this machine's")
    parser.add_argument("--version", help="default: Cargo.toml's")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--only", choices=("main", "platform"))
    args = parser.parse_args()
    version = (args.version or crate_version()).lstrip("v")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "platform":
            print(main_package(version, Path(tmp), out))
        if args.only != "main":
            target = args.target or host_target()
            lib = args.lib.resolve() if args.lib else cargo_build(args.target)
            print(platform_package(version, target, lib, Path(tmp), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
