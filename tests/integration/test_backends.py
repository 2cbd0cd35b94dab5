"""Replicas on S3 (s3s-fs), GCS (fake-gcs-server), Azure Blob (Azurite) and
SFTP (OpenSSH), written by the real `litestream replicate` and read through
the extension. The servers come from tests/harness/servers.sh: started here
if they are not running (and stopped again at the end), never skipped."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

import lsvfs
import servers as srv
from servers import unique

BACKENDS = srv.BACKENDS


def fill(conn, rows: int, start: int = 0) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT, blob BLOB)")
    conn.execute("BEGIN")
    for i in range(start, start + rows):
        conn.execute("INSERT INTO t (id, body, blob) VALUES (?, ?, randomblob(300))", (i, f"row {i} " * 20))
    conn.execute("COMMIT")


def folder_replica(tmp: Path, rows: int):
    """A primary of `rows` rows (`fill`) at tmp/primary.db, replicated by the
    real Litestream into tmp/replica until a reader matches it. Returns the
    primary, the folder and that reader."""
    db, local = tmp / "primary.db", tmp / "replica"
    primary = lsvfs.primary(db)
    fill(primary, rows)
    with lsvfs.Litestream(lsvfs.file_replica_config(db, local), tmp):
        conn = lsvfs.wait_replica_matches(lsvfs.file_url(local), lsvfs.digest(primary), timeout=60)
    return primary, local, conn


def config_for(db: Path, replica_yaml: str) -> str:
    return f"""levels:
  - interval: 2s
snapshot:
  interval: 1h
dbs:
  - path: {db}
    monitor-interval: 100ms
    replica:
      sync-interval: 200ms
{replica_yaml}"""


# ---------------------------------------------------------------------------- real litestream
@pytest.mark.parametrize("backend", BACKENDS)
def test_litestream_replica_reads_like_the_primary(servers, backend, tmp_path):
    path = unique(f"live-{backend}")
    db = tmp_path / "primary.db"
    primary = lsvfs.primary(db)
    fill(primary, 200)
    cfg = config_for(db, servers.litestream_replica(backend, path))
    with lsvfs.Litestream(cfg, tmp_path, env=servers.litestream_env(backend)) as ls, \
            lsvfs.env(**servers.reader_env(backend)):
        url = servers.url(backend, path)
        try:
            conn = lsvfs.wait_replica_matches(url, lsvfs.digest(primary), timeout=60)
            # It follows: new writes show up in a later transaction.
            fill(primary, 150, start=1000)
            lsvfs.wait_for(lambda: lsvfs.digest(conn) == lsvfs.digest(primary), 60,
                           what=f"{backend} replica to follow the primary")
            assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (350,)
        except Exception:
            print(ls.output()[-3000:], file=sys.stderr)
            raise


def test_same_bytes_read_identically_everywhere(servers, tmp_path):
    _, local, conn = folder_replica(tmp_path, 300)
    want = (lsvfs.digest(conn), conn.execute("SELECT litestream_txid()").fetchone())
    path = unique("same")
    for backend in BACKENDS:
        assert servers.upload_tree(backend, local, path) > 0
        with lsvfs.env(**servers.reader_env(backend)):
            c = lsvfs.connect(servers.url(backend, path))
            got = (lsvfs.digest(c), c.execute("SELECT litestream_txid()").fetchone())
            c.close()
        assert got == want, backend


def test_sftp_password_and_pinned_host_key(servers, tmp_path):
    path = unique("pw")
    primary, local, _ = folder_replica(tmp_path, 50)
    servers.upload_tree("sftp", local, path)
    e = servers.env
    import urllib.parse
    q = urllib.parse.urlencode({"host-key": e["LSVFS_SFTP_HOST_KEY"]})
    url = (f"sftp://{e['LSVFS_SFTP_USER']}:{e['LSVFS_SFTP_PASSWORD']}@{e['LSVFS_SFTP_HOST']}:"
           f"{e['LSVFS_SFTP_PORT']}/{path}?{q}")
    c = lsvfs.connect(url)
    assert lsvfs.digest(c) == lsvfs.digest(primary)
    # the explicit opt-out also reads
    c2 = lsvfs.connect(url.split("?")[0] + "?skip-host-key-check=true", name="other.db")
    assert lsvfs.digest(c2) == lsvfs.digest(primary)


# ---------------------------------------------------------------------------- failures
PROBE = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    import lsvfs
    t0 = time.monotonic()
    try:
        c = lsvfs.connect(sys.argv[2], open_timeout="2s")
        c.execute("SELECT count(*) FROM sqlite_master").fetchone()
        print("OPENED")
    except Exception as e:
        print("ERROR:", type(e).__name__, e)
    print("ELAPSED", round(time.monotonic() - t0, 1))
""")


