from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from roan.pipeline import send


class Command(BaseCommand):
    help = "Send every due pending or failed purge attempt once (for cron and recovery)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=1000, help="Attempts claimed per round.")
        parser.add_argument("--database", default=None, help="Database alias for attempt rows.")

    def handle(self, *args: Any, batch: int, database: str | None, **options: Any) -> None:
        handled: dict[str, int] = {}
        while True:
            attempts = send(None, using=database, limit=batch)
            if not attempts:
                break
            for attempt in attempts:
                handled[attempt.status] = handled.get(attempt.status, 0) + 1
        total = sum(handled.values())
        summary = (
            ", ".join(f"{n} {status}" for status, n in sorted(handled.items())) or "nothing due"
        )
        self.stdout.write(f"roan_dispatch: {total} attempt(s): {summary}")
