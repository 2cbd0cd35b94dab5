"""Sends reads to healthy replica aliases and writes to `default`.

    DATABASE_ROUTERS = ["litestream_vfs.django.LitestreamReplicaRouter"]

Reads go to the aliases of `LITESTREAM["vfs_router"]["replicas"]` (default:
every alias of `LITESTREAM["vfs"]`; several are taken in turn, so list only
replicas of the `default` database), writes to `LITESTREAM["vfs_router"]
["write"]` (default: `default`).

A read goes to a replica only while it is healthy: readable, and its
`lag_seconds` (see `get_vfs_status`) at most its `max_lag_seconds`, the
limit `get_vfs_status` reports (the alias's own, else `LITESTREAM
["vfs_router"]["max_lag_seconds"]`, where `None` turns the check off, else
`vfs_max_lag_seconds`, else 60; see `conf.max_lag_seconds`). Health is
checked once per replica per poll interval, through a connection of its
own, not per query, and in the background (see `health`): a read never
waits for a check. It goes by the last finished check, whose lag grows with
its age; until the first check of a replica finishes, reads go to the write
alias. No healthy replica: the read goes to the write alias.

With `litestream_vfs.django.ReadYourWritesMiddleware`, a client that wrote
reads the write alias until a replica holds its write (see there).

A read also stays on the write alias:

- for a model whose class sets `litestream_replica = False` (a class
  attribute: Django refuses unknown `Meta` options); `litestream_replica =
  "alias"` pins a model to one replica instead (whatever its health: such a
  replica may hold another database, which `default` cannot stand in for);
- inside `transaction.atomic()` on the write alias (read your own writes);
- for objects related to an instance that was read from or saved to it.

Inside `time_travel(alias, when)` the router places no read on that alias
(its connection in this thread reads the past): another healthy replica,
else the write alias.

`.using("default")` on a query or `save(using=...)` overrides the router, as
always in Django. Migrations never run on a replica alias.
"""

from __future__ import annotations

import itertools
import threading

from . import conf


class LitestreamReplicaRouter:
    def __init__(self):
        self._turn = itertools.count()
        self._lock = threading.Lock()

    @staticmethod
    def read_replicas() -> list[str]:
        return conf.router_replicas()

    def _settings(self) -> tuple[list[str], str]:
        return self.read_replicas(), conf.write_alias()

    def db_for_read(self, model, **hints):
        replicas, write = self._settings()
        pinned = getattr(model, "litestream_replica", None)
        if pinned is False:
            return write
        if isinstance(pinned, str):
            return pinned
        instance = hints.get("instance")
        if instance is not None and getattr(instance._state, "db", None) == write:
            return write
        if not replicas or self._in_atomic_block(write):
            return write
        from .health import healthy
        from .middleware import current
        from .timetravel import travelling

        state = current()
        if state is not None and state.wrote:
            return write
        if len(replicas) > 1:
            with self._lock:
                start = next(self._turn) % len(replicas)
            replicas = replicas[start:] + replicas[:start]
        away = travelling()
        for alias in replicas:
            if alias in away:
                continue  # read in the past by time_travel: only `.using(alias)` goes there
            if conf.is_mirrored(alias):
                return alias  # under `manage.py test`: `default` under the replica's name
            if not healthy(alias, conf.max_lag_seconds(alias)):  # the limit get_vfs_status reports
                continue
            if state is not None and not state.replica_has_write(alias):
                continue
            return alias
        return write

    def db_for_write(self, model, **hints):
        return conf.write_alias()

    def allow_relation(self, obj1, obj2, **hints):
        replicas, write = self._settings()
        dbs = {write, *replicas}
        if obj1._state.db in dbs and obj2._state.db in dbs:
            return True
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if db in conf.replicas():
            return False
        return None

    @staticmethod
    def _in_atomic_block(alias: str) -> bool:
        from django.db import connections

        try:
            return connections[alias].in_atomic_block
        except Exception:  # noqa: BLE001 - an unknown alias is the settings' problem, not a read's
            return False
