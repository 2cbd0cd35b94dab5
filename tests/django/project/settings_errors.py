"""Replica aliases that cannot work, one per mistake, for the error tests.

  LSVFS_DEFAULT_DB     the primary's path (also named by replica_dbfile)
  LSVFS_MISSING_URL    a file:// URL of a folder that does not exist
  LSVFS_EXTENSION      optional: LITESTREAM["vfs_extension_path"]
"""

import os
from pathlib import Path

from litestream_vfs.django import get_vfs_databases

SECRET_KEY = "test-only"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "litestream_vfs.django", "shop"]

LITESTREAM = {
    "vfs": {
        "replica_missing": {"replica_url": os.environ["LSVFS_MISSING_URL"], "open_timeout": "1s"},
        "replica_typo": {"replica_url": "fille:///srv/replica", "open_timeout": "1s"},
        "replica_down": {
            "replica_url": "s3://litestream/down?endpoint=http://127.0.0.1:9&region=us-east-1&force-path-style=true",
            "storage_timeout": "1s",
            "open_timeout": "1s",
        },
        "replica_dbfile": {"replica_url": Path(os.environ["LSVFS_DEFAULT_DB"]).resolve().as_uri(),
                           "open_timeout": "1s"},
    },
}
if os.environ.get("LSVFS_EXTENSION"):
    LITESTREAM["vfs_extension_path"] = os.environ["LSVFS_EXTENSION"]

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["LSVFS_DEFAULT_DB"]},
    **get_vfs_databases(),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