def probe(url: str, env: dict[str, str], timeout: float = 90) -> tuple[str, float]:
    """Opens `url` in a fresh process with DEBUG logging; returns everything
    it printed (stdout and stderr) and the seconds it took."""
    full = {**os.environ, **env, "LITESTREAM_LOG_LEVEL": "DEBUG"}
    t0 = time.monotonic()
    r = subprocess.run([srv.debian_python(), "-c", PROBE, str(Path(lsvfs.__file__).parent), url],
                       capture_output=True, text=True, timeout=timeout, env=full)
    return r.stdout + r.stderr, time.monotonic() - t0


def assert_refused(out: str, *needles: str, secrets: tuple[str, ...] = ()) -> None:
    assert "ERROR:" in out and "OPENED" not in out, out
    for n in needles:
        assert n.lower() in out.lower(), f"{n!r} not in: {out}"
    for s in secrets:
        assert s not in out, f"secret leaked: {out}"


def test_s3_wrong_credentials(servers):
    secret = "wrong-Secret-" + uuid.uuid4().hex
    env = {**servers.reader_env("s3"), "AWS_SECRET_ACCESS_KEY": secret}
    out, _ = probe(servers.url("s3", unique("creds")), env)
    assert_refused(out, "s3 storage", "credentials", secrets=(secret,))


def test_s3_litestream_credentials_take_precedence(servers):
    secret = "wrong-Secret-" + uuid.uuid4().hex
    env = {**servers.reader_env("s3"), "LITESTREAM_ACCESS_KEY_ID": "nobody",
           "LITESTREAM_SECRET_ACCESS_KEY": secret}
    out, _ = probe(servers.url("s3", unique("creds")), env)
    assert_refused(out, "s3 storage", "credentials", secrets=(secret,))


def test_s3_credentials_from_profile_file(servers, tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = nobody\n\n[lsvfs]\n"
                     f"aws_access_key_id = {servers.env['LSVFS_S3_KEY']}\n"
                     f"aws_secret_access_key = {servers.env['LSVFS_S3_SECRET']}\n")
    path = unique("profile")
    _, local, _ = folder_replica(tmp_path, 20)
    servers.upload_tree("s3", local, path)
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_PROFILE": "lsvfs",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out, _ = probe(servers.url("s3", path), {**env, "PATH": clean.get("PATH", "")})
    assert "OPENED" in out, out
    assert servers.env["LSVFS_S3_SECRET"] not in out


def test_abs_wrong_key(servers):
    import base64
    key = base64.b64encode(uuid.uuid4().bytes * 4).decode()
    out, _ = probe(servers.url("abs", unique("creds")), {"LITESTREAM_AZURE_ACCOUNT_KEY": key})
    assert_refused(out, "abs storage", "credentials", secrets=(key,))


def test_sftp_wrong_password(servers):
    e = servers.env
    pw = "wrong-pw-" + uuid.uuid4().hex
    url = (f"sftp://{e['LSVFS_SFTP_USER']}:{pw}@{e['LSVFS_SFTP_HOST']}:{e['LSVFS_SFTP_PORT']}/x"
           f"?known-hosts={e['LSVFS_SFTP_KNOWN_HOSTS']}")
    out, _ = probe(url, {"SSH_AUTH_SOCK": ""})
    assert_refused(out, "sftp storage", "refused to authenticate", secrets=(pw,))


