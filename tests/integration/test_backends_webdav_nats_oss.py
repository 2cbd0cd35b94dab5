"""Replicas on WebDAV (rclone serve webdav) and NATS JetStream (nats-server),
written by the real `litestream replicate` and read through the extension;
OSS URL forms against s3s-fs laid out as Litestream's oss client writes
(S3's layout: Litestream's own oss:// client cannot reach a local server).
The servers come from tests/harness/servers.sh: started here if they are
not running, never skipped."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import threading
import time
import uuid

import pytest

import lsvfs
import servers as srv
from servers import unique
from faultproxy import FaultProxy
from test_backends import PROBE, assert_refused, closed_port, config_for, fill, folder_replica, probe

MORE = srv.MORE_BACKENDS


def replica_path(servers, backend: str, prefix: str) -> str:
    path = unique(prefix)
    if backend == "nats":
        servers.nats_bucket(path)
    return path


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------- real litestream
@pytest.mark.parametrize("backend", MORE)
def test_litestream_writes_we_read_follow_and_travel(servers, backend, tmp_path):
    path = replica_path(servers, backend, f"live-{backend}")
    db = tmp_path / "primary.db"
    primary = lsvfs.primary(db)
    fill(primary, 200)
    cfg = config_for(db, servers.litestream_replica(backend, path))
    with lsvfs.Litestream(cfg, tmp_path, env=servers.litestream_env(backend)) as ls, \
            lsvfs.env(**servers.reader_env(backend)):
        url = servers.url(backend, path)
        try:
            conn = lsvfs.wait_replica_matches(url, lsvfs.digest(primary), timeout=60)
            first = lsvfs.digest(primary)
            # A moment after the first state was replicated and before the
            # next write: time travel lands there.
            time.sleep(1.0)
            between = int(time.time() * 1000)
            time.sleep(1.0)
            # It follows: new writes show up in a later transaction.
            fill(primary, 150, start=1000)
            lsvfs.wait_for(lambda: lsvfs.digest(conn) == lsvfs.digest(primary), 60,
                           what=f"{backend} replica to follow the primary")
            assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (350,)

            past = lsvfs.connect(url, name="past.db")
            past.isolation_level = None
            assert past.execute("SELECT litestream_set_time(?)", (iso(between),)).fetchone() == (None,)
            assert lsvfs.digest(past) == first
            assert past.execute("SELECT count(*) FROM t").fetchone() == (200,)
            past.execute("PRAGMA litestream_time = 'LATEST'")
            assert lsvfs.digest(past) == lsvfs.digest(primary)
        except Exception:
            print(ls.output()[-3000:], file=sys.stderr)
            raise


@pytest.mark.parametrize("backend", MORE)
def test_a_restart_on_the_disk_tier_sends_only_the_listing(servers, backend, tmp_path):
    """WebDAV lists ETags and NATS nuids: a second process on the same disk
    tier finds every file's header and index on disk."""
    from test_local_store import run_child

    path = replica_path(servers, backend, f"restart-{backend}")
    db = tmp_path / "primary.db"
    primary = lsvfs.primary(db)
    fill(primary, 3000)
    cfg = config_for(db, servers.litestream_replica(backend, path))
    with lsvfs.Litestream(cfg, tmp_path, env=servers.litestream_env(backend)), \
            lsvfs.env(**servers.reader_env(backend)):
        url = servers.url(backend, path)
        lsvfs.wait_replica_matches(url, lsvfs.digest(primary), timeout=60).close()
    u = lsvfs.replica_uri(url, "restart.db", disk_cache=tmp_path / "cache", poll_interval="60s")
    env = servers.reader_env(backend)
    first = run_child(u, "digest", env=env)
    again = run_child(u, "digest", env=env)
    assert first["digest"] == again["digest"] == lsvfs.digest(primary)
    assert first["open"]["reads"] > 0 and first["open"]["index_hits"] == 0, first["open"]
    assert again["after"]["reads"] == 0 and again["open"]["index_hits"] > 0, again["after"]


def test_webdav_same_bytes_as_file_replica(servers, tmp_path):
    _, local, conn = folder_replica(tmp_path, 300)
    want = (lsvfs.digest(conn), conn.execute("SELECT litestream_txid()").fetchone())
    path = unique("same")
    assert servers.upload_tree("webdav", local, path) > 0
    c = lsvfs.connect(servers.url("webdav", path))
    assert (lsvfs.digest(c), c.execute("SELECT litestream_txid()").fetchone()) == want


