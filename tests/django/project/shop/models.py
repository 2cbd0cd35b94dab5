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