@pytest.mark.parametrize("backend", ["s3", "gs", "abs"])
def test_missing_bucket(servers, backend):
    bucket = "no-such-bucket-" + uuid.uuid4().hex[:6]
    url = servers.url(backend, "db").replace(servers.bucket, bucket, 1)
    out, elapsed = probe(url, servers.reader_env(backend))
    if backend == "gs":
        # fake-gcs-server answers a missing bucket with HTTP 500 (real GCS:
        # 404 NoSuchBucket, which maps to "does not exist" as for S3/Azure),
        # so what we can check is our message for a failing service. (The
        # bucket's name is in the URL the message repeats: not checked.)
        assert_refused(out, "gs storage: list of db/ltx at gs://",
                       "the service is failing or throttling; retries were exhausted",
                       "status code: 500")
    else:
        assert_refused(out, f"{backend} storage", f'"{bucket}" does not exist')
    assert elapsed < 30, out


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreachable_server_fails_in_bounded_time(servers, backend):
    port = closed_port()
    e = servers.env
    env = dict(servers.reader_env(backend))
    if backend == "s3":
        url = f"s3://{servers.bucket}/db?endpoint=http://127.0.0.1:{port}&region=us-east-1&force-path-style=true"
    elif backend == "gs":
        url, env["STORAGE_EMULATOR_HOST"] = f"gs://{servers.bucket}/db", f"127.0.0.1:{port}"
    elif backend == "abs":
        url = f"abs://{e['LSVFS_ABS_ACCOUNT']}@{servers.bucket}/db?endpoint=http://127.0.0.1:{port}/{e['LSVFS_ABS_ACCOUNT']}"
    else:
        url = f"sftp://{e['LSVFS_SFTP_USER']}@127.0.0.1:{port}/db?key={e['LSVFS_SFTP_KEY']}&skip-host-key-check=true"
    out, elapsed = probe(url, env)
    assert_refused(out, f"{backend} storage")
    assert elapsed < 45, f"took {elapsed:.0f}s: {out}"


def test_sftp_host_key_mismatch_is_refused(servers):
    e = servers.env
    base = f"sftp://{e['LSVFS_SFTP_USER']}@{e['LSVFS_SFTP_HOST']}:{e['LSVFS_SFTP_PORT']}/x?key={e['LSVFS_SFTP_KEY']}"
    out, _ = probe(base + f"&known-hosts={e['LSVFS_SFTP_KNOWN_HOSTS_WRONG']}", {})
    assert_refused(out, "sftp storage", "does not match")
    wrong_key = Path(e["LSVFS_SFTP_KNOWN_HOSTS_WRONG"]).read_text().split()[1:3]
    import urllib.parse
    out, _ = probe(base + "&" + urllib.parse.urlencode({"host-key": " ".join(wrong_key)}), {})
    assert_refused(out, "sftp storage", "does not match")


def test_sftp_unknown_host_is_refused(servers, tmp_path):
    e = servers.env
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    url = (f"sftp://{e['LSVFS_SFTP_USER']}@{e['LSVFS_SFTP_HOST']}:{e['LSVFS_SFTP_PORT']}/x"
           f"?key={e['LSVFS_SFTP_KEY']}&known-hosts={empty}")
    out, _ = probe(url, {})
    assert_refused(out, "sftp storage", "is not in")


# ---------------------------------------------------------------------------- TLS
class TlsProxy:
    """TLS on 127.0.0.1 with a self-signed certificate, forwarding the plain
    bytes to a target port: S3 over HTTPS with a certificate nobody trusts."""

    def __init__(self, target_port: int, workdir: Path):
        cert, key = workdir / "cert.pem", workdir / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        try:
            raw.settimeout(30)
            tls = self.ctx.wrap_socket(raw, server_side=True)
            up = socket.create_connection(("127.0.0.1", self.target), timeout=30)
        except (OSError, ssl.SSLError):
            raw.close()
            return

        def pump(a, b):
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(up, tls), daemon=True).start()
        pump(tls, up)

    def close(self):
        self.stop.set()
        self.sock.close()


def test_tls_is_verified_unless_told_otherwise(servers, tmp_path):
    path = unique("tls")
    _, local, _ = folder_replica(tmp_path, 20)
    servers.upload_tree("s3", local, path)
    s3_port = int(servers.env["LSVFS_S3_ENDPOINT"].rsplit(":", 1)[1])
    proxy = TlsProxy(s3_port, tmp_path)
    try:
        url = (f"s3://{servers.bucket}/{path}?endpoint=https://127.0.0.1:{proxy.port}"
               "&region=us-east-1&force-path-style=true")
        out, _ = probe(url, servers.reader_env("s3"))
        assert_refused(out, "s3 storage", "certificate")
        out, _ = probe(url + "&skip-verify=true", servers.reader_env("s3"))
        assert "OPENED" in out, out
    finally:
        proxy.close()


def test_unknown_url_parameter_is_named(servers):
    out, _ = probe(servers.url("s3", "db") + "&regoin=x", servers.reader_env("s3"))
    assert_refused(out, "regoin")


