from django.db import models


class Product(models.Model):
    """Lives in the replicated primaries (written by the test, replicated by
    `litestream replicate`); read through the VFS aliases."""

    name = models.TextField()
    region = models.TextField()

    class Meta:
        managed = False
        db_table = "shop_product"


class Order(models.Model):
    """Lives in the normal `default` database."""

    product_name = models.TextField()
    created = models.DateTimeField(auto_now_add=True)


class RegionalProduct(models.Model):
    """The same table, pinned by the router (litestream_vfs.django) to
    replica B whatever the default read replicas are."""

    litestream_replica = "replica_b"

    name = models.TextField()
    region = models.TextField()

    class Meta:
        managed = False
        db_table = "shop_product"


class AuditEntry(models.Model):
    """Opts out of replica reads: the router reads it from `default`."""

    litestream_replica = False

    what = models.TextField()
