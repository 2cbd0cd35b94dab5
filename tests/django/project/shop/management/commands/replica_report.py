"""Exercises the replicas through the ORM and writes what happened as JSON.

Every step records {"ok": value} or {"error": "Type: message"}, so the test can
assert on it whichever extension is loaded. The report goes to a file, not to
stdout: the official extension logs to stdout.
"""

import json
import sqlite3
import time
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import connections

from shop.models import Order, Product


def outcome(step):
    try:
        return {"ok": step()}
    except Exception as e:  # noqa: BLE001 - recorded for the test to judge
        return {"error": f"{type(e).__name__}: {e}"}


def products(alias):
    return [[p.name, p.region] for p in Product.objects.using(alias).order_by("id")]


def sql(alias, query):
    with connections[alias].cursor() as cur:
        cur.execute(query)
        return list(cur.fetchone())


def write_default(name):
    Order.objects.create(product_name=name)
    return Order.objects.count()


def plain_sqlite(path):
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS t(x)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        return conn.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        conn.close()


class Command(BaseCommand):
    help = "Read both replicas through the ORM, write to default, write JSON to OUT."

    def add_arguments(self, parser):
        parser.add_argument("out")
        parser.add_argument("--follow", metavar="N", type=int,
                            help="after the report, poll replica_a through the ORM until it holds N products "
                                 "(the test writes to its primary meanwhile); writes OUT.follow.json")

    def handle(self, *args, out, follow=None, **options):
        report = {}
        report["default_before"] = outcome(lambda: write_default("before"))
        report["replica_a"] = outcome(lambda: products("replica_a"))
        report["replica_b"] = outcome(lambda: products("replica_b"))
        report["count_b"] = outcome(lambda: Product.objects.using("replica_b").count())
        report["lag_a"] = outcome(lambda: sql("replica_a", "SELECT litestream_lag(), litestream_txid()"))
        report["lag_b"] = outcome(lambda: sql("replica_b", "SELECT litestream_lag(), litestream_txid()"))
        # A new connection to `default` after the extension loaded, and a
        # plain sqlite3 connection outside Django.
        connections["default"].close()
        report["default_after"] = outcome(lambda: write_default("after"))
        report["plain_sqlite_after"] = outcome(lambda: plain_sqlite(Path(out).with_suffix(".plain.db")))
        report["replica_write"] = outcome(
            lambda: Product.objects.using("replica_a").create(name="nope", region="nowhere").pk
        )
        report["replica_a_after_write"] = outcome(lambda: Product.objects.using("replica_a").count())
        Path(out).write_text(json.dumps(report, indent=2))
        if follow is not None:
            Path(out).with_suffix(".follow.json").write_text(json.dumps(self.follow("replica_a", follow)))

    def follow(self, alias, want, timeout=60.0):
        """The same connection, one query per transaction, until the new rows show."""
        start = time.monotonic()
        seen = []
        while time.monotonic() - start < timeout:
            count = Product.objects.using(alias).count()
            if not seen or seen[-1] != count:
                seen.append(count)
            if count >= want:
                break
            time.sleep(0.1)
        return {"counts": seen, "seconds": round(time.monotonic() - start, 2),
                "names": [p.name for p in Product.objects.using(alias).order_by("id")]}
