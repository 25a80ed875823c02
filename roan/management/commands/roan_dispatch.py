from __future__ import annotations

import datetime
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Min, Q
from django.utils import timezone

from roan.pipeline import send


class Command(BaseCommand):
    help = "Send every due pending or failed purge attempt once (for cron and recovery)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=1000, help="Attempts claimed per round.")
        parser.add_argument("--database", default=None, help="Database alias for attempt rows.")
        parser.add_argument(
            "--wait",
            type=float,
            default=0.0,
            help=(
                "Also send what comes due in the next SECONDS (attempts held back by a "
                "rate limit, retries), sleeping until then; e.g. 55 from a cron run each "
                "minute. Default 0: only what is due now."
            ),
        )

    def handle(
        self, *args: Any, batch: int, database: str | None, wait: float, **options: Any
    ) -> None:
        if wait < 0:
            raise CommandError("--wait must be 0 or more")
        deadline = time.monotonic() + wait
        # The last status of each attempt handled: one held back by a rate limit and
        # sent later counts once, as what it ended as.
        handled: dict[int, str] = {}
        while True:
            attempts = send(None, using=database, limit=batch)
            for attempt in attempts:
                handled[attempt.pk] = attempt.status
            if attempts:
                continue
            pause = _until_next_due(database, deadline)
            if pause is None:
                break
            time.sleep(pause)
        counts: dict[str, int] = {}
        for status in handled.values():
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        self.stdout.write(f"roan_dispatch: {len(handled)} attempt(s): {summary or 'nothing due'}")


def _until_next_due(database: str | None, deadline: float) -> float | None:
    """Seconds to sleep before the next attempt comes due, or None to stop now."""
    from roan.limits import paused_backends
    from roan.models import PurgeAttempt

    left = deadline - time.monotonic()
    if left <= 0:
        return None
    rows = PurgeAttempt.objects.db_manager(database).filter(
        Q(status="pending") | Q(status="failed")
    )
    rows = rows.exclude(backend__in=list(paused_backends()))
    soonest = rows.aggregate(
        at=Min("next_attempt_at"), lease=Min("claimed_until", filter=Q(next_attempt_at=None))
    )
    times: list[datetime.datetime] = [t for t in (soonest["at"], soonest["lease"]) if t]
    if not times:
        return None
    seconds: float = (min(times) - timezone.now()).total_seconds()
    if seconds > left:
        return None
    # At least a little: a row another sender holds must not make this spin.
    return min(left, max(0.1, seconds))
