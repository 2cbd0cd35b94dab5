"""The router's view of each replica's health: the last check's result,
refreshed off the request path, so that routing never waits on storage.

- `health(alias)` answers at once with the last finished check (None before
  the first one). When that is older than the alias's poll interval (5 s
  after a check that failed) and no check of the alias is running, it
  starts one in a thread of its own: one check at a time per alias, at most
  one per poll interval, each through a connection of its own and bounded
  by the replica's `open_timeout` / `storage_timeout`.
- `healthy(alias, max_lag)` is False while no check has finished (the read
  goes to the write alias), and otherwise ages the last result: the
  replica may now lag by its `lag_seconds` plus the time since that check
  started. So a check that hangs (storage gone silent) cannot keep a
  replica healthy on an old result: once that sum passes `max_lag` its
  reads go to the write alias, whatever the check is doing.
"""

from __future__ import annotations

import os
import threading
import time

from . import conf
from .status import freshness

#: Seconds before an unreadable replica is tried again.
ERROR_RETRY = 5.0


class _Probe:
    """One replica's checks. `lock` guards the fields and is never held
    across a check: only the running check's thread touches `conn`."""

    def __init__(self, alias: str):
        self.alias = alias
        self.lock = threading.Lock()
        self.finished_check = threading.Condition(self.lock)
        self.conn = None
        self.value: dict | None = None
        #: monotonic() at the start and at the end of the check that gave `value`.
        self.started = self.finished = float("-inf")
        self.running = False
        self.closed = False
        #: Checks started (each one query on the replica and a look at the primary).
        self.checks = 0

    def view(self, max_age: float) -> tuple[dict | None, float]:
        """The last result and its age (seconds since its check started);
        starts a check when that is older than `max_age` and none runs."""
        with self.lock:
            now = time.monotonic()
            value = self.value
            if value is not None and value.get("error"):
                # An open that failed may have waited its open timeout:
                # not again for every poll interval.
                max_age = max(max_age, ERROR_RETRY)
            start = (not self.running and not self.closed
                     and (value is None or now - self.finished >= max_age))
            if start:
                self.running = True
                self.checks += 1
            age = now - self.started
        if start:
            self._start()
        return value, age

    def _start(self) -> None:
        try:
            threading.Thread(target=self._run, name=f"litestream-health-{self.alias}", daemon=True).start()
        except BaseException:  # noqa: BLE001 - no thread (interpreter shutting down): the next view tries again
            with self.lock:
                self.running = False
                self.finished_check.notify_all()

    def _run(self) -> None:
        started, value = time.monotonic(), None
        try:
            value = self._check()
        finally:
            # Lands on every path: a check that raised still ends, so the next can start.
            if value is None:
                value = _failed("the check did not finish")
            with self.lock:
                self.value, self.started, self.finished = value, started, time.monotonic()
                self.running = False
                drop = self.conn if self.closed else None
                if drop is not None:
                    self.conn = None
                self.finished_check.notify_all()
            _close(drop)

    def _check(self) -> dict:
        try:
            if self.conn is None:
                self.conn = conf.open_replica(self.alias, check_same_thread=False)
            value = freshness(self.alias, self.conn)
            value["error"] = None
            return value
        except Exception as e:  # noqa: BLE001 - an unreadable replica is unhealthy, not a crash
            conn, self.conn = self.conn, None
            _close(conn)
            return _failed(f"{type(e).__name__}: {e}")

    def wait(self, timeout: float) -> bool:
        """Waits at most `timeout` seconds for a finished check."""
        with self.lock:
            return self.finished_check.wait_for(lambda: self.value is not None, timeout)


def _failed(reason: str) -> dict:
    return {"healthy": False, "txid": None, "lag_seconds": None, "error": reason}


def _close(conn) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection: nothing left to do
            pass


_probes: dict[str, _Probe] = {}
_probes_lock = threading.Lock()


def _probe(alias: str) -> _Probe:
    with _probes_lock:
        probe = _probes.get(alias)
        if probe is None:
            probe = _probes[alias] = _Probe(alias)
        return probe


def health(alias: str, max_age: float | None = None) -> dict | None:
    """The last finished check of `alias`: `freshness(alias)` (with
    `healthy`, `txid`, `lag_seconds`), `{"healthy": False, "error": ...}`
    when the replica could not be read, or None before the first check
    finished. Never waits: starts a check in the background when the last
    is older than `max_age` seconds (default: the alias's poll interval)."""
    if max_age is None:
        max_age = conf.poll_interval(alias)
    return _probe(alias).view(max_age)[0]


def healthy(alias: str, max_lag_seconds: float | None) -> bool:
    """Whether `alias` was readable at its last check and its `lag_seconds`
    plus the time since that check started is at most `max_lag_seconds`
    (None: any readable replica). False before the first check finished."""
    value, age = _probe(alias).view(conf.poll_interval(alias))
    if value is None or value.get("error") or value.get("lag_seconds") is None:
        return False
    return max_lag_seconds is None or value["lag_seconds"] + age <= max_lag_seconds


def replica_txid(alias: str, max_age: float) -> int | None:
    """The replica's TXID at its last check (it only moves forward, so an
    old answer errs on the side of "not there yet"); never waits."""
    value = _probe(alias).view(max_age)[0]
    txid = (value or {}).get("txid")
    return int(txid, 16) if txid else None


def wait_for_check(alias: str, timeout: float) -> bool:
    """Starts a check of `alias` if none has finished and waits at most
    `timeout` seconds for one: True once the router has a result to go by.
    For start-up warm-ups and tests, never for the request path."""
    probe = _probe(alias)
    probe.view(conf.poll_interval(alias))
    return probe.wait(timeout)


def checks_made(alias: str) -> int:
    """How many health checks this process started of `alias` (for tests)."""
    return _probe(alias).checks


def checking(alias: str) -> bool:
    """Whether a check of `alias` is running now (for tests)."""
    probe = _probe(alias)
    with probe.lock:
        return probe.running


def forget() -> None:
    """Drops every cached check and closes the probes' connections (tests);
    a running check closes its own when it ends."""
    with _probes_lock:
        probes = list(_probes.values())
        _probes.clear()
    for p in probes:
        with p.lock:
            p.closed = True
            conn = None if p.running else p.conn
            if conn is not None:
                p.conn = None
        _close(conn)


#: Probes of the parent process, kept (never closed) in a forked child.
_inherited: list[_Probe] = []


def _after_fork_in_child() -> None:
    """A child has no check threads: its probes start afresh. The parent's
    are kept unclosed, their connections belong to the parent."""
    global _probes_lock
    _inherited.extend(_probes.values())
    _probes.clear()
    _probes_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
