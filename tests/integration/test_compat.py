"""Small things code written for the official extension relies on: short
poll intervals, readable log timestamps."""

import re

import lsvfs

BASIC = lsvfs.FIXTURES / "basic-4k"


def test_poll_interval_down_to_one_millisecond():
    url = lsvfs.file_url(BASIC / "replica")
    for v in ["5ms", "1ms"]:
        c = lsvfs.connect(url, name=f"poll-{v}.db", poll_interval=v)
        assert c.execute("SELECT litestream_txid()").fetchone()[0] == "0000000000000007"
    for v, words in [("0", "below 1ms"), ("0ms", "below 1ms"), ("soon", "bad value")]:
        r = lsvfs.shell(f".open file:x.db?vfs=litestream&replica_url={url}&poll_interval={v}",
                        "SELECT 1;")
        said = [line for line in r.stderr.splitlines() if 'unable to open database "' not in line]
        assert any("poll_interval" in line and words in line for line in said), r.stderr


def test_log_lines_carry_rfc3339_times(tmp_path):
    log = tmp_path / "vfs.log"
    url = lsvfs.file_url(BASIC / "replica")
    r = lsvfs.shell(f".open file:x.db?vfs=litestream&replica_url={url}", "SELECT count(*) FROM sqlite_master;",
                    env={"LITESTREAM_LOG_FILE": str(log), "LITESTREAM_LOG_LEVEL": "INFO"})
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert any("opened at TXID" in line for line in lines), lines
    for line in lines:
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARN|ERROR) litestream-vfs: ", line), line


# ------------------------------------------------------------------ S3 URLs as Litestream's docs write them
import base64  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets as pysecrets  # noqa: E402
import sqlite3  # noqa: E402
import urllib.parse  # noqa: E402

import pytest  # noqa: E402

from faultproxy import FaultProxy  # noqa: E402
from servers import unique  # noqa: E402
from test_backends import probe  # noqa: E402

HISTORY = json.loads((BASIC / "manifest.json").read_text())["history"]
SSE = "x-amz-server-side-encryption-customer-"


@pytest.fixture(scope="module")
def s3_basic(servers):
    """The basic-4k replica on s3s-fs."""
    path = unique("compat")
    servers.upload_tree("s3", BASIC / "replica", path)
    return path


def s3_url(servers, path: str, query: str, endpoint: str | None = None) -> str:
    return f"s3://{servers.bucket}/{path}?endpoint={endpoint or servers.env['LSVFS_S3_ENDPOINT']}&{query}"


def read_digest(url: str, env: dict[str, str], name: str) -> str:
    with lsvfs.env(**env):
        c = lsvfs.connect(url, name=name)
        try:
            return lsvfs.digest(c)
        finally:
            c.close()


@pytest.mark.parametrize("query", [
    # camelCase, as in Litestream's replica URL documentation
    "region=us-east-1&forcePathStyle=true",
    "forcePathStyle=true&skipVerify=false&signPayload=true&requireContentMD5=false"
    "&concurrency=5&partSize=5242880&storageClass=STANDARD",
    "forcePathStyle=true&sseKmsKeyId=alias/litestream",
    # kebab-case, as in its YAML-derived examples
    "region=us-east-1&force-path-style=true",
    "force-path-style=true&skip-verify=false&sign-payload=true&require-content-md5=true"
    "&part-size=10485760&storage-class=STANDARD_IA",
    "force-path-style=true&sse-kms-key-id=arn:aws:kms:us-east-1:111122223333:key/abc",
])
def test_s3_urls_written_as_litestream_takes_them(servers, s3_basic, query):
    url = s3_url(servers, s3_basic, query)
    assert read_digest(url, servers.reader_env("s3"), f"{unique('form')}.db") == HISTORY[-1]["digest"]


def test_s3_url_typo_still_fails_naming_it(servers, s3_basic):
    out, _ = probe(s3_url(servers, s3_basic, "forcePathstyle=true"), servers.reader_env("s3"))
    assert "ERROR:" in out and "OPENED" not in out, out
    assert "forcePathstyle" in out and "forcePathStyle" in out, out


# ------------------------------------------------------------------ SSE-C: the customer key on every read
def sse_c_key() -> tuple[str, str]:
    """A random key as Litestream takes it (base64 of 32 bytes) and its MD5."""
    raw = pysecrets.token_bytes(32)
    return base64.b64encode(raw).decode(), base64.b64encode(hashlib.md5(raw).digest()).decode()


