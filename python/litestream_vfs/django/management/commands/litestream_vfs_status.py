"""`python manage.py litestream_vfs_status [ALIAS ...] [--json]`

Prints the state of every replica alias of `LITESTREAM["vfs"]` (or of the
ones named): TXID, time, lag, cache and storage figures, hydration. Exits
with status 1 when a replica cannot be read, so it serves as a health check.
"""

from __future__ import annotations

import json as _json

from django.core.management.base import BaseCommand, CommandError

from ... import conf
from ...status import get_vfs_status


def _size(n) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "?"


def render(status: dict) -> str:
    lines = [f"{status['alias']}: {status['replica_url']}"]
    if status["error"]:
        lines.append(f"  error: {status['error']}")
        return "\n".join(lines)
    cache, storage, hydration = status["cache"], status["storage"], status["hydration"]
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


class Command(BaseCommand):
    help = "Show the TXID, time, lag, cache and hydration of each Litestream VFS replica alias."

    def add_arguments(self, parser):
        parser.add_argument("aliases", nargs="*", metavar="ALIAS", help="default: every alias of LITESTREAM['vfs']")
        parser.add_argument("--json", action="store_true", help="one JSON list of the statuses")

    def handle(self, *args, aliases=(), json=False, **options):  # noqa: A002 - the option's name
        known = list(conf.replicas())
        if not known:
            raise CommandError('no replica aliases: settings.LITESTREAM["vfs"] is empty')
        unknown = [a for a in aliases if a not in known]
        if unknown:
            raise CommandError(f"not a replica alias: {', '.join(unknown)} (known: {', '.join(known)})")
        statuses = [get_vfs_status(alias) for alias in (aliases or known)]
        if json:
            self.stdout.write(_json.dumps(statuses, indent=2))
        else:
            self.stdout.write("\n".join(render(s) for s in statuses))
        failed = [s["alias"] for s in statuses if s["error"]]
        if failed:
            raise CommandError(f"cannot read {', '.join(failed)}", returncode=1)
