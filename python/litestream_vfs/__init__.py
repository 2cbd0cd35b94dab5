"""The litestream-vfs SQLite extension (Rust build), packaged for Python.

Same module API as the official ``litestream-vfs`` wheel:

* ``loadable_path()`` -- the path of the bundled shared library, for any host
  that loads SQLite extensions (``sqlite3`` shell, apsw, Django, ...);
* ``load(conn)`` -- load it into a ``sqlite3`` connection; the ``litestream``
  VFS then stays registered for the whole process.

And helpers of our own:

* ``connect(replica_url, **options)`` -- open a replica read-only and return
  a ``sqlite3.Connection``; a failed open raises ``sqlite3.OperationalError``
  with the extension's reason (``unable to open database file: cannot open
  replica: replica folder /srv/replica does not exist``);
* ``last_error()`` -- the extension's message for the last replica open that
  failed in this thread (what ``connect()`` appends), or ``None``.
"""

from __future__ import annotations

import ctypes
import os
import sqlite3
import sys
import threading
import urllib.parse

__all__ = ["loadable_path", "load", "connect", "replica_uri", "last_error", "ExtensionLoadingUnavailable"]

_EXT_MAP = {
    "linux": "litestream-vfs.so",
    "darwin": "litestream-vfs.dylib",
    "win32": "litestream-vfs.dll",
}

_NO_EXTENSIONS_HELP = """\
this Python's sqlite3 module cannot load SQLite extensions: it was built \
without --enable-loadable-sqlite-extensions ({python}). Any of these works:
  - use a Python whose sqlite3 can load extensions: Debian's and Ubuntu's \
/usr/bin/python3 (python3 -m venv .venv), Homebrew's python, conda's python;
  - rebuild this Python with extension loading, e.g. with pyenv: \
PYTHON_CONFIGURE_OPTS="--enable-loadable-sqlite-extensions" pyenv install --force {version};
  - use apsw (pip install apsw), which bundles its own SQLite:
        import apsw, litestream_vfs
        conn = apsw.Connection(":memory:")
        litestream_vfs.load(conn)
        db = apsw.Connection("file:replica.db?vfs=litestream&replica_url=...",
                             flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)"""


class ExtensionLoadingUnavailable(RuntimeError):
    """The ``sqlite3`` module of this Python cannot load extensions."""


def loadable_path() -> str:
    """Return the filesystem path to the loadable VFS extension."""
    platform = sys.platform
    if platform.startswith("linux"):
        platform = "linux"
    filename = _EXT_MAP.get(platform)
    if filename is None:
        raise OSError(f"Unsupported platform: {sys.platform}")
    path = os.path.join(os.path.dirname(__file__), filename)
    if not os.path.exists(path):
        raise FileNotFoundError(f"VFS extension not found at {path}")
    return path


def load(conn) -> None:
    """Load the Litestream VFS extension into a sqlite3 (or apsw) connection.

    Loading once per process is enough: the ``litestream`` VFS outlives the
    connection that loaded it.
    """
    global _loaded
    path = loadable_path()
    _load_into(conn, path)
    _loaded = _loaded or path  # the VFS is registered for the process now


def _load_into(conn, path: str) -> None:
    if not hasattr(conn, "enable_load_extension"):
        raise ExtensionLoadingUnavailable(
            _NO_EXTENSIONS_HELP.format(python=sys.executable, version="%d.%d.%d" % sys.version_info[:3])
        )
    conn.enable_load_extension(True)
    try:
        # Without the suffix: SQLite adds the platform's own and derives the
        # entry point from the file name (all three names are exported).
        stem, suffix = os.path.splitext(path)
        conn.load_extension(stem if suffix in (".so", ".dylib", ".dll") else path)
    finally:
        conn.enable_load_extension(False)


_loaded: str | None = None
_load_lock = threading.Lock()


