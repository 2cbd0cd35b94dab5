"""Sends reads to the replica aliases and writes to `default`.

    DATABASE_ROUTERS = ["litestream_vfs.django.LitestreamReplicaRouter"]

Reads go to the aliases of `LITESTREAM["vfs_router"]["replicas"]` (default:
every alias of `LITESTREAM["vfs"]`; several are taken in turn, so list only
replicas of the `default` database), writes to `LITESTREAM["vfs_router"]
["write"]` (default: `default`). A read stays on the write alias:

- for a model whose class sets `litestream_replica = False` (a class
  attribute: Django refuses unknown `Meta` options); `litestream_replica =
  "alias"` pins a model to one replica instead;
- inside `transaction.atomic()` on the write alias (read your own writes);
- for objects related to an instance that was read from or saved to it.

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
    def _settings() -> tuple[list[str], str]:
        router = conf.user_settings().get("vfs_router", {}) or {}
        replicas = list(router.get("replicas") or conf.replicas())
        return replicas, router.get("write", "default")

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
        if len(replicas) == 1:
            return replicas[0]
        with self._lock:
            return replicas[next(self._turn) % len(replicas)]

    def db_for_write(self, model, **hints):
        return self._settings()[1]

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
