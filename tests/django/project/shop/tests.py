"""Run by test_django_trust.py through `manage.py test shop` (settings_trust,
replica URL pointing nowhere): under Django's test runner each replica alias
mirrors `default`, and the router reads it without health checks of the
real replica, which is not there."""

from django.db import router
from django.test import TransactionTestCase

from litestream_vfs.django.health import checks_made
from shop.models import Order


class MirroredReplicaTest(TransactionTestCase):
    # Not TestCase: its transaction on `default` keeps reads there (read your own writes).
    databases = {"default", "replica_a"}

    def test_reads_go_to_the_mirror_without_a_health_check(self):
        Order.objects.create(product_name="mirrored")
        self.assertEqual(router.db_for_read(Order), "replica_a")
        self.assertEqual(Order.objects.filter(product_name="mirrored").count(), 1)
        self.assertEqual(checks_made("replica_a"), 0)