def head_fields(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target = lines[0].split(" ")[:2]
    fields = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
    return method, target, fields


def is_object_read(head: bytes) -> bool:
    """A GET or HEAD of one object (not a listing of the bucket)."""
    method, target, _ = head_fields(head)
    path, _, query = target.partition("?")
    return method in ("GET", "HEAD") and "list-type" not in query and path.count("/") > 1


def sse_c_of(head: bytes) -> tuple[str | None, str | None, str | None]:
    _, _, f = head_fields(head)
    return f.get(SSE + "algorithm"), f.get(SSE + "key"), f.get(SSE + "key-md5")


class EnforcingProxy(FaultProxy):
    """In front of s3s-fs (which ignores SSE-C headers), refuses every object
    read that does not carry `key` the way S3 refuses it: 400."""

    def __init__(self, upstream_port: int, key: str, md5: str):
        super().__init__(upstream_port)
        self.refused = 0

        def gate(head: bytes):
            if is_object_read(head) and sse_c_of(head) != ("AES256", key, md5):
                self.refused += 1
                return 400
            return None

        self.gate = gate


def test_sse_c_key_goes_with_every_object_read(servers, s3_basic):
    key, md5 = sse_c_key()
    port = int(servers.env["LSVFS_S3_ENDPOINT"].rsplit(":", 1)[1])
    proxy = EnforcingProxy(port, key, md5).start()
    try:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        enc = urllib.parse.quote(key, safe="")
        env = servers.reader_env("s3")
        for query in [f"forcePathStyle=true&sseCustomerKey={enc}",
                      f"force-path-style=true&sse-customer-algorithm=AES256&sse-customer-key={enc}"
                      f"&sse-customer-key-md5={urllib.parse.quote(md5, safe='')}"]:
            before = len(proxy.heads)
            url = s3_url(servers, s3_basic, query, endpoint)
            assert read_digest(url, env, f"{unique('ssec')}.db") == HISTORY[-1]["digest"]
            reads = [h for h in proxy.heads[before:] if is_object_read(h)]
            assert reads, "no object was read through the proxy"
            assert proxy.refused == 0
        # Without the key, the same replica cannot be read: S3 says 400.
        out, _ = probe(s3_url(servers, s3_basic, "forcePathStyle=true", endpoint), servers.reader_env("s3"))
        assert "ERROR:" in out and "OPENED" not in out, out
        assert proxy.refused > 0
        # The key never shows, in a DEBUG log of an open that works or one
        # that fails (a wrong key), plain or percent-encoded.
        good, _ = probe(s3_url(servers, s3_basic, f"forcePathStyle=true&sseCustomerKey={enc}", endpoint), env)
        assert "OPENED" in good, good
        wrong = sse_c_key()[0]
        bad, _ = probe(s3_url(servers, s3_basic, f"forcePathStyle=true&sseCustomerKey={urllib.parse.quote(wrong, safe='')}",
                              endpoint), env)
        assert "ERROR:" in bad, bad
        for secret in (key, enc, wrong, urllib.parse.quote(wrong, safe="")):
            assert secret not in good + bad, "an SSE-C key leaked into a message or the log"
    finally:
        proxy.stop()


def official_lib() -> str:
    official = pytest.importorskip("litestream_vfs")
    if not hasattr(official, "_EXT_MAP"):
        pytest.skip("the project venv does not hold the official litestream-vfs 0.5.17")
    return os.path.splitext(official.loadable_path())[0]


def test_sse_c_headers_match_the_official_extension(servers, s3_basic):
    """Ours and the official 0.5.17 extension open the same SSE-C URL through
    the proxy: the key headers each sends on its object reads are the same."""
    lib = official_lib()
    key, md5 = sse_c_key()
    port = int(servers.env["LSVFS_S3_ENDPOINT"].rsplit(":", 1)[1])
    proxy = EnforcingProxy(port, key, md5).start()
    try:
        url = s3_url(servers, s3_basic, f"forcePathStyle=true&sseCustomerKey={urllib.parse.quote(key, safe='')}",
                     f"http://127.0.0.1:{proxy.port}")
        r = lsvfs.shell(".open file:official.db?vfs=litestream", "SELECT count(*) FROM seed;", load=lib,
                        env={**servers.reader_env("s3"), "LITESTREAM_REPLICA_URL": url, "LITESTREAM_LOG_LEVEL": "ERROR"})
        assert r.returncode == 0, r.stderr
        official = {sse_c_of(h) for h in proxy.heads if is_object_read(h)}
        before = len(proxy.heads)
        assert read_digest(url, servers.reader_env("s3"), f"{unique('ours')}.db") == HISTORY[-1]["digest"]
        ours = {sse_c_of(h) for h in proxy.heads[before:] if is_object_read(h)}
        assert official == ours == {("AES256", key, md5)}
        assert proxy.refused == 0
    finally:
        proxy.stop()


# ------------------------------------------------------------------ the official's texts
def test_time_before_the_oldest_state_says_what_the_official_scenario_expects():
    """The official's scenario PragmaRelativeTime accepts exactly this text."""
    c = lsvfs.connect(lsvfs.file_url(BASIC / "replica"), name="compat-early.db")
    for sql in ["SELECT litestream_set_time('2000-01-01T00:00:00Z')",
                "PRAGMA litestream_time = '2000-01-01T00:00:00Z'",
                "PRAGMA litestream_time = '10000 days ago'"]:
        with pytest.raises(sqlite3.OperationalError) as e:
            c.execute(sql)
        assert str(e.value) == "timestamp is before earliest LTX file", sql


def test_time_parse_errors_begin_with_the_officials_words():
    c = lsvfs.connect(lsvfs.file_url(BASIC / "replica"), name="compat-parse.db")
    for sql, value in [("SELECT litestream_set_time('soon')", "soon"),
                       ("PRAGMA litestream_time = 'soon'", "soon")]:
        with pytest.raises(sqlite3.OperationalError) as e:
            c.execute(sql)
        official = f"invalid timestamp (expected RFC3339 or relative time like '5 minutes ago'): {value}"
        assert str(e.value).startswith(official), str(e.value)


def test_official_texts_side_by_side(tmp_path):
    """The same statements through the official 0.5.17 extension and ours."""
    lib = official_lib()
    url = lsvfs.file_url(BASIC / "replica")

    def run(load, statement):
        r = lsvfs.shell(f".open file:{tmp_path}/side.db?vfs=litestream&replica_url={url}", statement, load=load,
                        env={"LITESTREAM_REPLICA_URL": url, "LITESTREAM_LOG_LEVEL": "ERROR"})
        return r.stderr.strip()

    # Through litestream_set_time() the official says why; ours must carry the
    # same beginning for the parse error.
    official = run(lib, "SELECT litestream_set_time('soon');")
    ours = run(None, "SELECT litestream_set_time('soon');")
    prefix = "invalid timestamp (expected RFC3339 or relative time like '5 minutes ago'): soon"
    assert prefix in official, official
    assert prefix in ours, ours
