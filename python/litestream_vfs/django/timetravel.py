"""`time_travel(alias, when)`: read a replica alias as it was at `when`.

    from litestream_vfs.django import time_travel

    with time_travel("orders_replica", "1 hour ago") as alias:
        Order.objects.using(alias).count()

`when` is a `datetime` (naive means UTC), a `timedelta` (that long ago),
an RFC 3339 string, or any time `PRAGMA litestream_time` takes
(`"30 minutes ago"`, `"2024-01-15 10:30:00"`, Unix seconds, ...).

It sets `PRAGMA litestream_time` on this thread's connection of the alias
(Django keeps one per thread) and sets it back to `latest` when the block
ends, however it ends, so a persistent connection (`CONN_MAX_AGE`) serves
the next request at the newest state. Other threads' connections are not
touched. If the reset fails the connection is closed, so the next query
opens a new one at the newest state.

Inside the block only `.using(alias)` reads the past: the router
(`LitestreamReplicaRouter`) places this thread's other reads on another
healthy replica or on `default`, never on the travelled connection.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt

from . import conf


def time_text(when) -> str:
    """`when` as `PRAGMA litestream_time` takes it."""
    if isinstance(when, _dt.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        return when.astimezone(_dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(when, _dt.timedelta):
        return f"{max(0, int(when.total_seconds()))} seconds ago"
    if isinstance(when, _dt.date):
        return when.isoformat()
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        return str(int(when))
    if isinstance(when, str) and when.strip():
        return when.strip()
    raise TypeError(f"time_travel needs a datetime, timedelta, date or time string, not {when!r}")


#: The aliases whose connection in this thread (or task) is travelled now.
_travelling: contextvars.ContextVar[frozenset] = contextvars.ContextVar("litestream_travelling",
                                                                       default=frozenset())


def travelling() -> frozenset:
    """The replica aliases travelled by `time_travel` here, now (the router
    places no read on them)."""
    return _travelling.get()


@contextlib.contextmanager
def time_travel(alias: str, when):
    """Yields `alias`, whose connection in this thread reads the replica at `when`."""
    from django.db import connections

    conf.replica(alias)  # KeyError for an alias that is not a replica
    text = time_text(when)
    connection = connections[alias]
    if connection.in_atomic_block:
        raise RuntimeError(f"time_travel({alias!r}) inside transaction.atomic() on that alias: "
                           "a transaction reads one state; travel before it starts")
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA litestream_time = %s" % _quote(text))
    token = _travelling.set(_travelling.get() | {alias})
    try:
        yield alias
    finally:
        _travelling.reset(token)
        try:
            if connection.connection is not None:
                with connection.cursor() as cursor:
                    cursor.execute("PRAGMA litestream_time = 'latest'")
        except Exception:  # noqa: BLE001 - never leave a travelled connection behind
            connection.close()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
