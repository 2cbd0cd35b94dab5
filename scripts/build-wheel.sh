#!/usr/bin/env bash
# Builds the Python wheel that bundles the library: one command from the repo.
#
#   scripts/build-wheel.sh                       # cargo build --release, wheel into dist/
#   scripts/build-wheel.sh --target TRIPLE       # a cross build (see scripts/cross-check.sh)
#   scripts/build-wheel.sh --lib PATH            # wrap an already built library
#   scripts/build-wheel.sh --plat-name TAG       # wheel platform tag (e.g. manylinux_2_17_x86_64,
#                                                # macosx_11_0_arm64, win_amd64); default: this machine's
#   scripts/build-wheel.sh --out DIR             # default: dist/
#
# The wheel is `litestream_vfs_rs-VERSION-py3-none-PLAT.whl` (VERSION from
# Cargo.toml); it installs the module `litestream_vfs` with the library as
# litestream_vfs/litestream-vfs.{so,dylib,dll}. PYTHON picks the Python that
# runs the build (default python3); it needs pip, and setuptools>=70.1 is
# fetched into an isolated build environment unless NO_BUILD_ISOLATION=1.
# The wheel itself is made by scripts/make_wheel.py.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

target="" lib="" plat="" out="$ROOT/dist"
while [ $# -gt 0 ]; do
  case $1 in
    --target) target=$2; shift 2 ;;
    --lib) lib=$2; shift 2 ;;
    --plat-name) plat=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "build-wheel: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
# Paths given relative to where we were called from.
[ -z "$lib" ] || lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$ROOT"

if [ -z "$lib" ]; then
  if [ -n "$target" ]; then
    cargo build --release --lib --target "$target"
    dir=target/$target/release
  else
    cargo build --release --lib
    dir=target/release
  fi
  for f in liblitestream_vfs.so liblitestream_vfs.dylib litestream_vfs.dll; do
    if [ -f "$dir/$f" ]; then lib=$dir/$f; break; fi
  done
  [ -n "$lib" ] || { echo "build-wheel: no library in $dir after cargo build" >&2; exit 1; }
fi
[ -f "$lib" ] || { echo "build-wheel: $lib does not exist" >&2; exit 1; }

plat_args=()
[ -z "$plat" ] || plat_args=(--plat-name "$plat")
exec "$PYTHON" scripts/make_wheel.py --lib "$lib" --out "$out" ${plat_args[@]+"${plat_args[@]}"}