def big_primary(db, rows: int = 4000):
    """A primary of several MiB: its snapshot is past the size read whole."""
    primary = lsvfs.primary(db)
    primary.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT, blob BLOB)")
    primary.execute("BEGIN")
    for i in range(rows):
        primary.execute("INSERT INTO t VALUES (?, ?, randomblob(1500))", (i, f"row {i}"))
    primary.execute("COMMIT")
    return primary


def big_replica(tmp_path):
    """A file:// replica of `big_primary`."""
    db = tmp_path / "big.db"
    local = tmp_path / "big-replica"
    primary = big_primary(db)
    with lsvfs.Litestream(lsvfs.file_replica_config(db, local), tmp_path):
        lsvfs.wait_replica_matches(lsvfs.file_url(local), lsvfs.digest(primary), timeout=90)
    return primary, local


def test_webdav_reads_ranges_not_whole_files(servers, tmp_path):
    primary, local = big_replica(tmp_path)
    total = sum(p.stat().st_size for p in (local / "ltx").rglob("*.ltx"))
    assert total > 4 * 1024 * 1024, total
    path = unique("ranges")
    servers.upload_tree("webdav", local, path)
    port = int(servers.env["LSVFS_WEBDAV_HOST"].rsplit(":", 1)[1])
    proxy = FaultProxy(port).start()
    try:
        e = servers.env
        url = f"webdav://{e['LSVFS_WEBDAV_USER']}:{e['LSVFS_WEBDAV_PASSWORD']}@127.0.0.1:{proxy.port}/{path}"
        c = lsvfs.connect(url)
        assert c.execute("SELECT body FROM t WHERE id = 7").fetchone() == ("row 7",)
        # Header, page index and a few pages: a small share of the replica.
        assert proxy.bytes_down < total / 4, (proxy.bytes_down, total)
        assert c.execute("SELECT count(*) FROM t").fetchone() == (4000,)
        assert lsvfs.digest(c) == lsvfs.digest(primary)
    finally:
        proxy.stop()


class CountingTcpProxy:
    """Forwards TCP to a port on loopback and counts the bytes that come back."""

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.bytes_down = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", 0), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader, writer):
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def pump(r, w, down):
            try:
                while data := await r.read(65536):
                    if down:
                        self.bytes_down += len(data)
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        await asyncio.gather(pump(reader, up_w, False), pump(up_r, writer, True))

    def close(self):
        async def shut():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_nats_downloads_each_object_once(servers, tmp_path):
    db = tmp_path / "big.db"
    primary = big_primary(db)
    path = replica_path(servers, "nats", "once")
    # Litestream itself writes the replica to NATS.
    cfg = config_for(db, servers.litestream_replica("nats", path))
    want = lsvfs.digest(primary)
    e = servers.env
    port = int(e["LSVFS_NATS_HOST"].rsplit(":", 1)[1])
    with lsvfs.Litestream(cfg, tmp_path, env=servers.litestream_env("nats")):
        lsvfs.wait_replica_matches(servers.url("nats", path), want, timeout=90, name="writer-check.db")
    proxy = CountingTcpProxy(port)
    try:
        url = f"nats://{e['LSVFS_NATS_USER']}:{e['LSVFS_NATS_PASSWORD']}@127.0.0.1:{proxy.port}/{path}"
        c = lsvfs.connect(url, name="once.db")
        assert lsvfs.digest(c) == want
        assert c.execute("SELECT count(*) FROM t").fetchone() == (4000,)
        # Every page was read, most of them one at a time, yet the bytes that
        # came back are about one copy of the replica, not one per page.
        with_protocol = 1.5 * db.stat().st_size + 1024 * 1024
        assert proxy.bytes_down < with_protocol, (proxy.bytes_down, db.stat().st_size)
    finally:
        proxy.close()


# ---------------------------------------------------------------------------- failures
def test_webdav_wrong_password(servers):
    e = servers.env
    pw = "wrong-pw-" + uuid.uuid4().hex
    out, elapsed = probe(f"webdav://{e['LSVFS_WEBDAV_USER']}:{pw}@{e['LSVFS_WEBDAV_HOST']}/db", {})
    assert_refused(out, "webdav storage", "credentials", secrets=(pw,))
    assert elapsed < 30, out


