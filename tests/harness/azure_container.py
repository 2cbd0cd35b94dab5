#!/usr/bin/env python3
"""Creates a blob container on an Azure-compatible endpoint (Azurite), with
SharedKey authentication and the standard library only.

usage: azure_container.py ENDPOINT ACCOUNT KEY CONTAINER
ENDPOINT is path-style, e.g. http://127.0.0.1:20000/devstoreaccount1.
Exit 0 when the container exists afterwards.
"""

import base64
import hashlib
import hmac
import sys
import urllib.error
import urllib.parse
import urllib.request
from email.utils import formatdate

API_VERSION = "2021-08-06"


def create(endpoint: str, account: str, key: str, container: str) -> int:
    parts = urllib.parse.urlsplit(endpoint)
    path = parts.path.rstrip("/") + "/" + container
    query = {"restype": "container"}
    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": API_VERSION}
    signed_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    resource = f"/{account}{path}" + "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    # verb, then 11 standard headers (all empty for a body-less PUT)
    to_sign = "PUT\n" + "\n" * 11 + signed_headers + resource
    mac = hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
    headers["Authorization"] = f"SharedKey {account}:{base64.b64encode(mac).decode()}"
    headers["Content-Length"] = "0"
    url = f"{parts.scheme}://{parts.netloc}{path}?{urllib.parse.urlencode(query)}"
    req = urllib.request.Request(url, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
        if status != 409:
            print(f"creating container {container} failed: HTTP {status} {e.read()[:300]!r}", file=sys.stderr)
            return 1
    print(f"container {container}: {'created' if status == 201 else 'exists'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(create(*sys.argv[1:]))
