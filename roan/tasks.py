"""The Tasks-framework entry point: a thin call into ``roan.outbox.sender.send``.

Used when ``ROAN_DISPATCH = "task"``: after commit, roan enqueues :data:`send_attempts`
with the ids of the committed pending attempts on ``ROAN_TASK_BACKEND`` /
``ROAN_TASK_QUEUE``. Django 6 ships ``django.tasks``; on Django 5.2 install the
``django-tasks`` backport (``pip install roan[tasks]``).

The task schedules its own retries: attempts that failed and may be retried are enqueued
again with ``run_after`` set to when they are due (rounded up to a whole second), and a
task that runs early, before its attempts are due, enqueues them again rather than
dropping them. A worker that dies mid-batch leaves its
rows claimed until ``ROAN_RETRY["LEASE"]`` ends; ``roan_dispatch`` (from cron) sends them
then, and also anything whose retry task was lost.
"""

from __future__ import annotations

import datetime
import importlib
import logging
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from django.utils import timezone

from roan.backends.base import FAILED
from roan.conf import roan_settings
from roan.vocabulary import Status

logger = logging.getLogger(__name__)


def tasks_module() -> ModuleType | None:
    """``django.tasks`` (Django >= 6.0), else the ``django_tasks`` backport, else None."""
    for name in ("django.tasks", "django_tasks"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def send_attempts(ids: list[int]) -> int:
    """Send these attempts (those still due), then schedule retries for the failures.

    Returns how many attempts this run handled.
    """
    from roan.outbox.completion import check_due
    from roan.outbox.sender import send_ids

    attempts = send_ids(ids)
    schedule_retries(attempts)
    handled = {attempt.pk for attempt in attempts}
    schedule_retries(not_yet_due([pk for pk in ids if pk not in handled]))
    # The worker, not the editor, asks a CDN whether earlier invalidations are done.
    check_due()
    return len(attempts)


def not_yet_due(ids: Sequence[int]) -> list[Any]:
    """Those of ``ids`` that wait for a ``next_attempt_at`` still to come, held by nobody.

    A deferred task may run before the time it was deferred to: RQ's scheduler, for one,
    keeps whole seconds and releases a job due at :27.874 at :27. Such a run finds its
    attempts not due and sends nothing; they must be queued again, or only
    ``roan_dispatch`` would ever send them. Attempts another sender holds, and those a
    pause keeps pending without a time, are left to whoever holds or resumes them.
    """
    from django.db.models import Q

    from roan.models import PurgeAttempt

    if not ids:
        return []
    now = timezone.now()
    return list(
        PurgeAttempt.objects.filter(
            pk__in=list(ids), status__in=[FAILED, Status.PENDING], next_attempt_at__gt=now
        )
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .only("pk", "status", "next_attempt_at")
    )


def whole_second_after(when: datetime.datetime) -> datetime.datetime:
    """``when`` rounded up to a whole second: a scheduler that drops the fraction (RQ
    does) then still runs the task no sooner than asked."""
    if when.microsecond == 0:
        return when
    return when.replace(microsecond=0) + datetime.timedelta(seconds=1)


def _declare(function: Any) -> Any:
    # The decorator validates the task against the "default" task backend; a project
    # whose TASKS has no "default" gets it declared on ROAN_TASK_BACKEND instead (this
    # module is only imported once settings are ready: at dispatch, or by a worker).
    if _tasks is None:
        return function
    try:
        return _tasks.task(function)
    except Exception:
        return _tasks.task(backend=roan_settings.TASK_BACKEND)(function)


# The worker finds the task by its function's dotted path (``roan.tasks.send_attempts``),
# so the declared task must replace the function under the same name.
_tasks = tasks_module()
send_attempts = _declare(send_attempts)


def _configured(run_after: datetime.datetime | None = None) -> Any:
    if _tasks is None:
        raise RuntimeError(
            'ROAN_DISPATCH = "task" needs Django\'s Tasks framework: Django 6, or the '
            "django-tasks package on Django 5.2 (pip install roan[tasks])."
        )
    task: Any = send_attempts
    return task.using(
        backend=roan_settings.TASK_BACKEND,
        queue_name=roan_settings.TASK_QUEUE,
        run_after=run_after,
    )


def enqueue_send(ids: list[int]) -> None:
    """Enqueue the sending of ``ids`` (the rows stay pending until a worker runs it)."""
    _configured().enqueue(ids)


def enqueue_send_at(ids: list[int], when: datetime.datetime) -> bool:
    """Enqueue the sending of ``ids`` to run at ``when`` (a purge scheduled by content,
    see :mod:`roan.outbox.schedule`); False, and nothing enqueued, when the task backend cannot
    defer a task: ``roan_dispatch`` then sends them when due."""
    backend = _tasks.task_backends[roan_settings.TASK_BACKEND] if _tasks is not None else None
    if backend is None or not backend.supports_defer:
        return False
    _configured(whole_second_after(when)).enqueue(ids)
    return True


def retry_batches(
    due: Sequence[tuple[int, datetime.datetime]], now: datetime.datetime
) -> list[tuple[datetime.datetime, list[int]]]:
    """Group ``(id, next_attempt_at)`` pairs into as few retry tasks as is reasonable.

    Jitter gives every failure its own time; one task each would flood the queue. A batch
    runs when its last member is due, and it takes in rows due at most a quarter of their
    wait (and at least one second) after its first member, so no row waits much longer
    than its backoff asked.
    """
    batches: list[tuple[datetime.datetime, list[int]]] = []
    start: datetime.datetime | None = None
    for pk, when in sorted(due, key=lambda pair: pair[1]):
        if start is not None and when <= start + max(
            datetime.timedelta(seconds=1), (start - now) / 4
        ):
            batches[-1] = (when, [*batches[-1][1], pk])
            continue
        start = when
        batches.append((when, [pk]))
    return batches


def schedule_retries(attempts: Sequence[Any]) -> None:
    """Enqueue a deferred send for each batch of ``attempts`` that must go again later:
    retryable failures, and pending ones a rate limit held back."""
    due = [
        (a.pk, a.next_attempt_at)
        for a in attempts
        if a.status in (FAILED, Status.PENDING) and a.next_attempt_at is not None
    ]
    if not due:
        return
    try:
        assert _tasks is not None  # a task is running, so the framework is here
        backend = _tasks.task_backends[roan_settings.TASK_BACKEND]
        if not backend.supports_defer:
            # e.g. the immediate backend: roan_dispatch from cron sends them when due.
            logger.info(
                "roan: task backend %r cannot defer; %d retry(ies) wait for roan_dispatch",
                roan_settings.TASK_BACKEND,
                len(due),
            )
            return
        for run_after, ids in retry_batches(due, timezone.now()):
            _configured(whole_second_after(run_after)).enqueue(ids)
    except Exception:
        # The rows keep their next_attempt_at: roan_dispatch finds them when due.
        logger.exception("roan: could not schedule %d retry(ies)", len(due))
