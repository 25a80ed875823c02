from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import router

from roan.models import PurgeAttempt
from roan.pipeline import send


class Command(BaseCommand):
    help = "Send every due pending or failed purge attempt once (for cron and recovery)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=1000, help="Attempts claimed per round.")
        parser.add_argument("--database", default=None, help="Database alias for attempt rows.")

    def handle(self, *args: Any, batch: int, database: str | None, **options: Any) -> None:
        db = database or router.db_for_write(PurgeAttempt)
        # What is due now, fixed up front: an attempt that fails again with no backoff
        # left, or rows that keep arriving, cannot keep one run going.
        due = list(
            PurgeAttempt.objects.db_manager(db).due().order_by("id").values_list("pk", flat=True)
        )
        handled: dict[str, int] = {}
        for start in range(0, len(due), max(1, batch)):
            for attempt in send(due[start : start + batch], using=db, limit=batch):
                handled[attempt.status] = handled.get(attempt.status, 0) + 1
        total = sum(handled.values())
        summary = (
            ", ".join(f"{n} {status}" for status, n in sorted(handled.items())) or "nothing due"
        )
        self.stdout.write(f"roan_dispatch: {total} attempt(s): {summary}")