# ---------------------------------------------------------------------------- other ways in
@pytest.fixture(scope="module")
def small_replica(servers, tmp_path_factory):
    """One small file:// replica, copied to every backend under one path."""
    _, local, _ = folder_replica(tmp_path_factory.mktemp("small"), 30)
    path = unique("small")
    for backend in BACKENDS:
        servers.upload_tree(backend, local, path)
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any cloud credential variables, plus `extra`."""
    drop = ("AWS_", "LITESTREAM_", "AZURE_", "GOOGLE_", "STORAGE_EMULATOR_HOST", "SSH_AUTH_SOCK")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "AWS_EC2_METADATA_DISABLED": "true", **extra}


def probe_clean(url: str, **extra: str) -> str:
    r = subprocess.run([srv.debian_python(), "-c", PROBE, str(Path(lsvfs.__file__).parent), url],
                       capture_output=True, text=True, timeout=90, env=clean_env(**extra))
    return r.stdout + r.stderr


def test_s3_endpoint_and_keys_from_litestream_variables(servers, small_replica):
    e = servers.env
    out = probe_clean(f"s3://{servers.bucket}/{small_replica}?force-path-style=true",
                      LITESTREAM_S3_ENDPOINT=e["LSVFS_S3_ENDPOINT"], LITESTREAM_ACCESS_KEY_ID=e["LSVFS_S3_KEY"],
                      LITESTREAM_SECRET_ACCESS_KEY=e["LSVFS_S3_SECRET"])
    assert "OPENED" in out, out


def test_gcs_endpoint_parameter_and_gcs_scheme(servers, small_replica):
    out = probe_clean(f"gcs://{servers.bucket}/{small_replica}?endpoint=http://{servers.env['LSVFS_GCS_HOST']}")
    assert "OPENED" in out, out


def test_abs_connection_string(servers, small_replica):
    e = servers.env
    conn = (f"DefaultEndpointsProtocol=http;AccountName={e['LSVFS_ABS_ACCOUNT']};AccountKey={e['LSVFS_ABS_KEY']};"
            f"BlobEndpoint={e['LSVFS_ABS_ENDPOINT']};")
    out = probe_clean(f"abs://{servers.bucket}/{small_replica}", AZURE_STORAGE_CONNECTION_STRING=conn)
    assert "OPENED" in out, out
    assert e["LSVFS_ABS_KEY"] not in out


def test_abs_account_and_key_variables(servers, small_replica):
    e = servers.env
    out = probe_clean(f"abs://{servers.bucket}/{small_replica}?endpoint={e['LSVFS_ABS_ENDPOINT']}",
                      AZURE_STORAGE_ACCOUNT=e["LSVFS_ABS_ACCOUNT"], AZURE_STORAGE_KEY=e["LSVFS_ABS_KEY"])
    assert "OPENED" in out, out


def test_sftp_key_from_environment(servers, small_replica):
    e = servers.env
    url = (f"sftp://{e['LSVFS_SFTP_USER']}@{e['LSVFS_SFTP_HOST']}:{e['LSVFS_SFTP_PORT']}/{small_replica}"
           f"?known-hosts={e['LSVFS_SFTP_KNOWN_HOSTS']}")
    out = probe_clean(url, LITESTREAM_SFTP_KEY_PATH=e["LSVFS_SFTP_KEY"])
    assert "OPENED" in out, out


def test_sftp_ssh_agent(servers, small_replica, tmp_path):
    e = servers.env
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        lsvfs.wait_for(sock.exists, 10, what="ssh-agent socket")
        subprocess.run(["ssh-add", e["LSVFS_SFTP_KEY"]], env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
                       check=True, capture_output=True)
        url = (f"sftp://{e['LSVFS_SFTP_USER']}@{e['LSVFS_SFTP_HOST']}:{e['LSVFS_SFTP_PORT']}/{small_replica}"
               f"?known-hosts={e['LSVFS_SFTP_KNOWN_HOSTS']}")
        out = probe_clean(url, SSH_AUTH_SOCK=str(sock))
        assert "OPENED" in out, out
    finally:
        agent.terminate()
        agent.wait(10)


class Blackhole:
    """Accepts TCP connections on 127.0.0.1 and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = threading.Event()
        self.sock.settimeout(0.5)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self):
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("backend", ["s3", "sftp"])
def test_silent_server_times_out(servers, backend):
    hole = Blackhole()
    e = servers.env
    try:
        if backend == "s3":
            url = (f"s3://{servers.bucket}/db?endpoint=http://127.0.0.1:{hole.port}"
                   "&region=us-east-1&force-path-style=true")
        else:
            url = f"sftp://{e['LSVFS_SFTP_USER']}@127.0.0.1:{hole.port}/db?key={e['LSVFS_SFTP_KEY']}&skip-host-key-check=true"
        out, elapsed = probe(url, servers.reader_env(backend), timeout=120)
        assert_refused(out, f"{backend} storage")
        assert elapsed < 75, f"took {elapsed:.0f}s: {out}"
    finally:
        hole.close()


