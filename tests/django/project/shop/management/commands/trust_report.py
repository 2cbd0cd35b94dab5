"""Exercises freshness, the lag-aware router, read-your-writes, the seed
page's snippets and time travel (settings_trust), and writes what happened
as JSON.

    manage.py trust_report OUT STEP [--rounds N] [--tag TAG]

STEP is one of:
  healthy   Litestream running: POST then GET N times (fresh client each
            time), the seed page's health snippet, time travel through
            requests on a persistent connection and in two threads at once.
  stopped   Litestream stopped: the same POST then GET, and the status.
  later     Litestream still stopped, some seconds on: the status, and
            where a fresh client's GET goes.
  rw        only the POST then GET rounds.
"""

import contextlib
import io
import json
import threading
import time
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import connections
from django.test import Client

from litestream_vfs.django import get_vfs_status
from shop.models import Order


class Recorder:
    """Which aliases ran queries, per step."""

    def __init__(self):
        self.seen = []

    def wrapper(self, alias):
        def run(execute, sql, params, many, context):
            self.seen.append(alias)
            return execute(sql, params, many, context)
        return run


def post_then_get(rounds: int, tag: str) -> dict:
    """POST an order, then GET its count, same client: what the GET saw."""
    seen, aliases, cookies = [], [], set()
    for i in range(rounds):
        client = Client()
        name = f"{tag}-{i}"
        post = client.post("/orders/", {"name": name})
        assert post.status_code == 200, post.content
        cookies.update(client.cookies.keys())
        got = client.get("/orders/", {"name": name}).json()
        seen.append(got["count"])
        aliases.append(got["alias"])
    return {"counts": seen, "aliases": aliases, "cookies": sorted(cookies)}


def routed_reads(n: int) -> dict:
    """`n` reads through the router, as fast as they go: how many health
    checks they cost, over how long."""
    from django.db import router

    from litestream_vfs.django.health import checks_made, wait_for_check

    # Checks run in the background: until the first one finishes, reads go to `default`.
    assert wait_for_check("replica_a", 60), "no health check of replica_a finished in 60 s"
    before, start = checks_made("replica_a"), time.monotonic()
    aliases = [router.db_for_read(Order) for _ in range(n)]
    Order.objects.count()
    return {"reads": n, "checks": checks_made("replica_a") - before,
            "seconds": time.monotonic() - start, "aliases": sorted(set(aliases))}


def seed_snippet() -> str:
    """The seed page's health check, verbatim but for the alias."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = get_vfs_status("replica_a")

        # Check if replica is healthy
        if status["lag_seconds"] and status["lag_seconds"] < 60:
            print("Replica is healthy!")
        else:
            print("Replica is stale or unavailable")
    return out.getvalue().strip()


def wait_replica_count(prefix: str, want: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = Order.objects.using("replica_a").filter(product_name__startswith=prefix).count()
        if n == want or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def time_travel_steps(tag: str) -> dict:
    """Three orders, a point in time, two more; then time travel through
    requests (persistent replica connection) and in two threads at once."""
    prefix = f"{tag}-tt-"
    for i in range(3):
        Order.objects.create(product_name=f"{prefix}{i}")
    assert wait_replica_count(prefix, 3) == 3
    time.sleep(1.2)  # LTX timestamps are in milliseconds: a clear gap on either side
    from datetime import datetime, timezone
    point = datetime.now(timezone.utc)
    time.sleep(1.2)
    for i in range(3, 5):
        Order.objects.create(product_name=f"{prefix}{i}")
    assert wait_replica_count(prefix, 5) == 5
    client = Client()
    travel = client.get("/travel/", {"prefix": prefix, "when": point.isoformat()}).json()
    after = client.get("/latest/", {"prefix": prefix}).json()
    relative = client.get("/travel/", {"prefix": prefix, "when": "1 seconds ago"}).json()

    # Two threads: one travels and holds there, the other reads the newest meanwhile.
    from litestream_vfs.django import time_travel
    inside, release, result = threading.Event(), threading.Event(), {}

    def traveller():
        try:
            with time_travel("replica_a", point) as alias:
                result["traveller_then"] = Order.objects.using(alias).filter(product_name__startswith=prefix).count()
                inside.set()
                release.wait(30)
            result["traveller_after"] = Order.objects.using("replica_a").filter(
                product_name__startswith=prefix).count()
        except Exception as e:  # noqa: BLE001
            result["traveller_error"] = f"{type(e).__name__}: {e}"
            inside.set()
        finally:
            connections.close_all()

    def reader():
        try:
            inside.wait(30)
            result["reader_meanwhile"] = Order.objects.using("replica_a").filter(
                product_name__startswith=prefix).count()
        finally:
            release.set()
            connections.close_all()

    threads = [threading.Thread(target=traveller), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return {"point": point.isoformat(), "travel": travel, "after": after, "relative": relative, "threads": result}


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("out")
        parser.add_argument("step", choices=["healthy", "rw", "stopped", "later"])
        parser.add_argument("--rounds", type=int, default=100)
        parser.add_argument("--tag", default="rw")

    def handle(self, *args, out, step, rounds, tag, **options):
        report = {}
        if step == "healthy":
            report["status_before"] = get_vfs_status("replica_a")
            report["seed_snippet"] = seed_snippet()
            report["routed"] = routed_reads(20000)
            report["rw"] = post_then_get(rounds, tag)
            report["time_travel"] = time_travel_steps(tag)
            report["status_after"] = get_vfs_status("replica_a")
        elif step == "rw":
            report["rw"] = post_then_get(rounds, tag)
        elif step == "stopped":
            report["rw"] = post_then_get(rounds, tag)
            report["status"] = get_vfs_status("replica_a")
        else:
            report["status"] = get_vfs_status("replica_a")
            report["seed_snippet"] = seed_snippet()
            # A client with no write of its own: only the router's health
            # decides, once it has checked the replica.
            from litestream_vfs.django.health import health, wait_for_check

            assert wait_for_check("replica_a", 60), "no health check of replica_a finished in 60 s"
            report["router_health"] = health("replica_a")
            report["fresh_get"] = Client().get("/orders/", {"name": f"{tag}-0"}).json()
        Path(out).write_text(json.dumps(report, indent=2, default=str))
