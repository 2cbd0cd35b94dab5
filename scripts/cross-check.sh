#!/usr/bin/env bash
# Cross-compiles the release library for the targets this machine has
# toolchains for, and checks that each result is a shared library of the
# right kind that exports the entry points SQLite looks for.
#
#   scripts/cross-check.sh                  # aarch64-unknown-linux-gnu and x86_64-pc-windows-gnu
#   scripts/cross-check.sh TRIPLE...        # just these
#   scripts/cross-check.sh --install ...    # first: rustup target add + apt-get install the linkers
#
# Linkers (Debian packages): gcc-aarch64-linux-gnu + libc6-dev-arm64-cross,
# gcc-mingw-w64-x86-64. Output: target/TRIPLE/release/.
set -euo pipefail
cd "$(dirname "$0")/.."

install=0
if [ "${1:-}" = --install ]; then install=1; shift; fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu x86_64-pc-windows-gnu)

linker_for() {
  case $1 in
    aarch64-unknown-linux-gnu) echo "aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
    x86_64-pc-windows-gnu) echo "x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64" ;;
    *) echo "" ;;
  esac
}

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER:-x86_64-w64-mingw32-gcc}

fail=0
for t in "${targets[@]}"; do
  read -r -a parts <<<"$(linker_for "$t")"
  if [ ${#parts[@]} = 0 ]; then echo "cross-check: no linker known for $t" >&2; fail=1; continue; fi
  linker=${parts[0]}
  pkgs=("${parts[@]:1}")
  if [ $install = 1 ]; then
    rustup target add "$t"
    command -v "$linker" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"; }
  fi
  if ! rustup target list --installed | grep -qx "$t"; then
    echo "cross-check: rust target $t is not installed: rustup target add $t (or run with --install)" >&2; fail=1; continue
  fi
  if ! command -v "$linker" >/dev/null; then
    echo "cross-check: linker $linker missing: apt-get install ${pkgs[*]} (or run with --install)" >&2; fail=1; continue
  fi
  echo "== cargo build --release --target $t"
  if ! cargo build --release --lib --target "$t"; then fail=1; continue; fi
  case $t in
    *windows*) lib=target/$t/release/litestream_vfs.dll; kind='PE32\+ executable \(DLL\).*x86-64' ;;
    aarch64*linux*) lib=target/$t/release/liblitestream_vfs.so; kind='ELF 64-bit LSB shared object, ARM aarch64' ;;
  esac
  desc=$(file -b "$lib")
  echo "$lib: $desc"
  if ! grep -Eq "$kind" <<<"$desc"; then echo "cross-check: $lib is not a $kind" >&2; fail=1; continue; fi
  # The entry points SQLite derives from the file names we ship.
  case $t in
    *windows*) syms=$(x86_64-w64-mingw32-objdump -p "$lib" | sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p') ;;
    *) syms=$(aarch64-linux-gnu-objdump -T "$lib") ;;
  esac
  for sym in sqlite3_litestreamvfs_init sqlite3_litestream_init sqlite3_extension_init; do
    if grep -qw "$sym" <<<"$syms"; then echo "  exports $sym"; else echo "cross-check: $lib does not export $sym" >&2; fail=1; fi
  done
  if [[ $t == *linux* ]]; then
    extra=$(aarch64-linux-gnu-nm -D --defined-only "$lib" | awk '{print $NF}' \
      | grep -vxE 'sqlite3_(litestreamvfs|litestream|extension)_init|litestream_vfs_(clear_)?last_error' || true)
    if [ -n "$extra" ]; then echo "cross-check: $lib exports more than the entry points: $extra" >&2; fail=1; fi
  fi
done
exit $fail
