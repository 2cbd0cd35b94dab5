"""Each broken alias of settings_errors: the exception a query raises,
`litestream_vfs.connect()`'s, and `get_vfs_status()["error"]`, as JSON.

    manage.py error_report OUT
"""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

import litestream_vfs
from litestream_vfs.django import conf, get_vfs_status
from shop.models import Order


def error_of(step):
    try:
        step()
    except Exception as e:  # noqa: BLE001 - recorded for the test
        return f"{type(e).__module__}.{type(e).__name__}: {e}"
    return None


class Command(BaseCommand):
    requires_system_checks = []  # the checks fail here on purpose: see test_check_*
    def add_arguments(self, parser):
        parser.add_argument("out")

    def handle(self, *args, out, **options):
        report = {}
        for alias in settings.LITESTREAM["vfs"]:
            url = conf.replica(alias)["replica_url"]
            report[alias] = {
                "query": error_of(lambda: Order.objects.using(alias).count()),
                "connect": error_of(lambda: litestream_vfs.connect(url, open_timeout="1s", storage_timeout="1s")),
                "status": get_vfs_status(alias)["error"],
            }
        Path(out).write_text(json.dumps(report, indent=2))
