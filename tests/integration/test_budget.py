"""The per-query request budget (issue 21, like LiteVFS's
litevfs_max_reqs_per_query): a connection may cap the storage requests one
statement causes; past the cap the read fails ("disk I/O error" to SQLite,
the budget's message in PRAGMA litestream_last_error and the log) instead
of quietly paying for thousands of GETs, and the connection stays usable.
Requests are counted at a proxy in front of S3, never timed.

The bound asserted: a statement sends at most its budget of requests. Its
demand reads and the prefetches they start are charged before they are
sent, so no prefetch of its own runs past it; the warm-up is off here, so
no background request of the replica lands between the marks."""

import sqlite3

import pytest

import lsvfs
from servers import unique
from test_prefetch import ROWS, proxied, s3_orders  # noqa: F401

SCAN = "SELECT count(*), sum(amount) FROM orders"
# Over S3 a cold scan is one request: its descent's first read that misses
# starts the stream that brings the rest of the table (fetch/stream.rs), so
# no budget stops it any more (it stopped at five when the scan took a
# request per 4 MiB, at one when the descent's read came before the
# stream). What a budget stops: lookups of rows scattered over the table,
# a demand read or two each (in the table's upper half: a lookup on its
# leftmost path starts a stream, as a scan's descent does).
LOOKUPS = ("SELECT count(*), sum(amount) FROM orders WHERE id IN ("
           + ",".join(str(ROWS // 2 + ROWS * k // 50) for k in range(22)) + ")")
BUDGET = 1
# What the lookup that shows the connection still usable may cost: the
# table's interior pages and a leaf.
LOOKUP_BUDGET = 5


def sent(proxy, fn):
    start = proxy.mark()
    try:
        return fn(), proxy.round_trips(start, proxy.mark()).requests
    except sqlite3.OperationalError as e:
        return e, proxy.round_trips(start, proxy.mark()).requests


def check_budget(proxy, c, primary):
    c.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    out, n = sent(proxy, lambda: c.execute(LOOKUPS).fetchone())
    print(f"cold lookups under a budget of {BUDGET}: {out!r}, {n} requests")
    assert isinstance(out, sqlite3.OperationalError) and "disk I/O error" in str(out), out
    assert 0 < n <= BUDGET, n
    msg = c.execute("PRAGMA litestream_last_error").fetchone()[0]
    assert f"query exceeded its budget of {BUDGET} storage requests" in msg, msg
    # The connection stays usable: a cheap query fits a budget.
    assert c.execute(f"PRAGMA litestream_max_requests_per_query = {LOOKUP_BUDGET}").fetchone() == (
        str(LOOKUP_BUDGET),)
    q = "SELECT customer, amount FROM orders WHERE id = ?"
    row, n = sent(proxy, lambda: c.execute(q, (ROWS // 3,)).fetchone())
    assert row == primary.execute(q, (ROWS // 3,)).fetchone()
    assert n <= LOOKUP_BUDGET, n
    # Lifted, the lookups go through.
    assert c.execute("PRAGMA litestream_max_requests_per_query = 0").fetchone() == ("0",)
    assert c.execute(LOOKUPS).fetchone() == primary.execute(LOOKUPS).fetchone()


def test_a_budget_from_the_uri_stops_cold_lookups(proxied):  # noqa: F811
    proxy, url, primary = proxied
    c = lsvfs.connect(url, name=unique("budget-uri") + ".db", poll_interval="1h", warmup="off",
                      max_requests_per_query=BUDGET)
    assert c.execute("PRAGMA litestream_max_requests_per_query").fetchone() == (str(BUDGET),)
    check_budget(proxy, c, primary)


def test_a_budget_from_the_pragma_stops_cold_lookups(proxied):  # noqa: F811
    proxy, url, primary = proxied
    c = lsvfs.connect(url, name=unique("budget-pragma") + ".db", poll_interval="1h", warmup="off")
    assert c.execute("PRAGMA litestream_max_requests_per_query").fetchone() == ("0",)
    assert c.execute(f"PRAGMA litestream_max_requests_per_query = {BUDGET}").fetchone() == (str(BUDGET),)
    check_budget(proxy, c, primary)


def test_no_budget_by_default(proxied):  # noqa: F811
    proxy, url, primary = proxied
    c = lsvfs.connect(url, name=unique("budget-none") + ".db", poll_interval="1h", warmup="off")
    out, n = sent(proxy, lambda: c.execute(LOOKUPS).fetchone())
    assert out == primary.execute(LOOKUPS).fetchone()
    assert n > BUDGET, n
    with pytest.raises(sqlite3.OperationalError):
        c.execute("PRAGMA litestream_max_requests_per_query = lots").fetchone()


def test_a_cold_scan_is_one_request_and_fits_a_budget_of_one(proxied):  # noqa: F811
    """The descent's read that misses (the table's first interior page) is
    the stream's: the whole cold scan is one request, charged once."""
    proxy, url, primary = proxied
    c = lsvfs.connect(url, name=unique("budget-scan") + ".db", poll_interval="1h", warmup="off",
                      max_requests_per_query=BUDGET)
    c.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    out, n = sent(proxy, lambda: c.execute(SCAN).fetchone())
    assert out == primary.execute(SCAN).fetchone()
    assert n == 1, n