def test_nats_wrong_password(servers):
    e = servers.env
    pw = "wrong-pw-" + uuid.uuid4().hex
    out, elapsed = probe(f"nats://{e['LSVFS_NATS_USER']}:{pw}@{e['LSVFS_NATS_HOST']}/{servers.bucket}", {})
    assert_refused(out, "nats storage", "credentials", secrets=(pw,))
    assert elapsed < 30, out


def test_nats_token_is_not_shown(servers):
    token = "tok-" + uuid.uuid4().hex
    out, _ = probe(f"nats://{token}@{servers.env['LSVFS_NATS_HOST']}/{servers.bucket}", {})
    assert_refused(out, "nats storage", "credentials", secrets=(token,))


def test_nats_missing_bucket(servers):
    bucket = "no-such-bucket-" + uuid.uuid4().hex[:6]
    out, elapsed = probe(servers.url("nats", bucket), {})
    assert_refused(out, "nats storage", f'"{bucket}" does not exist',
                   secrets=(servers.env["LSVFS_NATS_PASSWORD"],))
    assert elapsed < 30, out


def test_webdav_missing_path_is_an_empty_replica(servers):
    out, elapsed = probe(servers.url("webdav", unique("nothing-here")), {})
    assert_refused(out, secrets=(servers.env["LSVFS_WEBDAV_PASSWORD"],))
    assert elapsed < 30, out


@pytest.mark.parametrize("backend", MORE + ("oss",))
def test_unreachable_server_fails_in_bounded_time(servers, backend):
    port = closed_port()
    url = {
        "webdav": f"webdav://u:p@127.0.0.1:{port}/db",
        "nats": f"nats://u:p@127.0.0.1:{port}/bucket",
        "oss": f"oss://{servers.bucket}/db?endpoint=http://127.0.0.1:{port}&force-path-style=true",
    }[backend]
    out, elapsed = probe(url, servers.reader_env(backend))
    assert_refused(out, f"{backend} storage")
    assert elapsed < 45, f"took {elapsed:.0f}s: {out}"


def test_webdavs_verifies_certificates(servers, tmp_path):
    from test_backends import TlsProxy
    path = unique("tls")
    _, local, _ = folder_replica(tmp_path, 20)
    servers.upload_tree("webdav", local, path)
    e = servers.env
    proxy = TlsProxy(int(e["LSVFS_WEBDAV_HOST"].rsplit(":", 1)[1]), tmp_path)
    try:
        url = f"webdavs://{e['LSVFS_WEBDAV_USER']}:{e['LSVFS_WEBDAV_PASSWORD']}@127.0.0.1:{proxy.port}/{path}"
        out, _ = probe(url, {})
        assert_refused(out, "webdav storage", "certificate", secrets=(e["LSVFS_WEBDAV_PASSWORD"],))
        out, _ = probe(url + "?skip-verify=true", {})
        assert "OPENED" in out, out
    finally:
        proxy.close()


# ---------------------------------------------------------------------------- OSS URL forms
@pytest.fixture(scope="module")
def oss_replica(servers, tmp_path_factory):
    """A small replica in s3s-fs, in the layout Litestream's oss client writes."""
    primary, local, _ = folder_replica(tmp_path_factory.mktemp("oss"), 30)
    path = unique("oss")
    servers.upload_tree("s3", local, path)  # <path>/<level as 4 hex digits>/<name>
    return path, lsvfs.digest(primary)


def oss_env(servers, **extra: str) -> dict[str, str]:
    drop = ("AWS_", "LITESTREAM_", "OSS_", "ALIBABA_CLOUD_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **extra}


def run_exactly(code: str, url: str, env: dict[str, str]) -> tuple[str, float]:
    """Runs `code` in a fresh interpreter with exactly `env`."""
    import subprocess
    t0 = time.monotonic()
    r = subprocess.run([srv.debian_python(), "-c", code, os.path.dirname(lsvfs.__file__), url],
                       capture_output=True, text=True, timeout=90, env=env)
    return r.stdout + r.stderr, time.monotonic() - t0


def read_oss(url: str, env: dict[str, str]) -> str:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import lsvfs; "
            "c = lsvfs.connect(sys.argv[2]); print('DIGEST', lsvfs.digest(c))")
    return run_exactly(code, url, env)[0]


@pytest.mark.parametrize("host", ["{bucket}", "{bucket}.oss-cn-hangzhou.aliyuncs.com",
                                  "{bucket}.oss-ap-southeast-1-internal.aliyuncs.com"])
