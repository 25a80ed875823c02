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
    checks.register(check_rule_stamp_cache, "roan", deploy=False)
    checks.register(check_admin, "roan")
