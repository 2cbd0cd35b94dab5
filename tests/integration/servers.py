"""The storage servers of tests/harness/servers.sh, seen from the tests:
start them (or find them started), their environment, the replica URLs the
extension reads and the litestream configs that write them, and ways to put
exact bytes into each backend."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from email.utils import formatdate
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "harness" / "servers.sh"
BACKENDS = ("s3", "gs", "abs", "sftp")
# Backends only Litestream (not the upload helpers below) writes to, and
# whose servers the set-up also starts.
MORE_BACKENDS = ("webdav", "nats")
SERVICES = {"s3", "gcs", "abs", "sftp", "webdav", "nats"}


def unique(prefix: str) -> str:
    """A fresh replica path (also a valid NATS bucket name)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def harness(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, check=check,
                          timeout=1800)


def read_env() -> dict[str, str]:
    out = harness("env").stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    return env


def running() -> set[str]:
    """The servers of servers.sh that are up now."""
    status = harness("status", check=False).stdout
    return {line.split()[0] for line in status.splitlines() if line.endswith(" running")}


def all_running() -> bool:
    return SERVICES <= running()


class Servers:
    """Endpoints and credentials of the running servers."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.bucket = env["LSVFS_BUCKET"]

    # -- what the extension reads --------------------------------------------------------
    def url(self, backend: str, path: str) -> str:
        e = self.env
        if backend == "s3":
            return (f"s3://{self.bucket}/{path}?endpoint={e['LSVFS_S3_ENDPOINT']}"
                    "&region=us-east-1&force-path-style=true")
        if backend == "gs":
            return f"gs://{self.bucket}/{path}"
        if backend == "abs":
            return f"abs://{e['LSVFS_ABS_ACCOUNT']}@{self.bucket}/{path}?endpoint={e['LSVFS_ABS_ENDPOINT']}"
        if backend == "sftp":
            q = urllib.parse.urlencode({"key": e["LSVFS_SFTP_KEY"], "known-hosts": e["LSVFS_SFTP_KNOWN_HOSTS"]})
            return f"sftp://{e['LSVFS_SFTP_USER']}@{e['LSVFS_SFTP_HOST']}:{e['LSVFS_SFTP_PORT']}/{path}?{q}"
        if backend == "webdav":
            return f"webdav://{e['LSVFS_WEBDAV_USER']}:{e['LSVFS_WEBDAV_PASSWORD']}@{e['LSVFS_WEBDAV_HOST']}/{path}"
        if backend == "nats":
            # Litestream's NATS client puts every file at ltx/<level>/ of the
            # bucket: one replica per bucket, so `path` names the bucket.
            return f"nats://{e['LSVFS_NATS_USER']}:{e['LSVFS_NATS_PASSWORD']}@{e['LSVFS_NATS_HOST']}/{path}"
        if backend == "oss":
            # OSS's layout is S3's; s3s-fs stands in for the service.
            return (f"oss://{self.bucket}/{path}?endpoint={e['LSVFS_S3_ENDPOINT']}"
                    "&force-path-style=true")
        raise ValueError(backend)

    def reader_env(self, backend: str) -> dict[str, str]:
        """Environment the extension needs at open time for `backend`."""
        e = self.env
        base = {"AWS_EC2_METADATA_DISABLED": "true"}
        if backend == "s3":
            return {**base, "AWS_ACCESS_KEY_ID": e["LSVFS_S3_KEY"], "AWS_SECRET_ACCESS_KEY": e["LSVFS_S3_SECRET"]}
        if backend == "gs":
            return {**base, "STORAGE_EMULATOR_HOST": e["LSVFS_GCS_HOST"]}
        if backend == "abs":
            return {**base, "LITESTREAM_AZURE_ACCOUNT_KEY": e["LSVFS_ABS_KEY"]}
        if backend == "oss":
            return {**base, "OSS_ACCESS_KEY_ID": e["LSVFS_S3_KEY"], "OSS_ACCESS_KEY_SECRET": e["LSVFS_S3_SECRET"]}
        return base

    # -- what litestream writes ----------------------------------------------------------
    def litestream_replica(self, backend: str, path: str) -> str:
        e = self.env
        if backend == "s3":
            return f"""      type: s3
      bucket: {self.bucket}
      path: {path}
      endpoint: {e['LSVFS_S3_ENDPOINT']}
      region: us-east-1
      force-path-style: true
      access-key-id: {e['LSVFS_S3_KEY']}
      secret-access-key: {e['LSVFS_S3_SECRET']}
"""
        if backend == "gs":
            return f"      url: gs://{self.bucket}/{path}\n"
        if backend == "abs":
            return f"""      type: abs
      endpoint: {e['LSVFS_ABS_ENDPOINT']}
      account-name: {e['LSVFS_ABS_ACCOUNT']}
      account-key: {e['LSVFS_ABS_KEY']}
      bucket: {self.bucket}
      path: {path}
"""
        if backend == "sftp":
            return f"""      type: sftp
      host: {e['LSVFS_SFTP_HOST']}:{e['LSVFS_SFTP_PORT']}
      user: {e['LSVFS_SFTP_USER']}
      key-path: {e['LSVFS_SFTP_KEY']}
      host-key: {e['LSVFS_SFTP_HOST_KEY']}
      path: {path}
"""
        if backend == "webdav":
            return f"      url: {self.url(backend, path)}\n"
        if backend == "nats":
            # Litestream's config takes NATS credentials as keys only: it
            # drops the user and password of a nats:// URL.
            return f"""      url: nats://{e['LSVFS_NATS_HOST']}/{path}
      username: {e['LSVFS_NATS_USER']}
      password: {e['LSVFS_NATS_PASSWORD']}
