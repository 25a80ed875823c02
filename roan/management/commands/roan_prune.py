"""Retention: delete finished attempts older than ``--days`` (or ``ROAN_RETENTION_DAYS``)
with their kept tries, and the tag index's expired rows (every run: they are never read again);
the index kept within ROAN_TAG_INDEX_MAX_URLS_PER_TAG and ROAN_TAG_INDEX_MAX_ROWS.

Each batch is two short statements, each committed on its own, so a large prune never holds
locks on the attempt table for long and senders keep writing meanwhile.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from roan import shared_cache
from roan.conf import roan_settings
from roan.models import PurgeAttempt, PurgeTry
from roan.tags import index as tag_index
from roan.tags import purges as tag_purges
from roan.vocabulary import FINAL_STATUSES


class Command(BaseCommand):
    help = (
        "Delete finished purge attempts older than --days (default: ROAN_RETENTION_DAYS), "
        "in small batches; and the expired rows of the URL<->tag index, keeping it within "
        "ROAN_TAG_INDEX_MAX_URLS_PER_TAG and ROAN_TAG_INDEX_MAX_ROWS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Keep this many days (default: the ROAN_RETENTION_DAYS setting).",
        )
        parser.add_argument("--status", action="append", help="Only these statuses (repeatable).")
        parser.add_argument(
            "--batch",
            type=int,
            default=5000,
            help="Rows deleted per statement, so no long lock is held (default 5000).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(
        self,
        *args: Any,
        days: int | None,
        status: list[str] | None,
        batch: int,
        dry_run: bool,
        **options: Any,
    ) -> None:
        if batch < 1:
            raise CommandError("--batch must be 1 or more")
        expired = tag_index.prune(batch=batch, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        self.stdout.write(f"roan_prune: tag index: {verb} {expired} expired row(s)")
        per_tag = tag_purges.evict_tag_overflow(batch=batch, dry_run=dry_run)
        if per_tag:
            verb = "would forget" if dry_run else "forgot"
            self.stdout.write(
                f"roan_prune: tag index: {verb} {per_tag} row(s) over "
                f"ROAN_TAG_INDEX_MAX_URLS_PER_TAG ({roan_settings.TAG_INDEX_MAX_URLS_PER_TAG})"
            )
        evicted = tag_purges.evict_over_bound(batch=batch, dry_run=dry_run)
        if evicted:
            verb = "would evict" if dry_run else "purged and evicted"
            self.stdout.write(
                f"roan_prune: tag index: {verb} {evicted} URL(s) over ROAN_TAG_INDEX_MAX_ROWS "
                f"({roan_settings.TAG_INDEX_MAX_ROWS})"
            )
        if not dry_run:
            counted = tag_index.size(fresh=True)
            self.stdout.write(
                f"roan_prune: tag index: {counted['rows']} live row(s), {counted['urls']} URL(s)"
            )
        if days is None:
            days = roan_settings.RETENTION_DAYS
            if days is None:
                raise CommandError("give --days, or set ROAN_RETENTION_DAYS")
        if days < 0:
            raise CommandError("--days must be 0 or more")
        if batch < 1:
            raise CommandError("--batch must be 1 or more")
        final = FINAL_STATUSES
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
            # Two plain DELETEs, each committed on its own: only the kept tries reference
            # attempt rows (found by their unique (attempt, number) index), so Django's
            # collector (which loads every row and sends delete signals for each) has
            # nothing to do but slow this down. Tries first; stopped in between, a
            # finished attempt is left without its tries and goes on the next run.
            tries_qs = PurgeTry.objects.filter(attempt_id__in=ids)
            tries_qs._raw_delete(tries_qs.db)
            batch_qs = PurgeAttempt.objects.filter(id__in=ids)
            deleted += batch_qs._raw_delete(batch_qs.db)
        if deleted and days < 8:
            # The dashboard keeps counts of the last week's closed hours (roan.admin.rollup).
            shared_cache.forget_dashboard()
        self.stdout.write(
            f"roan_prune: deleted {deleted} attempt(s) before {cutoff:%Y-%m-%d %H:%M}"
        )
