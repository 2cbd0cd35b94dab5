#!/usr/bin/env bash
# Smoke test of the Windows x86_64 build under Wine: a small Windows SQLite
# host (tests/windows/smoke_host.c, compiled with mingw-w64 and the SQLite
# amalgamation) loads the DLL under the release archive's name
# (litestream.dll -> sqlite3_litestream_init) and reads the fixture replica
# tests/fixtures/basic-4k through the litestream VFS.
#
#   scripts/wine-smoke.sh [DLL]      # default target/x86_64-pc-windows-gnu/release/litestream_vfs.dll
#
# Needs: wine64, gcc-mingw-w64-x86-64, and sqlite3.c/sqlite3.h from
# $SQLITE_AMALGAMATION (default: the copy inside tests/node's better-sqlite3).
# Prints the query's output; exits non-zero when anything differs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
dll=${1:-$ROOT/target/x86_64-pc-windows-gnu/release/litestream_vfs.dll}
amalgamation=${SQLITE_AMALGAMATION:-$ROOT/tests/node/node_modules/better-sqlite3/deps/sqlite3}
wine=$(command -v wine64 || command -v wine || { [ -x /usr/lib/wine/wine64 ] && echo /usr/lib/wine/wine64; } || true)
[ -n "$wine" ] || { echo "wine-smoke: wine64 missing (apt-get install wine64)" >&2; exit 3; }
command -v x86_64-w64-mingw32-gcc >/dev/null || { echo "wine-smoke: x86_64-w64-mingw32-gcc missing" >&2; exit 3; }
[ -f "$amalgamation/sqlite3.c" ] || { echo "wine-smoke: no sqlite3.c in $amalgamation (set SQLITE_AMALGAMATION)" >&2; exit 3; }
[ -f "$dll" ] || { echo "wine-smoke: $dll missing: scripts/cross-check.sh x86_64-pc-windows-gnu" >&2; exit 3; }

work=${WINE_SMOKE_DIR:-$ROOT/target/wine-smoke}
mkdir -p "$work"
host=$work/smoke_host.exe
if [ ! -f "$host" ] || [ "$ROOT/tests/windows/smoke_host.c" -nt "$host" ]; then
  x86_64-w64-mingw32-gcc -O1 -DSQLITE_THREADSAFE=1 -I"$amalgamation" \
    "$ROOT/tests/windows/smoke_host.c" "$amalgamation/sqlite3.c" -o "$host"
fi
# Wine 8 (Debian 12) has no bcryptprimitives.dll, which Rust's std imports
# (ProcessPrng); Windows and Wine 9+ do. A test-only shim stands in for it.
if [ ! -f /usr/lib/x86_64-linux-gnu/wine/x86_64-windows/bcryptprimitives.dll ]; then
  x86_64-w64-mingw32-gcc -O1 -shared "$ROOT/tests/windows/bcryptprimitives_shim.c" \
    -o "$work/bcryptprimitives.dll" -ladvapi32
fi
cp "$dll" "$work/litestream.dll"
rm -rf "$work/replica"
cp -R "$ROOT/tests/fixtures/basic-4k/replica" "$work/replica"

# Wine maps the Unix root to drive Z:.
winpath="Z:${work//\//\\}"
url="file:///Z:$work/replica"
export WINEPREFIX=${WINEPREFIX:-$work/wineprefix} WINEDEBUG=-all
out=$("$wine" "$host" "$winpath\\litestream.dll" \
  "file:replica.db?vfs=litestream&mode=ro&replica_url=$url" \
  "SELECT count(*), (SELECT count(*) FROM t2), litestream_txid() FROM seed" | tr -d '\r')
echo "$out"
want=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["history"][-1]["tables"]; print("%d|%d|" % (t["seed"], t["t2"]))' \
  "$ROOT/tests/fixtures/basic-4k/manifest.json")
case $(head -n 1 <<<"$out") in
  "$want"*) echo "wine-smoke: ok" ;;
  *) echo "wine-smoke: expected $want<txid>" >&2; exit 1 ;;
esac
