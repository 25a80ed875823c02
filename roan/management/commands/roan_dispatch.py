from __future__ import annotations

import datetime
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import router
from django.db.models import Min, Q
from django.utils import timezone

from roan.models import PurgeAttempt
from roan.outbox.completion import check_due
from roan.outbox.sender import send_ids
from roan.outbox.verify import expire_pending, verifier
from roan.outbox.warming import expire_warming, warmer
from roan.vocabulary import Status

#: How long roan_dispatch waits for its verification probes at most before exiting.
VERIFY_DRAIN_SECONDS = 30.0
#: And for the pages it warms after its purges (WARM), paced by each backend's RATE.
WARM_DRAIN_SECONDS = 120.0


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
        if batch < 1:
            raise CommandError("--batch must be 1 or more")
        db = database or router.db_for_write(PurgeAttempt)
        deadline = time.monotonic() + wait
        # The last status of each attempt handled: one held back by a rate limit and
        # sent later counts once, as what it ended as.
        handled: dict[int, str] = {}
        while True:
            # What is due now, fixed up front: an attempt that fails again with no backoff
            # left, or rows that keep arriving, cannot keep one round going.
            rows = PurgeAttempt.objects.db_manager(db).due().order_by("id")
            due = list(rows.values_list("pk", flat=True))
            for attempt in send_ids(due, using=db, batch=batch):
                handled[attempt.pk] = attempt.status
            pause = _until_next_due(db, deadline)
            if pause is None:
                break
            time.sleep(pause)
        # This process ends here: let the purges' verification probes run first (the
        # thread is a daemon), and close the probes some ended process never ran.
        verifier.drain(timeout=VERIFY_DRAIN_SECONDS)
        expire_pending(using=db)
        warmer.drain(timeout=WARM_DRAIN_SECONDS)
        expire_warming(using=db)
        # CDN invalidations accepted earlier (CloudFront...): are they done yet?
        completed = check_due(using=db)
        counts: dict[str, int] = {}
        for status in handled.values():
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        done = f"; {completed} invalidation(s) completed" if completed else ""
        self.stdout.write(
            f"roan_dispatch: {len(handled)} attempt(s): {summary or 'nothing due'}{done}"
        )


def _until_next_due(database: str, deadline: float) -> float | None:
    """Seconds to sleep before the next attempt comes due, or None to stop now."""
    from roan.pauses import paused_backends

    left = deadline - time.monotonic()
    if left <= 0:
        return None
    rows = PurgeAttempt.objects.db_manager(database).filter(
        Q(status=Status.PENDING) | Q(status=Status.FAILED)
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
