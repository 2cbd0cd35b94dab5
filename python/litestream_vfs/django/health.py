"""The router's view of each replica's health, cached: one check per replica
per poll interval (not a query per read), through a connection of its own."""

from __future__ import annotations

import threading
import time

from . import conf
from .status import freshness

#: Seconds before an unreadable replica is tried again.
ERROR_RETRY = 5.0


class _Probe:
    def __init__(self, alias: str):
        self.alias = alias
        self.lock = threading.Lock()
        self.conn = None
        self.checked = float("-inf")
        self.value: dict = {}
        #: Checks made (each one query on the replica and a look at the primary).
        self.checks = 0

    def check(self, max_age: float) -> dict:
        with self.lock:
            now = time.monotonic()
            if self.value.get("error"):
                # An open that failed may have waited its open timeout:
                # not again for every poll interval.
                max_age = max(max_age, ERROR_RETRY)
            if self.value and now - self.checked < max_age:
                return self.value
            self.checks += 1
            try:
                if self.conn is None:
                    self.conn = conf.open_replica(self.alias, check_same_thread=False)
                value = freshness(self.alias, self.conn)
                value["error"] = None
            except Exception as e:  # noqa: BLE001 - an unreadable replica is unhealthy, not a crash
                value = {"healthy": False, "txid": None, "lag_seconds": None,
                         "error": f"{type(e).__name__}: {e}"}
                if self.conn is not None:
                    try:
                        self.conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    self.conn = None
            self.value, self.checked = value, time.monotonic()
            return value


_probes: dict[str, _Probe] = {}
_probes_lock = threading.Lock()


def _probe(alias: str) -> _Probe:
    with _probes_lock:
        probe = _probes.get(alias)
        if probe is None:
            probe = _probes[alias] = _Probe(alias)
        return probe


def health(alias: str, max_age: float | None = None) -> dict:
    """`freshness(alias)` (with `healthy`, `txid`, `lag_seconds`) at most
    `max_age` seconds old (default: the alias's poll interval), or
    `{"healthy": False, "error": ...}` when the replica cannot be read."""
    if max_age is None:
        max_age = conf.poll_interval(alias)
    return _probe(alias).check(max_age)


def healthy(alias: str, max_lag_seconds: float | None) -> bool:
    """Whether `alias` is readable and its `lag_seconds` at most `max_lag_seconds`."""
    h = health(alias)
    if h.get("error") or h.get("lag_seconds") is None:
        return False
    return max_lag_seconds is None or h["lag_seconds"] <= max_lag_seconds


def replica_txid(alias: str, max_age: float) -> int | None:
    h = health(alias, max_age)
    txid = h.get("txid")
    return int(txid, 16) if txid else None


def checks_made(alias: str) -> int:
    """How many health checks this process made of `alias` (for tests)."""
    return _probe(alias).checks


def forget() -> None:
    """Drops every cached check and closes the probes' connections (tests)."""
    with _probes_lock:
        probes = list(_probes.values())
        _probes.clear()
    for p in probes:
        with p.lock:
            if p.conn is not None:
                p.conn.close()
                p.conn = None