@pytest.mark.parametrize("keys", ["litestream", "oss"])
def test_oss_url_forms_and_credentials(servers, oss_replica, host, keys):
    path, want = oss_replica
    e = servers.env
    if keys == "litestream":
        creds = {"LITESTREAM_ACCESS_KEY_ID": e["LSVFS_S3_KEY"], "LITESTREAM_SECRET_ACCESS_KEY": e["LSVFS_S3_SECRET"]}
    else:
        creds = {"OSS_ACCESS_KEY_ID": e["LSVFS_S3_KEY"], "OSS_ACCESS_KEY_SECRET": e["LSVFS_S3_SECRET"]}
    url = (f"oss://{host.format(bucket=servers.bucket)}/{path}?endpoint={e['LSVFS_S3_ENDPOINT']}"
           "&force-path-style=true")
    out = read_oss(url, oss_env(servers, **creds))
    assert f"DIGEST {want}" in out, out


def test_oss_wrong_secret_and_missing_bucket(servers, oss_replica):
    path, _ = oss_replica
    e = servers.env
    secret = "wrong-Secret-" + uuid.uuid4().hex
    env = oss_env(servers, OSS_ACCESS_KEY_ID=e["LSVFS_S3_KEY"], OSS_ACCESS_KEY_SECRET=secret)
    out, elapsed = run_exactly(PROBE, servers.url("oss", path), env)
    assert_refused(out, "oss storage", "credentials", secrets=(secret,))
    assert elapsed < 30, out
    bucket = "no-such-bucket-" + uuid.uuid4().hex[:6]
    out, _ = probe(servers.url("oss", path).replace(servers.bucket, bucket, 1), servers.reader_env("oss"))
    assert_refused(out, "oss storage", f'"{bucket}" does not exist')


def test_oss_without_credentials_says_which_variables(servers):
    out, elapsed = run_exactly(PROBE, servers.url("oss", "db"), oss_env(servers))
    assert_refused(out, "oss storage", "OSS_ACCESS_KEY_ID", "LITESTREAM_ACCESS_KEY_ID")
    assert elapsed < 10, out


# ---------------------------------------------------------------------------- NATS token and TLS
@pytest.fixture()
def nats_tls_token(tmp_path):
    """A second nats-server of this test's own: TLS with a self-signed
    certificate, token sign-in, JetStream on."""
    import shutil
    import subprocess
    server = shutil.which("nats-server")
    assert server, "nats-server is installed by tests/harness/servers.sh"
    # A test CA, and a server certificate it signs (webpki refuses a CA
    # certificate as the server's own).
    ca, ca_key = tmp_path / "ca.pem", tmp_path / "ca-key.pem"
    cert, key, csr = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "req.csr"
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=lsvfs test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    port = closed_port()
    token = "tls-token-" + uuid.uuid4().hex
    conf = tmp_path / "nats.conf"
    conf.write_text(f"""listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{tmp_path / 'js'}" }}
authorization {{ token: "{token}" }}
tls {{ cert_file: "{cert}", key_file: "{key}" }}
""")
    proc = subprocess.Popen([server, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import socket as so
        lsvfs.wait_for(lambda: so.create_connection(("127.0.0.1", port), timeout=1).close() or True, 20,
                       what="nats-server with TLS")
        yield port, token, ca
    finally:
        proc.terminate()
        proc.wait(10)


def test_nats_token_over_tls(nats_tls_token):
    port, token, cert = nats_tls_token
    bucket = "tls-bucket"
    # Signed in over verified TLS: the server answers about the bucket.
    out, _ = probe(f"nats://{token}@127.0.0.1:{port}/{bucket}?tls=true&root-cas={cert}", {})
    assert_refused(out, "nats storage", f'"{bucket}" does not exist', secrets=(token,))
    out, _ = probe(f"nats://127.0.0.1:{port}/{bucket}?token={token}&root-cas={cert}", {})
    assert_refused(out, "nats storage", f'"{bucket}" does not exist', secrets=(token,))
    # A wrong token is refused; an untrusted certificate too.
    wrong = "wrong-" + uuid.uuid4().hex
    out, _ = probe(f"nats://{wrong}@127.0.0.1:{port}/{bucket}?root-cas={cert}", {})
    assert_refused(out, "nats storage", "credentials", secrets=(wrong,))
    out, _ = probe(f"nats://{token}@127.0.0.1:{port}/{bucket}?tls=true", {})
    assert_refused(out, "nats storage", "certificate", secrets=(token,))
