"""Wheel build for the litestream-vfs shared library.

The library is built by cargo, not here: `scripts/build-wheel.sh` builds it,
copies it into `litestream_vfs/` as `litestream-vfs.{so,dylib,dll}` and runs
this build. The wheel holds no Python extension module, so it is tagged
`py3-none-<platform>`: one wheel per platform serves every Python 3.
"""

import os
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
LIBS = ("litestream-vfs.so", "litestream-vfs.dylib", "litestream-vfs.dll")


def version() -> str:
    """From VERSION (written by the build script) or else ../Cargo.toml."""
    if (HERE / "VERSION").exists():
        return (HERE / "VERSION").read_text().strip()
    cargo = HERE.parent / "Cargo.toml"
    for line in cargo.read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit(f"no version in {cargo}")


def bundled_library() -> str:
    found = [name for name in LIBS if (HERE / "litestream_vfs" / name).exists()]
    if len(found) != 1:
        raise SystemExit(
            f"litestream_vfs/ must hold exactly one of {', '.join(LIBS)}, found {found or 'none'}: "
            "build the wheel with scripts/build-wheel.sh, which builds the library and copies it there"
        )
    return found[0]


class BinaryDistribution(Distribution):
    """Holds a native library, so it installs to platlib and is not pure."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """A platform wheel with no Python ABI: py3-none-<plat>."""

    def finalize_options(self):
        plat = os.environ.get("LITESTREAM_VFS_PLAT_NAME")
        if plat:
            self.plat_name = plat
        super().finalize_options()

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat

    def run(self):
        bundled_library()
        super().run()


setup(version=version(), distclass=BinaryDistribution, cmdclass={"bdist_wheel": PlatformWheel})