"""
        raise ValueError(backend)

    def litestream_env(self, backend: str) -> dict[str, str]:
        env = {"AWS_EC2_METADATA_DISABLED": "true", "GCE_METADATA_HOST": "127.0.0.1:9"}
        env.pop("AWS_CA_BUNDLE", None)
        if backend == "gs":
            env["STORAGE_EMULATOR_HOST"] = self.env["LSVFS_GCS_HOST"]
        return env

    # -- exact bytes into each backend ---------------------------------------------------
    def upload_tree(self, backend: str, local: Path, path: str) -> int:
        """Copies every file of a file:// replica (`local/ltx/<level>/<name>`)
        to `path` on `backend`, in that backend's layout. Returns the count."""
        files = sorted(p for p in (local / "ltx").rglob("*.ltx") if p.is_file())
        for f in files:
            level = int(f.parent.name)
            data = f.read_bytes()
            if backend == "s3":
                # s3s-fs keeps objects as plain files under its root.
                dest = Path(self.env["LSVFS_S3_DIR"]) / path / f"{level:04x}" / f.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            elif backend == "gs":
                self._gcs_put(f"{path}/ltx/{level}/{f.name}", data)
            elif backend == "abs":
                self._abs_put(f"{path}/ltx/{level}/{f.name}", data)
            elif backend == "webdav":
                # Through the server: rclone caches its folder listings.
                self._webdav_put(f"{path}/ltx/{level}/{f.name}", data)
            elif backend == "sftp":
                dest = Path(self.env["LSVFS_SFTP_HOME"]) / path / "ltx" / str(level) / f.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
                shutil.chown(dest.parent, self.env["LSVFS_SFTP_USER"])
            else:
                raise ValueError(backend)
        return len(files)

    def _webdav_put(self, name: str, data: bytes) -> None:
        e = self.env
        auth = base64.b64encode(f"{e['LSVFS_WEBDAV_USER']}:{e['LSVFS_WEBDAV_PASSWORD']}".encode()).decode()
        base = f"http://{e['LSVFS_WEBDAV_HOST']}"
        parts = name.split("/")
        for i in range(1, len(parts)):
            folder = urllib.parse.quote("/".join(parts[:i])) + "/"
            req = urllib.request.Request(f"{base}/{folder}", method="MKCOL",
                                         headers={"Authorization": f"Basic {auth}"})
            try:
                urllib.request.urlopen(req, timeout=10).close()
            except urllib.error.HTTPError as err:
                if err.code != 405:  # 405: it exists
                    raise
        req = urllib.request.Request(f"{base}/{urllib.parse.quote(name)}", data=data, method="PUT",
                                     headers={"Authorization": f"Basic {auth}",
                                              "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status in (200, 201, 204), r.status

    def nats_bucket(self, bucket: str) -> None:
        """Creates an object store bucket (Litestream does not)."""
        host, port = self.env["LSVFS_NATS_HOST"].rsplit(":", 1)
        subprocess.run([sys.executable, str(ROOT / "tests" / "harness" / "nats_bucket.py"), host, port,
                        self.env["LSVFS_NATS_USER"], self.env["LSVFS_NATS_PASSWORD"], bucket],
                       check=True, capture_output=True, timeout=60)

    def _gcs_put(self, name: str, data: bytes) -> None:
        q = urllib.parse.urlencode({"uploadType": "media", "name": name})
        url = f"http://{self.env['LSVFS_GCS_HOST']}/upload/storage/v1/b/{self.bucket}/o?{q}"
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200, r.status

    def _abs_put(self, name: str, data: bytes) -> None:
        e = self.env
        account, key = e["LSVFS_ABS_ACCOUNT"], e["LSVFS_ABS_KEY"]
        parts = urllib.parse.urlsplit(e["LSVFS_ABS_ENDPOINT"])
        path = parts.path.rstrip("/") + f"/{self.bucket}/" + urllib.parse.quote(name)
        headers = {"x-ms-blob-type": "BlockBlob", "x-ms-date": formatdate(usegmt=True),
                   "x-ms-version": "2021-08-06"}
        signed = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        ctype = "application/octet-stream"
        # verb, Content-Encoding, -Language, -Length, -MD5, -Type, Date,
        # If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range
        to_sign = f"PUT\n\n\n{len(data)}\n\n{ctype}\n\n\n\n\n\n\n{signed}/{account}{path}"
        mac = hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
        headers["Authorization"] = f"SharedKey {account}:{base64.b64encode(mac).decode()}"
        headers["Content-Type"] = ctype
        req = urllib.request.Request(f"{parts.scheme}://{parts.netloc}{path}", data=data, method="PUT",
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 201, r.status


def start() -> tuple[Servers, bool]:
    """Starts the servers unless they all run already; returns them and
    whether this call started all of them (then the caller stops them;
    servers someone else started are left running)."""
    before = running()
    if SERVICES <= before:
        return Servers(read_env()), False
    r = harness("up", check=False)
    if r.returncode != 0:
        raise RuntimeError(f"tests/harness/servers.sh up failed:\n{r.stdout}\n{r.stderr}")
    return Servers(read_env()), not before


def stop() -> None:
    harness("down", check=False)


def gcs_bucket_exists(env: dict[str, str], bucket: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{env['LSVFS_GCS_HOST']}/storage/v1/b/{bucket}", timeout=5) as r:
            return json.load(r).get("name") == bucket
    except urllib.error.HTTPError:
        return False


def debian_python() -> str:
    """The interpreter that can load extensions (Debian's, not pyenv's)."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else "/usr/bin/python3"


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
