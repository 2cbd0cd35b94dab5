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
host_run() { "$wine" "$host" "$winpath\\litestream.dll" "$@" | tr -d '\r'; }
rows="SELECT count(*), (SELECT count(*) FROM t2), litestream_txid() FROM seed"
out=$(host_run "file:replica.db?vfs=litestream&mode=ro&replica_url=$url" "$rows")
echo "$out"
want=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["history"][-1]["tables"]; print("%d|%d|" % (t["seed"], t["t2"]))' \
  "$ROOT/tests/fixtures/basic-4k/manifest.json")
case $(head -n 1 <<<"$out") in
  "$want"*) echo "wine-smoke: ok" ;;
  *) echo "wine-smoke: expected $want<txid>" >&2; exit 1 ;;
esac

# The local store on Windows (disk tier, then hydration): a second process
# reads what the first one stored. The fixture is page-64k: 19 pages of
# 64 KiB, more than the smallest memory cache (cache_size=1MiB) holds, so
# pages leave the memory cache and are read again from the store (a
# database that fits in memory never asks it). Each process reads every
# page (integrity_check walks every b-tree) and every row; the second one's
# rows match the first's, and its reads come from the store (store_hits).
rm -rf "$work/replica64"
cp -R "$ROOT/tests/fixtures/page-64k/replica" "$work/replica64"
url64="file:///Z:$work/replica64"
want=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["history"][-1]["tables"]; print("%d|" % t["seed"])' \
  "$ROOT/tests/fixtures/page-64k/manifest.json")
every=("PRAGMA integrity_check" "SELECT * FROM seed" "SELECT count(*), litestream_txid() FROM seed")
# `stat NAME STATS` prints the counter NAME of a litestream_stats output.
stat() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n 1; }
two_processes() {  # LABEL URI [--until TEXT SQL]: runs two processes, checks the second
  local label=$1 uri=$2; shift 2
  local one two stats1 stats2 hits
  one=$(host_run "$uri" "${every[@]}" "$@" "PRAGMA litestream_stats")
  two=$(host_run "$uri" "${every[@]}" "$@" "PRAGMA litestream_stats")
  stats1=$(grep '^lists=' <<<"$one" || true)
  stats2=$(grep '^lists=' <<<"$two" || true)
  echo "$label process 1: $(grep -Eo '(^| )(reads|store_[a-z_]*)=[0-9]*' <<<"$stats1" | tr -d '\n')"
  echo "$label process 2: $(grep -Eo '(^| )(reads|store_[a-z_]*)=[0-9]*' <<<"$stats2" | tr -d '\n')"
  grep -qx ok <<<"$one" || { echo "wine-smoke: $label: integrity_check failed" >&2; exit 1; }
  grep -qx "${want}[0-9a-f]*" <<<"$one" || { echo "wine-smoke: $label: expected $want<txid>" >&2; exit 1; }
  hits=$(stat store_hits "$stats2")
  if [ -z "$hits" ]; then
    echo "wine-smoke: $label: the local store is not in use (no store_ counters; see the warning above)" >&2; exit 1
  fi
  if [ "$hits" -eq 0 ]; then
    echo "wine-smoke: $label: the second process had no store hits" >&2; exit 1
  fi
  # The rows are the same (the stats lines differ: they count).
  if ! diff <(grep -v '^lists=' <<<"$one") <(grep -v '^lists=' <<<"$two") >/dev/null; then
    echo "wine-smoke: $label: the second process read other rows than the first" >&2; exit 1
  fi
  echo "wine-smoke: $label ok: $(grep -cv '^lists=' <<<"$two") rows alike, second process store_hits=$hits"
}
rm -rf "$work/cache" "$work/hydrated.db" "$work/hydrated.db.index" "$work/hydrated.db.fill-lock"
two_processes disk-tier "file:replica.db?vfs=litestream&mode=ro&replica_url=$url64&cache_size=1MiB&disk_cache=$winpath\\cache"
[ -n "$(ls "$work/cache"/*.pages 2>/dev/null)" ] || { echo "wine-smoke: no store file in $work/cache" >&2; exit 1; }
two_processes hydration \
  "file:replica.db?vfs=litestream&mode=ro&replica_url=$url64&cache_size=1MiB&hydration_enabled=true&hydration_path=$winpath\\hydrated.db" \
  --until 100.0 "PRAGMA litestream_hydration_progress"
[ -f "$work/hydrated.db" ] || { echo "wine-smoke: no hydrated copy at $work/hydrated.db" >&2; exit 1; }
# Two processes at once on a new disk tier: they contend for its write lock
# (LockFileEx on Windows, where a read that meets the other's write is a
# miss served from storage); both read every page and the same rows.
rm -rf "$work/cache2"
uri2="file:replica.db?vfs=litestream&mode=ro&replica_url=$url64&cache_size=1MiB&disk_cache=$winpath\\cache2"
host_run "$uri2" "${every[@]}" "PRAGMA litestream_stats" >"$work/concurrent-a.out" &
a=$!
host_run "$uri2" "${every[@]}" "PRAGMA litestream_stats" >"$work/concurrent-b.out"
wait "$a"
for f in a b; do
  echo "concurrent process $f: $(grep '^lists=' "$work/concurrent-$f.out" | grep -Eo '(^| )(reads|store_[a-z_]*)=[0-9]*' | tr -d '\n')"
  grep -qx ok "$work/concurrent-$f.out" || { echo "wine-smoke: concurrent process $f: integrity_check failed" >&2; exit 1; }
done
if ! diff <(grep -v '^lists=' "$work/concurrent-a.out") <(grep -v '^lists=' "$work/concurrent-b.out") >/dev/null; then
  echo "wine-smoke: two concurrent processes read different rows" >&2; exit 1
fi
grep -qx "${want}[0-9a-f]*" "$work/concurrent-a.out" || { echo "wine-smoke: concurrent: expected $want<txid>" >&2; exit 1; }
echo "wine-smoke: store ok"
