"""Invalidations a CDN finishes in the background: accepted now, completed later.

CloudFront (and Azure Front Door, Akamai) answer a purge with "accepted, in progress"
and an id. Such a backend returns an ``ok`` result with ``in_progress=True``; the sender
records the attempt ``ok`` and, here, its completion ``in_progress`` with a time to ask
again. :func:`check_due` asks the backends about the invalidations whose time has come
and records ``completed`` (with when) or the next time to ask; after ``DEADLINE``
seconds without an answer that it is done, ``unconfirmed``.

:func:`check_due` runs in ``roan_dispatch`` (cron) and in the send task, never in an
editor's request: an invalidation takes seconds to minutes, and nobody should wait.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import router
from django.utils import timezone

from roan import backends as backend_registry
from roan.backends.base import OK, Progress, PurgeResult
from roan.retrying import retried

logger = logging.getLogger(__name__)

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
UNCONFIRMED = "unconfirmed"
#: Seconds to the first status check when the backend does not say (boto3's waiter
#: asks CloudFront every 20 s).
DEFAULT_CHECK_AFTER = 20.0
#: Longest wait between two checks, and how long after the purge roan stops asking.
MAX_CHECK_AFTER = 600.0
DEADLINE = 2 * 3600.0
#: Attempts one :func:`check_due` call looks at at most.
CHECK_BATCH = 500


def _bounded(seconds: float | None) -> float:
    if not isinstance(seconds, int | float) or not seconds > 0:
        return DEFAULT_CHECK_AFTER
    return min(float(seconds), MAX_CHECK_AFTER)


def accepted(attempts: Sequence[Any], results: Mapping[int, PurgeResult], *, using: str) -> None:
    """Mark the ``ok`` attempts whose result is ``in_progress`` as in progress, due for
    a status check (one query per distinct check time)."""
    from roan.models import PurgeAttempt

    now = timezone.now()
    by_time: dict[datetime.datetime, list[int]] = defaultdict(list)
    for attempt in attempts:
        result = results.get(attempt.pk)
        if result is None or not result.in_progress or attempt.status != OK:
            continue
        at = now + datetime.timedelta(seconds=_bounded(result.check_after))
        attempt.completion, attempt.completion_check_at = IN_PROGRESS, at
        by_time[at].append(attempt.pk)
        logger.info(
            "roan: %s %s on %s/%s: invalidation %s accepted, in progress",
            attempt.kind,
            attempt.target,
            attempt.backend,
            attempt.node,
            attempt.purge_id,
        )
    for at, ids in by_time.items():
        rows = PurgeAttempt.objects.using(using).filter(pk__in=ids)
        retried(
            functools.partial(rows.update, completion=IN_PROGRESS, completion_check_at=at),
            using=using,
            what="recording accepted invalidations",
        )


def check_due(*, using: str | None = None, limit: int = CHECK_BATCH) -> int:
    """Ask the backends about the invalidations due for a check; record what they said.

    Returns how many attempts were found completed. Never raises for a backend's
    failure. Reads ``limit`` attempts at a time until none is due: each one it handles
    is completed or due again later, so the loop ends.
    """
    from roan.models import PurgeAttempt

    db = using or router.db_for_write(PurgeAttempt)
    completed = 0
    # What each invalidation's status was in this call: its attempts in a later round
    # are not asked about again.
    answered: dict[tuple[str, str, str], Progress | None] = {}
    while True:
        now = timezone.now()
        due = list(
            PurgeAttempt.objects.using(db)
            .filter(completion=IN_PROGRESS, completion_check_at__lte=now)
            .order_by("completion_check_at", "id")
            .only("id", "backend", "node", "purge_id", "kind", "target", "finished_at")[:limit]
        )
        # One question per invalidation: a batch's attempts share its purge id.
        groups: dict[tuple[str, str], dict[str, list[Any]]] = defaultdict(dict)
        for attempt in due:
            groups[(attempt.backend, attempt.node)].setdefault(attempt.purge_id, []).append(attempt)
        for (alias, node), by_id in groups.items():
            new = [i for i in by_id if i and (alias, node, i) not in answered]
            answers = _ask(alias, node, new) if new else {}
            for purge_id in new:
                answered[(alias, node, purge_id)] = answers.get(purge_id)
            for purge_id, attempts in by_id.items():
                progress = answered.get((alias, node, purge_id))
                completed += retried(
                    functools.partial(_record, attempts, progress, now, db),
                    using=db,
                    what="recording an invalidation's progress",
                )
        if len(due) < limit:
            return completed


def _ask(alias: str, node: str, ids: list[str]) -> dict[str, Progress]:
    try:
        backend = backend_registry.get_backend(alias)
        return backend.status(node, ids)
    except ImproperlyConfigured:
        return {}  # the backend is gone from settings: the deadline ends the checks
    except Exception:
        logger.exception("roan: backend %r raised while checking invalidations", alias)
        return {}


def _record(attempts: list[Any], progress: Progress | None, now: datetime.datetime, db: str) -> int:
    """Record what the provider said about one invalidation on its attempts."""
    from roan.models import PurgeAttempt

    first = attempts[0]
    rows = PurgeAttempt.objects.using(db).filter(
        pk__in=[a.pk for a in attempts], completion=IN_PROGRESS
    )
    what = (first.backend, first.node, first.purge_id, len(attempts))
    if progress is not None and progress.done:
        count = rows.update(completion=COMPLETED, completion_check_at=None, completed_at=now)
        logger.info("roan: %s/%s: invalidation %s completed (%d attempt(s))", *what)
        return count
    sent = min((a.finished_at or now) for a in attempts)
    if (now - sent).total_seconds() > DEADLINE:
        rows.update(completion=UNCONFIRMED, completion_check_at=None)
        logger.warning(
            "roan: %s/%s: invalidation %s (%d attempt(s)) not reported done after %d s",
            *what,
            DEADLINE,
        )
        return 0
    wait = progress.check_after if progress is not None else None
    if progress is None or progress.error:
        # No answer: ask again, less often the longer it goes unanswered.
        wait = min(MAX_CHECK_AFTER, max(DEFAULT_CHECK_AFTER, (now - sent).total_seconds()))
    rows.update(completion_check_at=now + datetime.timedelta(seconds=_bounded(wait)))
    return 0


def in_progress(*, using: str | None = None) -> int:
    """How many invalidations are accepted and not yet reported done (the dashboard)."""
    from roan.models import PurgeAttempt

    db = using or router.db_for_read(PurgeAttempt)
    return PurgeAttempt.objects.using(db).filter(completion=IN_PROGRESS).count()
