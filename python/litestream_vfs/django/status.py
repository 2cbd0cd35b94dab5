"""`get_vfs_status(alias)`: what one replica alias reads, and how it is doing."""

from __future__ import annotations

import sqlite3

from . import conf

_UNREACHABLE = (
    "the replica could not be opened: storage unreachable, credentials refused, a wrong URL, "
    "or no Litestream replica there yet (the extension's message on stderr names the cause)"
)


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


def get_vfs_status(alias: str) -> dict:
    """The state of the replica behind `alias`, read through a connection of its own.

    Keys: `alias`, `replica_url` (passwords and secret parameters redacted),
    `ok`, `error` (None, or why the replica cannot be read), `txid` (16 hex
    digits), `time` (RFC 3339 time of that state), `lag_seconds` (since the
    last successful poll; -1 before the first), `pages`, `cache`
    (`bytes`, `budget`, `hits`, `misses`), `storage` (`lists`, `reads`,
    `read_bytes`, `polls`), `hydration` (`progress`, `file`) and `stats`
    (every figure of `PRAGMA litestream_stats`).

    Replicas are shared per process, so the figures are those of every
    connection to that replica here. Raises KeyError for an alias that is
    not in `LITESTREAM["vfs"]`.
    """
    options = conf.replica(alias)
    url = options["replica_url"]
    status = {
        "alias": alias,
        "replica_url": conf.redact_url(url),
        "ok": False,
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
        conf.ensure_loaded()
        conn = sqlite3.connect(conf.database_name(alias, options), uri=True, check_same_thread=False)
    except Exception as e:  # noqa: BLE001 - reported, not raised: a status page must not crash
        status["error"] = _message(e, url)
        return status
    try:
        txid, time, lag = conn.execute("SELECT litestream_txid(), litestream_time(), litestream_lag()").fetchone()
        stats = _stats(_pragma(conn, "litestream_stats"))
        status.update(
            ok=True,
            txid=txid,
            time=time,
            lag_seconds=_number(lag),
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
    if "unable to open database file" in text or "disk I/O error" in text:
        text += f" ({_UNREACHABLE})"
    return text