def account_sas(account: str, key: str) -> str:
    """A read/list account SAS token, valid for an hour (version 2019-12-12)."""
    import base64
    import hashlib
    import hmac
    import urllib.parse
    from datetime import datetime, timedelta, timezone

    expiry = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"sv": "2019-12-12", "ss": "b", "srt": "sco", "sp": "rl", "se": expiry, "spr": "https,http"}
    to_sign = "\n".join([account, fields["sp"], fields["ss"], fields["srt"], "", fields["se"], "",
                         fields["spr"], fields["sv"], ""])
    sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
    return urllib.parse.urlencode({**fields, "sig": sig})


def test_abs_sas_token(servers, small_replica):
    e = servers.env
    sas = account_sas(e["LSVFS_ABS_ACCOUNT"], e["LSVFS_ABS_KEY"])
    url = f"abs://{e['LSVFS_ABS_ACCOUNT']}@{servers.bucket}/{small_replica}?endpoint={e['LSVFS_ABS_ENDPOINT']}"
    out = probe_clean(url, AZURE_STORAGE_SAS_TOKEN=sas, LITESTREAM_LOG_LEVEL="DEBUG")
    assert "OPENED" in out, out
    sig = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    assert sig not in out
    # a SAS signed with another key is refused, and its signature not shown
    import base64
    bad = account_sas(e["LSVFS_ABS_ACCOUNT"], base64.b64encode(b"x" * 64).decode())
    out = probe_clean(url.replace(small_replica, unique("sas")), AZURE_STORAGE_SAS_TOKEN=bad,
                      LITESTREAM_LOG_LEVEL="DEBUG")
    assert_refused(out, "abs storage", "credentials")
    bad_sig = dict(p.split("=", 1) for p in bad.split("&"))["sig"]
    assert bad_sig not in out and urllib_unquote(bad_sig) not in out


def urllib_unquote(s: str) -> str:
    import urllib.parse
    return urllib.parse.unquote(s)


def test_s3_minio_style_host(servers, small_replica):
    """Litestream's documented MinIO form: s3://BUCKET.HOST:PORT/path."""
    e = servers.env
    hostport = e["LSVFS_S3_ENDPOINT"].split("://", 1)[1]
    out = probe_clean(f"s3://{servers.bucket}.{hostport}/{small_replica}",
                      AWS_ACCESS_KEY_ID=e["LSVFS_S3_KEY"], AWS_SECRET_ACCESS_KEY=e["LSVFS_S3_SECRET"])
    assert "OPENED" in out, out


def test_debug_log_of_a_successful_open_shows_no_secret(servers, small_replica):
    e = servers.env
    url = (f"sftp://{e['LSVFS_SFTP_USER']}:{e['LSVFS_SFTP_PASSWORD']}@{e['LSVFS_SFTP_HOST']}:"
           f"{e['LSVFS_SFTP_PORT']}/{small_replica}?known-hosts={e['LSVFS_SFTP_KNOWN_HOSTS']}")
    out = probe_clean(url, LITESTREAM_LOG_LEVEL="DEBUG")
    assert "OPENED" in out and "opened at TXID" in out, out  # the log is on
    assert e["LSVFS_SFTP_PASSWORD"] not in out, out
    out = probe_clean(servers.url("s3", small_replica), LITESTREAM_LOG_LEVEL="DEBUG",
                      AWS_ACCESS_KEY_ID=e["LSVFS_S3_KEY"], AWS_SECRET_ACCESS_KEY=e["LSVFS_S3_SECRET"])
    assert "OPENED" in out, out
    assert e["LSVFS_S3_SECRET"] not in out, out
