"""Storage faults on a real S3 server (s3s-fs), injected by a proxy in front
of it: outages, slowness, 5xx and throttling, resets, truncated bodies. The
extension must answer each with a retry or a clear SQLite error in bounded
time, never a hang, a crash or wrong rows, and recover without reopening."""

import os
import sqlite3
import time
import urllib.parse

import pytest

import lsvfs
from faultproxy import FaultProxy
from servers import unique
from test_replicate import fill

ROWS = 20_000


@pytest.fixture(scope="module")
def s3_replica(servers, tmp_path_factory):  # noqa: F811
    """A replica with a multi-MiB snapshot (read frame by frame) on S3."""
    tmp = tmp_path_factory.mktemp("faults")
    db, local = tmp / "primary.db", tmp / "replica"
    primary = lsvfs.primary(db)
    fill(primary, ROWS, 300)
    expected = lsvfs.digest(primary)
    with lsvfs.Litestream(lsvfs.file_replica_config(db, local), tmp):
        lsvfs.wait_replica_matches(lsvfs.file_url(local), expected, timeout=90, name="faults-src.db").close()
    path = unique("faults")
    servers.upload_tree("s3", local, path)
    os.environ.update(servers.reader_env("s3"))
    return servers, path, expected


@pytest.fixture
def proxied(s3_replica):
    servers, path, expected = s3_replica
    port = int(urllib.parse.urlsplit(servers.env["LSVFS_S3_ENDPOINT"]).port)
    proxy = FaultProxy(port).start()
    url = (f"s3://{servers.bucket}/{path}?endpoint=http://127.0.0.1:{proxy.port}"
           "&region=us-east-1&force-path-style=true")
    yield proxy, url, expected
    proxy.stop()


def connect(url, name, **params):
    params.setdefault("storage_timeout", "2s")
    params.setdefault("verify", "fetched")
    c = lsvfs.connect(url, name=name, **params)
    c.isolation_level = None
    return c


def scan(c):
    return c.execute("SELECT count(*), sum(length(data)) FROM items").fetchone()


def test_server_down_mid_query_then_back(proxied):
    proxy, url, expected = proxied
    c = connect(url, "down.db")
    assert c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    proxy.set("down")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        scan(c)
    took = time.monotonic() - started
    assert took < 15, f"the error took {took:.1f}s with storage_timeout=2s"
    proxy.set("pass")
    # The same connection works again, without reopening.
    assert lsvfs.digest(c) == expected


def test_slow_server_times_out(proxied):
    proxy, url, _ = proxied
    c = connect(url, "slow.db")
    c.execute("SELECT count(*) FROM sqlite_master").fetchone()
    proxy.set("delay:10000")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError):
        scan(c)
    assert time.monotonic() - started < 15
    proxy.set("pass")
    assert scan(c)[0] == ROWS


@pytest.mark.parametrize("fault", ["status:503:2", "status:500:2", "status:429:2", "reset:2", "truncate:2"])
def test_transient_faults_are_retried(proxied, fault):
    proxy, url, expected = proxied
    c = connect(url, f"retry-{fault.replace(':', '-')}.db", storage_timeout="10s")
    c.execute("SELECT count(*) FROM sqlite_master").fetchone()
    before = proxy.requests
    proxy.set(fault)
    assert lsvfs.digest(c) == expected
    assert proxy.requests > before
    assert proxy.remaining == 0, "the fault was never hit"


def test_faults_at_open_are_clear_errors(proxied):
    proxy, url, _ = proxied
    proxy.set("down")
    started = time.monotonic()
    r = lsvfs.shell(f".open file:x.db?vfs=litestream&replica_url={urllib.parse.quote(url, safe='')}"
                    "&storage_timeout=1s", "SELECT 1;", env={"LITESTREAM_REPLICA_URL": ""})
    assert time.monotonic() - started < 30
    assert "unable to open database" in r.stderr
    # Our message, not the shell's line that repeats the s3:// URL.
    said = [line for line in r.stderr.splitlines() if 'unable to open database "' not in line]
    assert any("s3 storage" in line for line in said), r.stderr


def test_poller_survives_an_outage(proxied):
    proxy, url, expected = proxied
    c = connect(url, "poll.db", poll_interval="100ms")
    assert c.execute("SELECT litestream_lag()").fetchone()[0] >= 0
    proxy.set("down")
    lsvfs.wait_for(lambda: c.execute("SELECT litestream_lag()").fetchone()[0] >= 2, 30, what="lag to grow")
    proxy.set("pass")
    lsvfs.wait_for(lambda: c.execute("SELECT litestream_lag()").fetchone()[0] == 0, 30, what="polling to resume")
    assert lsvfs.digest(c) == expected
