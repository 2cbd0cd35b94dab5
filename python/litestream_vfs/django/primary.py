"""Where the primary is, read from files on this host: its WAL position, and
what `litestream replicate` has captured of it.

- The primary's position: the WAL-index header at the start of the `-shm`
  file (salts and `mxFrame`, the last committed frame; both copies must
  agree), else the `-wal` header and size. A position is the WAL's salts and
  the byte offset just past its last commit.
- Litestream's state beside the primary, `.NAME-litestream/ltx/0/*.ltx`:
  each level-0 file's header names its TXIDs, when Litestream wrote it, and
  the WAL offset, size and salts it was read from. The first such file whose
  WAL range (same salts) reaches a position is the TXID that holds every
  commit up to it.

Nothing here writes to the primary or to Litestream's folder.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

WAL_HEADER = 32
FRAME_HEADER = 24
LTX_HEADER = 100


@dataclass(frozen=True)
class WalPosition:
    """Just past the last commit in the WAL of a given generation (salts)."""

    salt1: int
    salt2: int
    offset: int

    def encode(self) -> str:
        return f"{self.salt1:08x}{self.salt2:08x}:{self.offset}"

    @classmethod
    def decode(cls, text: str) -> "WalPosition | None":
        try:
            salts, offset = text.split(":")
            return cls(int(salts[:8], 16), int(salts[8:16], 16), int(offset))
        except (ValueError, AttributeError):
            return None


@dataclass(frozen=True)
class LtxHeader:
    min_txid: int
    max_txid: int
    timestamp_ms: int
    wal_offset: int
    wal_size: int
    salt1: int
    salt2: int

    @property
    def wal_end(self) -> int:
        return self.wal_offset + self.wal_size

    def same_wal(self, pos: WalPosition) -> bool:
        return (self.salt1, self.salt2) == (pos.salt1, pos.salt2)


def _page_size(raw: int) -> int:
    return 65536 if raw == 1 else raw


def _shm_position(db: Path) -> WalPosition | None:
    """From the WAL-index header (native byte order, two copies that agree)."""
    try:
        with open(f"{db}-shm", "rb") as f:
            head = f.read(96)
    except OSError:
        return None
    if len(head) < 96 or head[:48] != head[48:96]:
        return None
    order = "<" if struct.unpack("<I", head[:4])[0] == 3007000 else ">"
    version, _, _, is_init, _, sz_page, mx_frame = struct.unpack(order + "IIIBBHI", head[:20])
    if version != 3007000 or not is_init:
        return None
    page = _page_size(sz_page)
    salts = head[32:40]  # copied byte for byte from the WAL header
    salt1, salt2 = struct.unpack(">II", salts)
    offset = WAL_HEADER + mx_frame * (FRAME_HEADER + page) if mx_frame else 0
    return WalPosition(salt1, salt2, offset)


def _wal_position(db: Path, hint: WalPosition | None = None) -> WalPosition | None:
    """From the `-wal` file: its header's salts, then the frame headers from
    `hint` (when it is of this WAL) or the first frame on, up to the last
    commit frame of that WAL (same salts; frames of an older WAL beyond it
    carry other salts)."""
    try:
        with open(f"{db}-wal", "rb") as f:
            head = f.read(WAL_HEADER)
            if len(head) < WAL_HEADER:
                return WalPosition(0, 0, 0)
            page = _page_size(struct.unpack(">I", head[8:12])[0])
            salts = head[16:24]
            salt1, salt2 = struct.unpack(">II", salts)
            frame = FRAME_HEADER + page
            offset, end = WAL_HEADER, 0
            if (hint is not None and (hint.salt1, hint.salt2) == (salt1, salt2)
                    and hint.offset > WAL_HEADER and (hint.offset - WAL_HEADER) % frame == 0):
                offset = end = hint.offset
            while True:
                f.seek(offset)
                header = f.read(FRAME_HEADER)
                if len(header) < FRAME_HEADER or header[8:16] != salts:
                    break
                offset += frame
                if struct.unpack(">I", header[4:8])[0]:  # a commit frame
                    end = offset
    except OSError:
        return None
    return WalPosition(salt1, salt2, end)


def wal_position(db: Path, hint: WalPosition | None = None) -> WalPosition | None:
    """The primary's position now; None when it has no WAL (not in WAL mode,
    or no connection open). `hint`: a position known to end a commit, where
    a scan of the `-wal` file may start if it is of the current WAL."""
    for _ in range(3):
        pos = _shm_position(db)
        if pos is not None:
            return pos
    return _wal_position(db, hint)


def wal_mtime(db: Path) -> float | None:
    try:
        return os.stat(f"{db}-wal").st_mtime
    except OSError:
        return None


def state_dir(db: Path) -> Path:
    """Litestream's folder beside the primary: `.NAME-litestream`."""
    return db.parent / f".{db.name}-litestream"


