from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from roan.models import PurgeAttempt


class Command(BaseCommand):
    help = "Delete finished purge attempts older than --days, in small batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, required=True, help="Keep this many days.")
        parser.add_argument("--status", action="append", help="Only these statuses (repeatable).")
        parser.add_argument("--batch", type=int, default=5000)
        parser.add_argument("--dry-run", action="store_true")

    def handle(
        self,
        *args: Any,
        days: int,
        status: list[str] | None,
        batch: int,
        dry_run: bool,
        **options: Any,
    ) -> None:
        if days < 0:
            raise CommandError("--days must be 0 or more")
        final = {"ok", "not_cached", "gave_up", "skipped"}
        statuses = set(status or final)
        if statuses - final:
            raise CommandError(f"only finished attempts can be pruned: {', '.join(sorted(final))}")
        cutoff = timezone.now() - datetime.timedelta(days=days)
        qs = PurgeAttempt.objects.filter(created_at__lt=cutoff, status__in=statuses)
        if dry_run:
            self.stdout.write(
                f"roan_prune: would delete {qs.count()} attempt(s) before {cutoff:%Y-%m-%d %H:%M}"
            )
            return
        deleted = 0
        while True:
            ids = list(qs.order_by("id").values_list("id", flat=True)[:batch])
            if not ids:
                break
            deleted += PurgeAttempt.objects.filter(id__in=ids).delete()[0]
        self.stdout.write(
            f"roan_prune: deleted {deleted} attempt(s) before {cutoff:%Y-%m-%d %H:%M}"
        )
