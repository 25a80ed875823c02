"""System checks: risky configuration is reported with a stable id and a hint."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from roan.conf import roan_settings


def check_backends(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from roan.backends import build_backend

    messages: list[checks.CheckMessage] = []
    configured = getattr(settings, "ROAN_BACKENDS", None)
    if configured is not None and not isinstance(configured, dict):
        return [checks.Error("ROAN_BACKENDS must be a dict of alias -> options.", id="roan.E001")]
    for alias, config in roan_settings.BACKENDS.items():
        try:
            # A missing timeout is reported on its own, as roan.E010.
            backend = build_backend(alias, _without_missing_timeout(config))
        except ImproperlyConfigured as exc:
            messages.append(
                checks.Error(
                    str(exc),
                    hint="See the backend options in roan's README.",
                    id="roan.E002",
                )
            )
            continue
        except Exception as exc:
            # A backend's own bug: report it, but not its message, which may quote an
            # option holding a credential.
            messages.append(
                checks.Error(
                    f"ROAN_BACKENDS[{alias!r}] cannot be built ({type(exc).__name__}).",
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


def _no_timeout(value: Any) -> bool:
    """``TIMEOUT`` values that mean "wait for ever" to an HTTP client: None, 0, negative."""
    if isinstance(value, list | tuple):
        return any(_no_timeout(v) for v in value)
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and value <= 0


def _without_missing_timeout(config: Any) -> Any:
    if isinstance(config, dict) and "TIMEOUT" in config and _no_timeout(config["TIMEOUT"]):
        return {k: v for k, v in config.items() if k != "TIMEOUT"}
    return config


def _positive_seconds(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def check_timeouts(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.E010: a backend that could wait for ever on a cache that does not answer."""
    from roan.backends import build_backend

    if not isinstance(getattr(settings, "ROAN_BACKENDS", {}), dict):
        return []  # roan.E001
    messages: list[checks.CheckMessage] = []
    for alias, config in roan_settings.BACKENDS.items():
        if not isinstance(config, dict):
            continue
        if "TIMEOUT" in config and _no_timeout(config["TIMEOUT"]):
            problem = f"ROAN_BACKENDS[{alias!r}]['TIMEOUT'] is {config['TIMEOUT']!r}: no timeout."
        else:
            try:
                backend = build_backend(alias, config)
            except Exception:  # noqa: S112 -- check_backends reports it as roan.E002
                continue
            connect = getattr(backend, "connect_timeout", None)
            read = getattr(backend, "read_timeout", None)
            backend.close()
            if _positive_seconds(connect) and _positive_seconds(read):
                continue
            problem = (
                f"Backend {alias!r} ({config.get('BACKEND')}) leaves its connect or read "
                f"timeout unset (connect_timeout={connect!r}, read_timeout={read!r})."
            )
        messages.append(
            checks.Error(
                problem,
                hint=(
                    "A purge without a timeout can hang a sender on a cache that does not "
                    "answer. Set TIMEOUT to seconds or a (connect, read) pair, such as "
                    "(2, 5); a custom backend calls BaseBackend.__init__, which sets them."
                ),
                id="roan.E010",
            )
        )
    return messages


def check_rate_limit_cache(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.W010: a rate limit kept in a process-local cache holds per process only.

    roan.W011: one kept in a shared cache without atomic counters (database, files)
    holds only roughly when several processes send at once.
    """
    from roan.limits import is_atomic, is_shared

    limited = sorted(
        alias
        for alias, config in roan_settings.BACKENDS.items()
        if isinstance(config, dict) and config.get("RATE_LIMIT")
    )
    if settings.DEBUG or not limited or is_atomic():
        return []
    if is_shared():
        return [
            checks.Warning(
                f"ROAN_CACHE ({roan_settings.CACHE!r}) cannot add to a counter atomically, "
                f"so concurrent senders can exceed the RATE_LIMIT of "
                f"{', '.join(map(repr, limited))} a little.",
                hint="Redis and Memcached count atomically; point ROAN_CACHE at one of them.",
                id="roan.W011",
            )
        ]
    return [
        checks.Warning(
            f"ROAN_CACHE ({roan_settings.CACHE!r}) is local to each process, so the "
            f"RATE_LIMIT of {', '.join(map(repr, limited))} holds per process.",
            hint=(
                "Each process sending purges (web workers, task workers, roan_dispatch) "
                "gets the whole rate. Point ROAN_CACHE at Redis or Memcached to share it."
            ),
            id="roan.W010",
        )
    ]


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


# Query parameter names that carry credentials (api_key, access_token, X-Amz-Signature,
# sig, auth, password...): matched as a part of the name, case-insensitively.
# "key" only as a word ("keys" and "keyword" are not credentials; Fastly's "keys" are tags).
_CREDENTIAL_PARAM = re.compile(
    r"token|secret|passw|pwd|signature|auth|credential"
    r"|(?:^|[-_.]|api|access|private)key(?:$|[-_.])|(?:^|[-_.])sig(?:$|[-_.])",
    re.IGNORECASE,
)


def check_http_url_credentials(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.E040: an ``HTTPBackend`` ``URL`` with a credential in its query string.

    URLs end up in places headers do not: urllib3's DEBUG log line of every request,
    proxies' and the API's access logs, error trackers.
    """
    from roan.backends.http import HTTPBackend

    if not isinstance(getattr(settings, "ROAN_BACKENDS", {}), dict):
        return []  # roan.E001
    messages: list[checks.CheckMessage] = []
    for alias, config in roan_settings.BACKENDS.items():
        if not isinstance(config, dict) or not isinstance(config.get("URL"), str):
            continue
        try:
            cls = import_string(str(config.get("BACKEND")))
        except ImportError:
            continue  # roan.E002
        if not (isinstance(cls, type) and issubclass(cls, HTTPBackend)):
            continue
        try:
            query = urlsplit(config["URL"]).query
        except ValueError:
            continue  # roan.E002 says the URL is not valid
        names = sorted(
            {name for name, _ in parse_qsl(query, keep_blank_values=True)}
            - {"{url}", "{path}", "{host}", "{target}"}
        )
        # Only the names are shown: the values are the secret.
        found = [name for name in names if _CREDENTIAL_PARAM.search(name)]
        if found:
            messages.append(
                checks.Error(
                    f"ROAN_BACKENDS[{alias!r}]['URL'] has what looks like a credential in "
                    f"its query string ({', '.join(found)}).",
                    hint=(
                        "A URL is logged in places headers are not (urllib3's DEBUG log, "
                        "proxies, the API's access log). Send the credential in HEADERS, "
                        "e.g. {'Authorization': 'Bearer ...'}."
                    ),
                    id="roan.E040",
                )
            )
    return messages


def register() -> None:
    checks.register(check_backends, "roan")
    checks.register(check_task_dispatch, "roan")
    checks.register(check_rule_stamp_cache, "roan", deploy=False)
    checks.register(check_admin, "roan")
    checks.register(check_timeouts, "roan")
    checks.register(check_rate_limit_cache, "roan", deploy=False)
    checks.register(check_http_url_credentials, "roan")
