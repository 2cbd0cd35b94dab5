"""Views for the read-your-writes and time-travel tests (settings_trust)."""

import json

from django.db import connections
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from litestream_vfs.django import time_travel
from shop.models import Order


@csrf_exempt
def orders(request):
    """POST: one order named `name` (through the router: `default`).
    GET: how many orders are named `name`, and the alias that read it."""
    if request.method == "POST":
        order = Order.objects.create(product_name=request.POST["name"])
        return JsonResponse({"id": order.pk})
    qs = Order.objects.filter(product_name=request.GET["name"])
    return JsonResponse({"count": qs.count(), "alias": qs.db})


def travel(request):
    """Orders named `prefix...` at `when` on replica_a, then now on the same
    thread's (persistent) connection."""
    prefix = request.GET["prefix"]
    with time_travel("replica_a", request.GET["when"]) as alias:
        then = Order.objects.using(alias).filter(product_name__startswith=prefix).count()
        with connections[alias].cursor() as cur:
            cur.execute("SELECT litestream_time()")
            then_time = cur.fetchone()[0]
    now = Order.objects.using("replica_a").filter(product_name__startswith=prefix).count()
    return JsonResponse({"then": then, "then_time": then_time, "now": now,
                         "connection": id(connections["replica_a"].connection)})


def latest(request):
    """Orders named `prefix...` on replica_a now, and its connection's time."""
    with connections["replica_a"].cursor() as cur:
        cur.execute("SELECT count(*), litestream_time() FROM shop_order WHERE product_name LIKE %s",
                    [request.GET["prefix"] + "%"])
        count, time_ = cur.fetchone()
    return HttpResponse(json.dumps({"count": count, "time": time_,
                                    "connection": id(connections["replica_a"].connection)}),
                        content_type="application/json")
