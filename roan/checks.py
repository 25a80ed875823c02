"""System checks: risky configuration is reported with a stable id and a hint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from roan.conf import roan_settings


def check_backends(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from roan.backends import build_backend

    messages: list[checks.CheckMessage] = []
    configured = getattr(settings, "ROAN_BACKENDS", None)
    if configured is not None and not isinstance(configured, dict):
        return [checks.Error("ROAN_BACKENDS must be a dict of alias -> options.", id="roan.E001")]
    for alias, config in roan_settings.BACKENDS.items():
        try:
            backend = build_backend(alias, config)
        except ImproperlyConfigured as exc:
            messages.append(
                checks.Error(
                    str(exc),
                    hint="See the backend options in roan's README.",
                    id="roan.E002",
                )
            )
            continue
        backend.close()
    if roan_settings.DISPATCH not in {"inline", "task"}:
        messages.append(
            checks.Error(
                f"ROAN_DISPATCH is {roan_settings.DISPATCH!r}.",
                hint='Use "inline" (the default) or "task".',
                id="roan.E003",
            )
        )
    return messages


def check_task_dispatch(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``ROAN_DISPATCH = "task"`` needs the Tasks framework and a usable task backend."""
    if roan_settings.DISPATCH != "task":
        return []
    from roan.tasks import tasks_module

    api = tasks_module()
    alias, queue = roan_settings.TASK_BACKEND, roan_settings.TASK_QUEUE
    problem, hint = "", ""
    if api is None:
        problem = 'ROAN_DISPATCH is "task", but Django\'s Tasks framework is not installed.'
        hint = "Use Django 6, or on Django 5.2: pip install roan[tasks]."
    else:
        try:
            backend = api.task_backends[alias]
        except Exception as exc:  # unknown alias, or a BACKEND that does not import
            problem = f"ROAN_TASK_BACKEND {alias!r} is not a usable task backend: {exc}"
            hint = f"Configure {alias!r} in TASKS, or point ROAN_TASK_BACKEND at an alias there."
        else:
            if backend.queues and queue not in backend.queues:
                problem = (
                    f"ROAN_TASK_QUEUE {queue!r} is not among the QUEUES of task backend {alias!r}."
                )
                hint = f"Add {queue!r} to TASKS[{alias!r}]['QUEUES'], or change ROAN_TASK_QUEUE."
    if not problem:
        return []
    return [checks.Error(problem, hint=hint, id="roan.E004")]


def check_rule_stamp_cache(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from roan.rules import stamp_is_shared

    if settings.DEBUG or stamp_is_shared():
        return []
    return [
        checks.Warning(
            f"ROAN_CACHE ({roan_settings.CACHE!r}) is local to each process.",
            hint=(
                "Rule edits still reach other processes, but each checks the database every "
                "ROAN_RULES_TTL seconds. Point ROAN_CACHE at a shared cache (Redis, "
                "Memcached) so they only read a version stamp."
            ),
            id="roan.W001",
        )
    ]


def check_admin(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if "django.contrib.admin" in settings.INSTALLED_APPS:
        return []
    return [
        checks.Warning(
            "django.contrib.admin is not installed.",
            hint="roan's rules, purge log and dashboard live in the Django admin.",
            id="roan.W002",
        )
    ]


def register() -> None:
    checks.register(check_backends, "roan")
    checks.register(check_task_dispatch, "roan")
    checks.register(check_rule_stamp_cache, "roan", deploy=False)
    checks.register(check_admin, "roan")