_headers: dict[Path, LtxHeader] = {}
_headers_lock = threading.Lock()


def read_header(path: Path) -> LtxHeader | None:
    """An LTX file's header (files never change once written: cached)."""
    with _headers_lock:
        found = _headers.get(path)
    if found is not None:
        return found
    try:
        with open(path, "rb") as f:
            head = f.read(LTX_HEADER)
    except OSError:
        return None
    if len(head) < LTX_HEADER or head[:4] != b"LTX1":
        return None
    min_txid, max_txid, ts, _, wal_offset, wal_size, salt1, salt2 = struct.unpack(">QQQQQQII", head[16:72])
    header = LtxHeader(min_txid, max_txid, ts, wal_offset, wal_size, salt1, salt2)
    with _headers_lock:
        if len(_headers) > 4096:
            _headers.clear()
        _headers[path] = header
    return header


def level0(db: Path) -> list[LtxHeader]:
    """Litestream's local level-0 files, by TXID (empty when there is no state)."""
    folder = state_dir(db) / "ltx" / "0"
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".ltx"))
    except OSError:
        return []
    out = []
    for name in names:
        header = read_header(folder / name)
        if header is not None:
            out.append(header)
    out.sort(key=lambda h: h.max_txid)
    return out


def _later_wal(a: LtxHeader, pos: WalPosition) -> bool:
    """Whether `a` was read from a WAL generation after `pos`'s (SQLite adds
    one to salt 1 at each WAL restart)."""
    return 0 < ((a.salt1 - pos.salt1) & 0xFFFFFFFF) < 0x80000000


def covering_txid(files: list[LtxHeader], pos: WalPosition) -> int | None:
    """The first TXID whose state holds every commit up to `pos`, or None
    when Litestream has not captured it (yet)."""
    for h in files:
        if h.same_wal(pos) and h.wal_end >= pos.offset:
            return h.max_txid
        if _later_wal(h, pos):
            # Litestream moved to a later WAL only after capturing this one
            # (or snapshotting the database, which holds it too).
            return h.max_txid
    if pos.offset == 0 and files:
        return files[-1].max_txid
    return None


@dataclass
class Pending:
    """How far the replica is behind the primary here."""

    #: Seconds the oldest commit the replica lacks has been waiting (0.0: none).
    seconds: float
    #: The primary's TXID that Litestream captured last (None: no local state).
    captured_txid: int | None
    #: Whether the primary has commits Litestream has not captured yet.
    uncaptured: bool
    #: Why nothing could be said, when so.
    note: str | None = None


_observed_lock = threading.Lock()