def _ensure_loaded(path: str | None = None) -> None:
    """Loads the library into this process once, whichever thread asks first."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        path = path or loadable_path()
        loader = sqlite3.connect(":memory:")
        try:
            _load_into(loader, path)
        finally:
            loader.close()
        _loaded = path


def _option_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "total_seconds"):  # datetime.timedelta
        return f"{value.total_seconds()}s"
    return str(value)


def replica_uri(replica_url: str | None = None, name: str = "replica.db", **options) -> str:
    """The SQLite URI that opens ``replica_url`` through the VFS, read-only.

    ``options`` are the extension's URI parameters (``poll_interval="500ms"``,
    ``cache_size="64MB"``, ...); ``None`` values are left out. Without
    ``replica_url`` the extension reads ``LITESTREAM_REPLICA_URL`` when the
    database is opened.
    """
    query = {"vfs": "litestream", "mode": "ro"}
    if replica_url is not None:
        query["replica_url"] = replica_url
    for key, value in options.items():
        if value is not None:
            query[key] = _option_value(value)
    quoted = urllib.parse.quote(name, safe="/")
    return f"file:{quoted}?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)


_lib: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL | None:
    """The loaded extension itself, for its exported C functions: dlopen of
    the path SQLite loaded returns the same library (same file), so the
    message read is the one the VFS recorded."""
    global _lib
    if _lib is None and _loaded:
        path = _loaded
        if not os.path.exists(path):  # given without its suffix, as SQLite takes it
            path += os.path.splitext(_EXT_MAP.get("linux" if sys.platform.startswith("linux") else sys.platform,
                                                  ".so"))[1]
        try:
            lib = ctypes.CDLL(path)
            lib.litestream_vfs_last_error.argtypes = [ctypes.c_char_p, ctypes.c_int]
            lib.litestream_vfs_last_error.restype = ctypes.c_int
            lib.litestream_vfs_clear_last_error.argtypes = []
            lib.litestream_vfs_clear_last_error.restype = None
        except (OSError, AttributeError):  # another build, without the functions
            return None
        _lib = lib
    return _lib


def last_error() -> str | None:
    """The extension's message for the last replica open that failed in the
    calling thread (``None`` when there is none, or the loaded library does
    not export it)."""
    lib = _library()
    if lib is None:
        return None
    buf = ctypes.create_string_buffer(4096)
    n = lib.litestream_vfs_last_error(buf, len(buf))
    return buf.value.decode("utf-8", "replace") if n > 0 else None


def clear_last_error() -> None:
    """Forgets this thread's last failed open (done before each open here)."""
    lib = _library()
    if lib is not None:
        lib.litestream_vfs_clear_last_error()


def explain_open_error(error: sqlite3.Error) -> sqlite3.Error:
    """``error`` with the extension's reason appended, as the same type, or
    ``error`` itself when the extension recorded none."""
    reason = last_error()
    if not reason or reason in str(error):
        return error
    explained = type(error)(f"{error}: {reason}")
    for attr in ("sqlite_errorcode", "sqlite_errorname"):
        if hasattr(error, attr):
            try:
                setattr(explained, attr, getattr(error, attr))
            except AttributeError:
                pass
    return explained


def connect(replica_url: str | None = None, *, name: str = "replica.db", timeout: float = 5.0,
            check_same_thread: bool = True, **options) -> sqlite3.Connection:
    """Open a Litestream replica read-only and return a ``sqlite3.Connection``.

    >>> conn = litestream_vfs.connect("file:///var/lib/replica", poll_interval="500ms")
    >>> conn.execute("SELECT count(*) FROM t").fetchone()

    ``replica_url``: ``file://``, ``s3://``, ``gs://``, ``abs://`` or
    ``sftp://`` URL; ``None`` reads ``LITESTREAM_REPLICA_URL`` at open time.
    ``name`` only names the connection (no local file is created).
    Other keyword arguments are the extension's URI parameters.
    """
    _ensure_loaded()
    uri = replica_uri(replica_url, name=name, **options)
    clear_last_error()
    try:
        return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=check_same_thread)
    except sqlite3.OperationalError as e:
        explained = explain_open_error(e)
        if explained is e:
            raise
        raise explained from e
