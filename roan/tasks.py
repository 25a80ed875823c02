"""The Tasks-framework entry point: a thin call into ``roan.pipeline.send``.

Used when ``ROAN_DISPATCH = "task"``: after commit, roan enqueues :func:`send_attempts`
with the ids of the committed pending attempts on ``ROAN_TASK_BACKEND`` /
``ROAN_TASK_QUEUE``. Django 6 ships ``django.tasks``; on Django 5.2 install the
``django-tasks`` backport (``pip install roan[tasks]``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from roan.conf import roan_settings


def _task_decorator() -> Any:
    # django.tasks on Django >= 6.0; the django-tasks backport on 5.2; else nothing.
    for module in ("django.tasks", "django_tasks"):
        try:
            return importlib.import_module(module).task
        except ImportError:
            continue
    return None


_task = _task_decorator()


def _send_attempts(ids: list[int]) -> int:
    from roan.pipeline import send

    return len(send(ids))


send_attempts: Any = _task()(_send_attempts) if _task is not None else None


def enqueue_send(ids: list[int]) -> None:
    """Enqueue the sending of ``ids`` (the rows stay pending until a worker runs it)."""
    if send_attempts is None:
        raise RuntimeError(
            'ROAN_DISPATCH = "task" needs Django\'s Tasks framework: Django 6, or the '
            "django-tasks package on Django 5.2."
        )
    configured: Callable[..., Any] = send_attempts.using(
        backend=roan_settings.TASK_BACKEND, queue_name=roan_settings.TASK_QUEUE
    )
    configured.enqueue(ids)  # type: ignore[attr-defined]