def _observations_file() -> Path | None:
    """`litestream-vfs-UID/uncaptured.json` in the temp folder, in a folder of
    our own (0700, ours, not a symlink, nobody else can write); None when
    that cannot be had: sightings are then not kept across processes."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"litestream-vfs-{uid if uid is not None else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(folder)
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022 or (uid is not None and st.st_uid != uid):
        return None
    return folder / "uncaptured.json"


def _load_observations(path: Path | None) -> dict:
    """The sightings file, read as untrusted input (no symlinks followed)."""
    if path is None:
        return {}
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "r") as f:
            seen = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return {}
    return seen if isinstance(seen, dict) else {}


def _entry(seen: dict, db: Path, key: str) -> float | None:
    entry = seen.get(str(db))
    if isinstance(entry, list) and len(entry) == 2 and entry[0] == key and isinstance(entry[1], (int, float)):
        return float(entry[1])
    return None


def _store_observations(path: Path | None, seen: dict) -> None:
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(seen))
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _recorded(db: Path, key: str) -> float | None:
    """When commits past Litestream's capture point `key` were first seen,
    if they were and Litestream has captured nothing since."""
    with _observed_lock:
        return _entry(_load_observations(_observations_file()), db, key)


def _observe(db: Path, key: str, mtime: float, floor: float) -> float:
    """The earliest time the commits past Litestream's capture point `key`
    can be said to have existed: the WAL's (or database's) mtime when first
    seen past that point, kept in a small file in the temp folder so that
    separate processes (health checks) and later checks agree, even once a
    checkpoint has emptied the WAL. Never before `floor`."""
    path = _observations_file()
    with _observed_lock:
        seen = _load_observations(path)
        found = _entry(seen, db, key)
        if found is not None:
            since = min(found, mtime)
        else:
            since = mtime
            if len(seen) >= 256:
                seen = {}
            seen[str(db)] = [key, since]
            _store_observations(path, seen)
    return max(since, floor)


def pending(db: Path, replica_txid: int, now: float | None = None) -> Pending:
    """How long the oldest commit of `db` that a replica at `replica_txid`
    lacks has been waiting.

    - Litestream captured it (a local level-0 file past `replica_txid`): since
      that file's timestamp (Litestream writes it within its monitor interval
      of the commit), however long the upload or the replica's poll takes.
    - Litestream has not captured it (the WAL goes past the newest local
      file): at least since the WAL's modification time when that was first
      seen, so that it grows with wall time while `litestream replicate` is
      stopped, even when writes go on, and after the last connection's
      checkpoint has emptied the WAL into the database file (the first
      sighting is kept until Litestream captures something new). With no
      WAL and nothing seen before, a database file written after
      Litestream's newest file says the same (since its mtime).
    """
    now = time.time() if now is None else now
    files = level0(db)
    if not files:
        return Pending(0.0, None, False, f"no Litestream state at {state_dir(db)}")
    newest = files[-1]
    if replica_txid > newest.max_txid:
        return Pending(0.0, newest.max_txid, False,
                       f"the replica (TXID {replica_txid:x}) is ahead of Litestream's state at {state_dir(db)} "
                       f"(TXID {newest.max_txid:x}): is it a replica of this database?")
    waiting = 0.0
    ahead = [h for h in files if h.max_txid > replica_txid]
    if ahead:
        waiting = max(waiting, now - ahead[0].timestamp_ms / 1000)
    pos = wal_position(db, WalPosition(newest.salt1, newest.salt2, newest.wal_end))
    floor = newest.timestamp_ms / 1000
    key = f"{newest.max_txid:x}:{newest.salt1:08x}{newest.salt2:08x}:{newest.wal_end}"
    since = None
    if pos and pos.offset and not (newest.same_wal(pos) and newest.wal_end >= pos.offset):
        # The WAL goes past Litestream's newest file.
        since = _observe(db, key, wal_mtime(db) or now, floor)
    elif pos is None or pos.offset == 0:
        # The WAL is gone or empty. Commits seen past the capture point
        # before, with nothing captured since: a checkpoint moved them into
        # the database file, they are still not in the replica. (A WAL that
        # shows everything captured is believed over such a record.)
        since = _recorded(db, key)
        if since is None and pos is None:
            # No WAL at all: no connection is open, so neither is
            # Litestream (it keeps one). A database written after its
            # newest file holds commits it never saw.
            try:
                mtime = os.stat(db).st_mtime
            except OSError:
                mtime = None
            if mtime is not None and mtime > floor + 1.0:
                since = _observe(db, key, mtime, floor)
    uncaptured = since is not None
    if uncaptured:
        waiting = max(waiting, now - since)
    return Pending(max(0.0, waiting), newest.max_txid, uncaptured)
