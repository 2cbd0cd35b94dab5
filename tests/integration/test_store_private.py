"""The local store is private to its user (issue 22): folders 0700, files
0600 whatever the umask; a store folder or file that another account owns
or that others can write, a planted symbolic link, a planted file are each
refused with a message naming the path; an older store readable by others
is tightened; a second process of the same user still shares the store.

The readers run as a non-root account, as an application would: CI runs as
root, so a system user is made for these tests (as servers.sh makes one for
SFTP) and the children run as it through setpriv. Run as a non-root user,
the children run as that user, and the cases that need a second account
are skipped."""

import functools
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import lsvfs
from servers import unique
from test_local_store import one_shot_replica

CHILD = Path(__file__).with_name("store_child.py")
USER = "lsvfsstore"


@pytest.fixture(scope="module")
def replica():
    """A replica in a folder every account can read, large enough that
    pages are read from the store, not all loaded at open: its URL and
    digest."""
    base = Path(tempfile.mkdtemp(prefix="lsvfs-private-replica-"))
    base.chmod(0o755)
    (base / "primary").mkdir()
    want = one_shot_replica(base / "primary", base / "replica", "private")
    yield lsvfs.file_url(base / "replica"), want
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def account():
    """The account the readers run as: a system user made here when the
    suite runs as root, else `None` (the readers run as the caller)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", USER], check=True)
        return pwd.getpwnam(USER)


def uid_of(account) -> int:
    return account.pw_uid if account else os.geteuid()


@pytest.fixture
def home(account):
    """A private folder of the reader's account: its stores go in there."""
    d = Path(tempfile.mkdtemp(prefix="lsvfs-private-"))
    if account:
        os.chown(d, account.pw_uid, account.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def reader(account, home: Path, url: str, umask: int = 0o022, action: str = "digest", arg=None,
           env: dict | None = None, **params) -> subprocess.CompletedProcess:
    """One reader process as `account` under `umask`, reading `url` with
    `params`."""
    params.setdefault("poll_interval", "60s")
    uri = lsvfs.replica_uri(url, "private.db", **params)
    cmd = [sys.executable, str(CHILD), uri, action] + ([str(arg)] if arg is not None else [])
    if account:
        cmd = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups",
               "--"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, umask=umask, cwd=home,
                          env={**os.environ, "HOME": str(home), "LITESTREAM_LOG_LEVEL": "INFO", **(env or {})})


@pytest.fixture
def read(account, home, replica):
    """`reader` as the test account, in its folder, of the replica."""
    return functools.partial(reader, account, home, replica[0])


@pytest.fixture
def want(replica) -> str:
    return replica[1]


def ok(p: subprocess.CompletedProcess) -> dict:
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["stderr"] = p.stderr
    return out


def refused(p: subprocess.CompletedProcess, path: Path, why: str) -> None:
    assert p.returncode != 0, f"not refused: {p.stdout}"
    assert f"refusing the local store at {path}" in p.stderr and why in p.stderr, p.stderr


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def give_away(path: Path) -> None:
    """To another account (root's `nobody`): needs root."""
    os.lchown(path, pwd.getpwnam("nobody").pw_uid, -1)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_folders_are_0700_and_files_0600_whatever_the_umask(account, home, umask, read, want):
    cache = home / "deep" / "cache"
    out = ok(read(umask, disk_cache=cache))
    assert out["digest"] == want
    (pages,) = cache.glob("*.pages")
    for d in (home / "deep", cache):
        assert (mode(d), os.lstat(d).st_uid) == (0o700, uid_of(account)), d
    assert (mode(pages), os.lstat(pages).st_uid) == (0o600, uid_of(account))

    copy = home / "hydrated" / "copy.db"
    out = ok(read(umask, "hydrate", 60, hydration_enabled="true", hydration_path=copy))
    assert out["progress"] == 100.0 and out["digest"] == want
    assert mode(copy.parent) == 0o700
    assert mode(copy) == 0o600
    assert mode(Path(f"{copy}.fill-lock")) == 0o600
    # Nothing the store made is open to others.
    for p in [*home.rglob("*")]:
        assert mode(p) & 0o077 == 0, (p, oct(mode(p)))


