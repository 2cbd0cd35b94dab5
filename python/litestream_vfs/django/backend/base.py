"""The ENGINE of the aliases that `get_vfs_databases()` makes.

Django's own SQLite backend, which already opens with ``uri=True``; the
additions: loading the extension (once per process, under a lock) before a
connection opens, and, when an open fails, the extension's reason in the
exception (``unable to open database file: cannot open replica: ...``)
instead of SQLite's bare message. The replica URL is part of the database
name, so opening connections from many threads at once needs no shared
state.
"""

from __future__ import annotations

import sqlite3

from django.db.backends.sqlite3 import base

import litestream_vfs

from .. import conf


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        conf.ensure_loaded()
        litestream_vfs.clear_last_error()
        try:
            return super().get_new_connection(conn_params)
        except sqlite3.OperationalError as e:
            explained = litestream_vfs.explain_open_error(e)
            if explained is e:
                raise
            raise explained from e
