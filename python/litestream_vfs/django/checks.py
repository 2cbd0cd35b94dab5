"""System checks for `manage.py check`.

Always: the extension loads (E001, naming `LITESTREAM["vfs_extension_path"]`
when set), every alias's replica URL parses (E002), a `file://` URL does not
name a file (E003: the SQLite database itself is the usual mistake), its
folder exists (W004), and each replica's `primary` names a database
(E005).

With `manage.py check --database ALIAS` (Django's switch for checks that
connect): each named replica alias is opened, and a failure is reported
with the extension's reason (E006).
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from django.core import checks

SCHEMES = ("file", "s3", "gs", "gcs", "abs", "sftp", "webdav", "webdavs", "nats", "oss")
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _replicas():
    from . import conf

    try:
        return conf.replicas(), None
    except Exception as e:  # noqa: BLE001 - ImproperlyConfigured, reported as a check
        return {}, checks.Error(str(e), id="litestream_vfs.E002")


def url_problem(url: str) -> str | None:
    """Why the extension would refuse `url`, or None."""
    if not url.strip():
        return "the replica URL is empty"
    if "://" not in url:
        return None  # a local path
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        return f"cannot parse replica URL: {e}"
    if parts.scheme.lower() not in SCHEMES:
        return (f"unsupported replica URL scheme {parts.scheme!r}: use file://, s3://, gs://, abs://, "
                "sftp://, webdav://, webdavs://, nats:// or oss://")
    if parts.scheme.lower() != "file" and not parts.hostname:
        return "the replica URL names no bucket or host"
    if parts.scheme.lower() == "file" and parts.netloc not in ("", "localhost"):
        return f"a file:// URL names a local path (file:///path): {parts.netloc!r} is taken as a host"
    return None


def file_path(url: str) -> Path | None:
    if "://" not in url:
        return Path(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "file":
        return None
    return Path(urllib.parse.unquote(parts.path))


def folder_problem(path: Path) -> tuple[str, str] | None:
    """(check id, message) when `path` is not a replica folder."""
    if path.is_file():
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError:
            head = b""
        if head == _SQLITE_MAGIC:
            return ("E003", f"{path} is a SQLite database file: this is the database, point at "
                            "Litestream's replica folder (the `path` of the replica in litestream.yml)")
        return ("E003", f"{path} is a file, not a replica folder: point at the folder Litestream "
                        "replicates into (the `path` of the replica in litestream.yml)")
    if not path.exists():
        return ("W004", f"replica folder {path} does not exist (yet): Litestream creates it with its "
                        "first upload; is `litestream replicate` running, and is this its replica `path`?")
    return None


def check_replicas(app_configs=None, **kwargs):
    from django.conf import settings

    from . import conf

    found, broken = _replicas()
    if broken:
        return [broken]
    if not found:
        return []
    errors = []
    try:
        conf.ensure_loaded()
    except Exception as e:  # noqa: BLE001
        errors.append(checks.Error(
            str(e), id="litestream_vfs.E001",
            hint='Set LITESTREAM["vfs_extension_path"] to the built library (target/release/'
                 'liblitestream_vfs.so), or install the litestream-vfs wheel that bundles it.'))
    for alias, options in found.items():
        url = options["replica_url"]
        shown = conf.redact_url(url)
        problem = url_problem(url)
        if problem:
            errors.append(checks.Error(f"{alias}: {problem} ({shown})", obj=alias, id="litestream_vfs.E002"))
            continue
        path = file_path(url)
        if path is not None:
            found_problem = folder_problem(path)
            if found_problem:
                code, message = found_problem
                kind = checks.Error if code.startswith("E") else checks.Warning
                errors.append(kind(f"{alias}: {message}", obj=alias, id=f"litestream_vfs.{code}"))
        primary = conf.primary_alias(alias)
        if primary and primary not in settings.DATABASES:
            errors.append(checks.Error(
                f'{alias}: its primary "{primary}" is not in DATABASES', obj=alias, id="litestream_vfs.E005",
                hint='Set the replica\'s "primary" (or LITESTREAM["vfs_primary"]) to the alias of the '
                     'database Litestream replicates, or None when it is not on this host.'))
    return errors


def check_open(app_configs=None, databases=None, **kwargs):
    """`manage.py check --database ALIAS`: opens each named replica alias."""
    from . import conf

    found, broken = _replicas()
    if broken or not databases:
        return []
    errors = []
    for alias in databases:
        if alias not in found or conf.is_mirrored(alias):
            continue  # under `manage.py test` the alias is `default`'s mirror
        try:
            conn = conf.open_replica(alias)
        except Exception as e:  # noqa: BLE001
            message = f"{type(e).__name__}: {e}".replace(found[alias]["replica_url"],
                                                          conf.redact_url(found[alias]["replica_url"]))
            errors.append(checks.Error(f"{alias}: {message}", obj=alias, id="litestream_vfs.E006"))
        else:
            conn.close()
    return errors


def register() -> None:
    checks.register(check_replicas, "litestream_vfs")
    checks.register(check_open, checks.Tags.database)