def test_a_second_process_of_the_same_user_shares_the_store(account, home, read, want):
    cache = home / "cache"
    first = ok(read(disk_cache=cache))
    second = ok(read(disk_cache=cache))
    assert first["digest"] == second["digest"] == want
    assert second["after"]["store_hits"] > 0, second["after"]


def test_a_folder_others_can_write_is_refused(account, home, read):
    group = home / "group"
    group.mkdir()
    group.chmod(0o770)
    if account:
        os.chown(group, account.pw_uid, account.pw_gid)
    refused(read(disk_cache=group), group, "writable by its group or by others (mode 0770)")
    assert list(group.iterdir()) == [], "nothing was written in it"
    # Same for the folder of a hydration path.
    refused(read(hydration_enabled="true", hydration_path=group / "copy.db"), group,
            "writable by its group")


def test_a_folder_of_another_account_is_refused(account, home, read):
    if account is None:
        pytest.skip("needs root to give a folder to another account")
    # Owned by root (the suite's account), not by the reader's.
    theirs = home / "theirs"
    theirs.mkdir()
    theirs.chmod(0o755)
    refused(read(disk_cache=theirs), theirs, "owned by another account (uid 0")


def test_a_planted_symlink_or_file_is_refused(account, home, read, want):
    cache = home / "cache"
    ok(read(disk_cache=cache))
    (pages,) = cache.glob("*.pages")

    # A symbolic link where the store file was: never followed.
    target = home / "target"
    target.write_bytes(b"untouched")
    if account:
        os.chown(target, account.pw_uid, account.pw_gid)
    pages.unlink()
    pages.symlink_to(target)
    refused(read(disk_cache=cache), pages, "symbolic link")
    assert target.read_bytes() == b"untouched"
    pages.unlink()

    if account is None:
        return  # a file of another account needs root to plant
    # A file of another account in its place (root plants it here).
    pages.write_bytes(b"\0" * 8192)
    pages.chmod(0o644)
    give_away(pages)
    refused(read(disk_cache=cache), pages, "owned by another account")
    assert pages.read_bytes() == b"\0" * 8192, "the planted file was not written"
    # Once it is gone, the store is made again.
    pages.unlink()
    assert ok(read(disk_cache=cache))["digest"] == want


def test_an_older_store_readable_by_others_is_tightened(account, home, read):
    cache = home / "cache"
    ok(read(disk_cache=cache))
    (pages,) = cache.glob("*.pages")
    cache.chmod(0o755)
    pages.chmod(0o644)
    out = ok(read(disk_cache=cache))
    assert out["after"]["store_hits"] > 0, "the tightened store is used"
    assert (mode(cache), mode(pages)) == (0o700, 0o600)
    assert f"{cache} was open to other accounts (mode 0755); made it 0700" in out["stderr"], out["stderr"]
    assert f"{pages} was readable by other accounts (mode 0644); made it 0600" in out["stderr"]


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_index_folder_and_its_files_are_private_on_s3(servers, account, home, umask):  # noqa: F811
    """What an open learns of the LTX files is kept only for storage that
    versions them (not file://): on S3, `<hash>.index/` and its blobs."""
    path = unique("private")
    servers.upload_tree("s3", lsvfs.FIXTURES / "basic-4k" / "replica", path)
    cache = home / "cache"
    out = ok(reader(account, home, servers.url("s3", path), umask, env=servers.reader_env("s3"),
                    disk_cache=cache))
    assert out["after"]["index_writes"] > 0, out["after"]
    (index,) = cache.glob("*.index")
    blobs = list(index.iterdir())
    assert blobs and mode(index) == 0o700
    assert {mode(b) for b in blobs} == {0o600}, [(b.name, oct(mode(b))) for b in blobs]
    assert {os.lstat(b).st_uid for b in blobs} == {uid_of(account)}
    # A second process reads them back (no temporary files left behind).
    again = ok(reader(account, home, servers.url("s3", path), umask, env=servers.reader_env("s3"),
                      disk_cache=cache))
    assert again["after"]["index_hits"] > 0, again["after"]
    assert not [b for b in index.iterdir() if b.name.startswith(".")]
