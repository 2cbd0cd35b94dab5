"""The ENGINE of the aliases that `get_vfs_databases()` makes.

Django's own SQLite backend, which already opens with ``uri=True``; the only
addition is loading the extension (once per process, under a lock) before a
connection opens. The replica URL is part of the database name, so opening
connections from many threads at once needs no shared state.
"""

from __future__ import annotations

from django.db.backends.sqlite3 import base

from .. import conf


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        conf.ensure_loaded()
        return super().get_new_connection(conn_params)
