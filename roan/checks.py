"""System checks: risky configuration is reported with a stable id and a hint."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.utils.module_loading import import_string

from roan.backends.options import parse_verify, parse_warm
from roan.conf import DEFAULT_PURGE_URL, roan_settings
from roan.rules.access import ROAN_APP, SENSITIVE_APPS, is_roan_model, is_sensitive


def check_backends(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from roan.backends import build_backend

    messages: list[checks.CheckMessage] = []
    configured = getattr(settings, "ROAN_BACKENDS", None)
    if configured is not None and not isinstance(configured, dict):
        return [checks.Error("ROAN_BACKENDS must be a dict of alias -> options.", id="roan.E001")]
    for alias, config in roan_settings.BACKENDS.items():
        try:
            # A missing timeout is reported on its own, as roan.E010; VERIFY as roan.E110.
            backend = build_backend(alias, _without_verify(_without_missing_timeout(config)))
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


def _without_verify(config: Any) -> Any:
    if isinstance(config, dict) and ("VERIFY" in config or "WARM" in config):
        return {k: v for k, v in config.items() if k not in ("VERIFY", "WARM")}
    return config


def check_verify(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A backend's VERIFY and WARM options: valid, and fetching only from a host in its
    HOSTS; ``ROAN_VERIFY_SAMPLE`` a fraction."""
    messages: list[checks.CheckMessage] = []
    sample = getattr(settings, "ROAN_VERIFY_SAMPLE", 0.1)
    if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 <= sample <= 1:
        messages.append(
            checks.Error(
                f"ROAN_VERIFY_SAMPLE must be a number from 0 to 1, not {sample!r}.",
                hint="0.1 probes a tenth of the purges; 0 turns the sampled verification off.",
                id="roan.E110",
            )
        )
    for alias, config in roan_settings.BACKENDS.items():
        if not isinstance(config, dict):
            continue  # roan.E002
        try:
            parse_verify(alias, config)
        except ImproperlyConfigured as exc:
            messages.append(
                checks.Error(
                    str(exc),
                    hint=(
                        'Give VERIFY a BASE_URL like "https://www.example.com" whose host is '
                        "one of the backend's HOSTS (the probe never fetches from elsewhere)."
                    ),
                    id="roan.E110",
                )
            )
        try:
            parse_warm(alias, config)
        except ImproperlyConfigured as exc:
            messages.append(
                checks.Error(
                    str(exc),
                    hint=(
                        'Give WARM a BASE_URL like "https://www.example.com" whose host is '
                        "one of the backend's HOSTS (roan never warms pages elsewhere)."
                    ),
                    id="roan.E111",
                )
            )
    return messages


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
    from roan.outbox.limits import rate_limit
    from roan.shared_cache import is_atomic, is_shared

    # A CDN backend has its provider's limit by default (roan.outbox.limits.rate_limit).
    limited = sorted(alias for alias in roan_settings.BACKENDS if rate_limit(alias))
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


#: Seconds roan.W004 asks a SQLite connection to wait for the write lock, at least.
SQLITE_MIN_TIMEOUT = 5
#: What its hint suggests.
SQLITE_TIMEOUT = 20


def check_sqlite_writers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.W004: roan's attempts are in a SQLite file opened without
    ``"transaction_mode": "IMMEDIATE"`` (or ``"EXCLUSIVE"``) and an explicit ``"timeout"``
    of at least ``SQLITE_MIN_TIMEOUT`` seconds.

    SQLite lets one writer in at a time. A default (deferred) transaction that read
    before it writes cannot wait for the lock: it fails at once with "database is
    locked", whatever the timeout. roan's writers meet on every site with more than one
    thread or process: an editor's save appends attempts, the sender claims and records
    them, the tag middleware indexes each rendered page, and ``ROAN_DISPATCH = "task"``
    or a ``roan_dispatch`` cron job adds a process of its own. Every server Django ships
    or recommends runs several (runserver's threads, gunicorn's workers), so this warns
    for every file-backed SQLite database without both options, not only with task
    dispatch; an in-memory database is one process's by construction. The timeout is
    asked for explicitly because it is how long a save may wait for another process's
    write (``roan_dispatch`` records a batch in one transaction), which a site should
    choose rather than inherit (sqlite3's 5 s).
    """
    from django.db import connections, router
    from django.utils.connection import ConnectionDoesNotExist

    from roan.models import PurgeAttempt

    alias = router.db_for_write(PurgeAttempt)
    try:
        settings_dict = connections[alias].settings_dict
    except ConnectionDoesNotExist:
        return []
    return sqlite_writers(alias, settings_dict)


def sqlite_writers(alias: str, settings_dict: Mapping[str, Any]) -> list[checks.CheckMessage]:
    """roan.W004 for the database ``alias`` of ``settings_dict`` (see above)."""
    name = str(settings_dict.get("NAME") or "")
    engine = str(settings_dict.get("ENGINE") or "")
    in_memory = name == ":memory:" or "mode=memory" in name
    if not engine.endswith(".sqlite3") or not name or in_memory:
        return []
    options = dict(settings_dict.get("OPTIONS") or {})
    mode = options.get("transaction_mode")
    timeout = options.get("timeout")
    missing = []
    if not (isinstance(mode, str) and mode.upper() in {"IMMEDIATE", "EXCLUSIVE"}):
        missing.append('"transaction_mode": "IMMEDIATE"')
        options["transaction_mode"] = "IMMEDIATE"
    if not (isinstance(timeout, int | float) and timeout >= SQLITE_MIN_TIMEOUT):
        missing.append(f'a "timeout" of {SQLITE_MIN_TIMEOUT} seconds or more')
        options["timeout"] = SQLITE_TIMEOUT
    if not missing:
        return []
    return [
        checks.Warning(
            f"roan writes its attempts to the SQLite database {alias!r}, whose OPTIONS "
            f"lack {' and '.join(missing)}: with several threads or processes (web "
            "workers, a task worker, roan_dispatch), saves can fail with "
            '"database is locked".',
            hint=(
                f"Set DATABASES[{alias!r}]['OPTIONS'] = {options!r}: each transaction "
                "then waits for SQLite's one writer lock, up to the timeout (make it longer "
                "than any process's longest write transaction), instead of failing."
            ),
            id="roan.W004",
        )
    ]


def check_rule_stamp_cache(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from roan.rules.index import stamp_is_shared

    if settings.DEBUG or stamp_is_shared():
        return []
    return [
        checks.Warning(
            f"ROAN_CACHE ({roan_settings.CACHE!r}) is local to each process.",
            hint=(
                "Rule edits still reach other processes, but each checks the database every "
                "ROAN_RULES_TTL seconds, and the render guard (ROAN_RENDER_GUARD), which "
                "keeps a page rendered during a change out of the caches, only sees the "
                "changes made by its own process. Point ROAN_CACHE at a shared cache (Redis, "
                "Memcached, the database or file cache) so they only read a version stamp "
                "and every process sees every change."
            ),
            id="roan.W001",
        )
    ]


def _allowed_hosts() -> list[str]:
    """``ALLOWED_HOSTS`` as Django applies it (with ``DEBUG``, empty means localhost)."""
    allowed = [str(h) for h in getattr(settings, "ALLOWED_HOSTS", None) or ()]
    if not allowed and settings.DEBUG:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return allowed


def _keys_by_host(backend: Any) -> bool:
    """Whether ``backend`` purges URLs whose cache entries are keyed by the page's host:
    nginx and Varnish URL purges (the ``Host`` header), an ``HTTPBackend`` whose ``URL``
    sends ``{url}`` or ``{host}``, Django's page cache. CDN backends require ``HOSTS``
    already; a tag-only or path-only backend sends no host."""
    from roan.backends._pipelined import HTTPNodesBackend
    from roan.backends.base import URL
    from roan.backends.django_cache import DjangoCacheBackend
    from roan.backends.http import HTTPBackend

    if URL not in backend.capabilities:
        return False
    if isinstance(backend, HTTPBackend):
        return "{url}" in backend.template or "{host}" in backend.template
    return isinstance(backend, HTTPNodesBackend | DjangoCacheBackend)


def _suggested_hosts(allowed: list[str]) -> list[str]:
    named = [h.lstrip(".") for h in allowed if h not in {"*", ""} and h.lstrip(".")]
    return named[:2] or ["www.example.com"]


def check_page_hosts(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.W005: a backend that purges URLs keyed by host has no ``HOSTS``, or none of
    its ``HOSTS`` is in ``ALLOWED_HOSTS``.

    Without ``HOSTS``, an nginx or Varnish purge carries the purge server's own address
    as its ``Host``; the pages readers fetched are cached under their host name, so every
    purge answers 404, is recorded "not cached" (a success), and the page stays stale.
    Hosts Django refuses are hosts no page was ever rendered, so cached, under.
    """
    from django.http.request import split_domain_port, validate_host

    from roan.backends import build_backend

    configured = getattr(settings, "ROAN_BACKENDS", None)
    if configured is None and getattr(settings, "ROAN_PURGE_URL", None) is None:
        return []  # no purge target chosen: roan.W003 says so in production
    if configured is not None and not isinstance(configured, dict):
        return []  # roan.E001
    allowed = _allowed_hosts()
    suggested = _suggested_hosts(allowed)
    messages: list[checks.CheckMessage] = []
    for alias, config in roan_settings.BACKENDS.items():
        try:
            backend = build_backend(alias, config)
        except Exception:  # noqa: S112 -- check_backends reports it as roan.E002
            continue
        try:
            relevant = _keys_by_host(backend)
            hosts = list(backend.hosts)
        finally:
            backend.close()
        if not relevant:
            continue
        where = f"ROAN_BACKENDS[{alias!r}]"
        if not hosts:
            if configured is None:
                where = "ROAN_PURGE_URL"
                hint = (
                    "ROAN_PURGE_URL cannot name hosts: replace it with ROAN_BACKENDS = "
                    f"{{'default': {{'BACKEND': 'roan.backends.nginx.NginxBackend', "
                    f"'LOCATION': {roan_settings.PURGE_URL!r}, 'HOSTS': {suggested!r}}}}} "
                    "with the host names readers use."
                )
            else:
                hint = (
                    f"Set {where}['HOSTS'] = {suggested!r}: the host names readers use, "
                    "as the cache keys them (with the port if the cache key has one)."
                )
            messages.append(
                checks.Warning(
                    f"{where} purges URLs but names no HOSTS: each purge is sent with the "
                    "purge server's own address as its Host, while pages are cached under "
                    "the host readers use, so purges answer 404, are recorded as "
                    "'not cached', and the pages stay stale.",
                    hint=hint,
                    id="roan.W005",
                )
            )
            continue
        if not allowed or "*" in allowed:
            continue
        if not any(validate_host(split_domain_port(h)[0], allowed) for h in hosts):
            messages.append(
                checks.Warning(
                    f"None of {where}['HOSTS'] ({', '.join(hosts)}) is in ALLOWED_HOSTS: "
                    "Django answers 400 to those hosts, so no page is cached under them, "
                    "and every purge answers 404 ('not cached') while the pages readers "
                    "get stay stale.",
                    hint=(
                        f"List the host names readers use, e.g. {where}['HOSTS'] = "
                        f"{suggested!r}, or add the HOSTS to ALLOWED_HOSTS."
                    ),
                    id="roan.W005",
                )
            )
    return messages


def _configured_of(base: type) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(alias, options)`` of each backend in ``ROAN_BACKENDS`` whose class is ``base``
    or a subclass of it; those that cannot be imported are roan.E002's."""
    for alias, config in roan_settings.BACKENDS.items():
        if not isinstance(config, dict):
            continue
        try:
            cls = import_string(str(config.get("BACKEND")))
        except ImportError:
            continue  # roan.E002
        if isinstance(cls, type) and issubclass(cls, base):
            yield alias, config


def check_page_cache_local(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.W006: a ``DjangoCacheBackend`` purging a process-local cache (``LocMemCache``,
    what a site gets with ``CACHES`` unset).

    Each web process keeps its own copy of each page; a purge deletes the copy of the
    process that sends it, and the others serve (and the caches in front refill from)
    their old copies until they expire.
    """
    from django.core.cache import InvalidCacheBackendError, caches
    from django.core.cache.backends.locmem import LocMemCache

    from roan.backends.django_cache import DjangoCacheBackend

    if settings.DEBUG or not isinstance(getattr(settings, "ROAN_BACKENDS", {}), dict):
        return []
    messages: list[checks.CheckMessage] = []
    for alias, config in _configured_of(DjangoCacheBackend):
        cache_alias = config.get("CACHE", "default")
        try:
            local = isinstance(caches[cache_alias], LocMemCache)
        except (InvalidCacheBackendError, TypeError):
            continue  # roan.E002
        if local:
            messages.append(
                checks.Warning(
                    f"ROAN_BACKENDS[{alias!r}] purges the cache {cache_alias!r}, which is "
                    "local to each process (LocMemCache, also what Django uses when CACHES "
                    "is not set): a purge deletes only the copy of the process that sends "
                    "it, and every other worker keeps serving its old page.",
                    hint=(
                        f"Point CACHES[{cache_alias!r}] (or this backend's CACHE) at a cache "
                        "every process shares: Redis, Memcached, the database or file cache."
                    ),
                    id="roan.W006",
                )
            )
    return messages


#: Options that bound a Redis call, per cache backend: Django's own, django-redis.
_REDIS_TIMEOUTS = {
    "django.core.cache.backends.redis.RedisCache": "socket_timeout",
    "django_redis.cache.RedisCache": "SOCKET_TIMEOUT",
}


def check_rule_stamp_timeout(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.W030: the rule stamp in a Redis cache with no socket timeout.

    Every save reads the stamp (once per ``ROAN_RULES_TTL``); roan survives a Redis that
    refuses connections, but a Redis that accepts and never answers holds the save for
    as long as the socket waits, which without a timeout is for ever.
    """
    config = getattr(settings, "CACHES", {}).get(roan_settings.CACHE)
    if not isinstance(config, dict):
        return []
    option = _REDIS_TIMEOUTS.get(str(config.get("BACKEND", "")))
    if option is None:
        return []
    options = config.get("OPTIONS") or {}
    if isinstance(options, dict) and _positive_seconds(options.get(option)):
        return []
    return [
        checks.Warning(
            f"ROAN_CACHE ({roan_settings.CACHE!r}) is a Redis cache without {option!r}: "
            "a Redis that stops answering would hold every save.",
            hint=(
                f"Set CACHES[{roan_settings.CACHE!r}]['OPTIONS'][{option!r}] to a fraction "
                "of a second (0.5); roan then reads the rules from the database until "
                "Redis answers again."
            ),
            id="roan.W030",
        )
    ]


def check_default_backend(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.W003: neither ROAN_BACKENDS nor ROAN_PURGE_URL is set, outside DEBUG.

    roan then purges through roan 0.1's default, which on most servers answers nothing:
    every save records a failed attempt and no page is ever purged.
    """
    chosen = (
        getattr(settings, name, None) is not None for name in ("ROAN_BACKENDS", "ROAN_PURGE_URL")
    )
    if settings.DEBUG or any(chosen):
        return []
    return [
        checks.Warning(
            f"ROAN_BACKENDS is not set: roan purges through the default {DEFAULT_PURGE_URL}.",
            hint=(
                "Set ROAN_BACKENDS to the caches this site uses (see the Backends section of "
                "roan's README), or ROAN_PURGE_URL if that nginx purge location is meant."
            ),
            id="roan.W003",
        )
    ]


def check_admin(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.W002: no admin. roan.E005: the admin without django-import-export, whose
    templates roan's rules and purge log pages extend (they would answer 500)."""
    if apps.is_installed("django.contrib.admin"):
        if apps.is_installed("import_export"):
            return []
        return [
            checks.Error(
                '"import_export" is not in INSTALLED_APPS.',
                hint=(
                    "roan's purge rules and purge log pages in the admin extend "
                    'django-import-export\'s templates: add "import_export" to '
                    "INSTALLED_APPS (it is installed with roan)."
                ),
                id="roan.E005",
            )
        ]
    return [
        checks.Warning(
            "django.contrib.admin is not installed.",
            hint="roan's rules, purge log and dashboard live in the Django admin.",
            id="roan.W002",
        )
    ]


def _is_strings(value: Any) -> bool:
    return isinstance(value, list | tuple | set | frozenset) and all(
        isinstance(entry, str) for entry in value
    )


def check_rule_models(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.E020: ``ROAN_RULE_MODELS`` is malformed or names what is not installed.

    roan.E021: an entry that can never open anything (roan's models; a sensitive app by
    its app label). roan.W020: an entry that opens accounts, sessions or admin data.
    """
    value = getattr(settings, "ROAN_RULE_MODELS", None)
    if value is None:
        return []
    hint = 'Give a list of app labels and app_label.model labels, such as ["blog", "shop.product"].'
    if not _is_strings(value):
        return [checks.Error(f"ROAN_RULE_MODELS is {value!r}.", hint=hint, id="roan.E020")]
    messages: list[checks.CheckMessage] = []
    for entry in value:
        app_label, dot, model_name = entry.strip().partition(".")
        if not app_label or (dot and (not model_name or "." in model_name)):
            messages.append(
                checks.Error(
                    f"ROAN_RULE_MODELS entry {entry!r} is malformed.", hint=hint, id="roan.E020"
                )
            )
            continue
        try:
            config = apps.get_app_config(app_label)
            model = config.get_model(model_name) if dot else None
        except LookupError:
            messages.append(
                checks.Error(
                    f"ROAN_RULE_MODELS entry {entry!r} names no installed "
                    f"{'model' if dot else 'app'}.",
                    hint=hint,
                    id="roan.E020",
                )
            )
            continue
        if app_label == ROAN_APP or (model is not None and is_roan_model(model)):
            messages.append(
                checks.Error(
                    f"ROAN_RULE_MODELS entry {entry!r}: rules can never name roan's own models.",
                    hint="Remove the entry.",
                    id="roan.E021",
                )
            )
        elif model is None and app_label in SENSITIVE_APPS:
            messages.append(
                checks.Error(
                    f"ROAN_RULE_MODELS entry {entry!r} opens nothing: the models of "
                    f"{app_label!r} hold accounts, sessions or admin data and are only "
                    "allowed one by one.",
                    hint=f"List the model itself, such as '{app_label}.<model>', if you must.",
                    id="roan.E021",
                )
            )
        elif model is not None and is_sensitive(model):
            messages.append(
                checks.Warning(
                    f"ROAN_RULE_MODELS entry {entry!r} lets rule editors read "
                    f"{model._meta.label} (accounts, sessions or admin data) into purge "
                    "URLs, the purge log and exports.",
                    hint=(
                        "Make sure everyone with the purge-rule permissions may see these "
                        "rows; secret fields stay unreadable (ROAN_PRIVATE_FIELDS adds more)."
                    ),
                    id="roan.W020",
                )
            )
    return messages


def check_private_fields(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.E022: ``ROAN_PRIVATE_FIELDS`` is malformed or names an unknown model or field.

    A typo here would leave the field it meant readable, so it is an error.
    """
    value = getattr(settings, "ROAN_PRIVATE_FIELDS", None)
    if value is None:
        return []
    hint = 'Give a list of field names and app_label.model.field labels, such as ["email"].'
    if not _is_strings(value):
        return [checks.Error(f"ROAN_PRIVATE_FIELDS is {value!r}.", hint=hint, id="roan.E022")]
    messages: list[checks.CheckMessage] = []
    for entry in value:
        parts = entry.strip().split(".")
        problem = ""
        if len(parts) not in {1, 3} or not all(parts):
            problem = "is malformed"
        elif len(parts) == 3:
            try:
                apps.get_model(parts[0], parts[1])._meta.get_field(parts[2])
            except LookupError:
                problem = "names no installed model"
            except FieldDoesNotExist:
                problem = f"names no field of {parts[0]}.{parts[1]}"
        if problem:
            messages.append(
                checks.Error(
                    f"ROAN_PRIVATE_FIELDS entry {entry!r} {problem}.", hint=hint, id="roan.E022"
                )
            )
    return messages


def check_manual_purge_bounds(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The bounds of one editor's manual purge: whole numbers, the queue below the cap."""
    messages: list[checks.CheckMessage] = []
    values: dict[str, int] = {}
    for name in ("MAX_MANUAL_PURGES", "MAX_INLINE_MANUAL_PURGES"):
        value = getattr(settings, f"ROAN_{name}", None)
        if value is None:
            values[name] = getattr(roan_settings, name)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            messages.append(
                checks.Error(
                    f"ROAN_{name} is {value!r}.",
                    hint="Give a whole number of attempts, 0 or more.",
                    id="roan.E050",
                )
            )
        else:
            values[name] = value
    inline, most = values.get("MAX_INLINE_MANUAL_PURGES"), values.get("MAX_MANUAL_PURGES")
    if inline is not None and most is not None and inline > most:
        messages.append(
            checks.Warning(
                f"ROAN_MAX_INLINE_MANUAL_PURGES ({inline}) is above ROAN_MAX_MANUAL_PURGES "
                f"({most}): every manual purge is sent inside the admin's request.",
                hint="Keep it well below, e.g. 100: a large purge then answers at once and "
                "is sent from the queue.",
                id="roan.W050",
            )
        )
    return messages


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
    for alias, config in _configured_of(HTTPBackend):
        if not isinstance(config.get("URL"), str):
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


def check_layers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.E100: an ``AFTER`` option that is not a list of other aliases, or a cycle."""
    from roan.backends.options import layer_order

    if not isinstance(getattr(settings, "ROAN_BACKENDS", {}), dict):
        return []  # roan.E001
    try:
        layer_order(roan_settings.BACKENDS)
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint=(
                    "AFTER lists the aliases of the caches behind this one (purged before "
                    'it), e.g. "nginx": {..., "AFTER": ["django"]}; no backend is sent '
                    "until this is fixed."
                ),
                id="roan.E100",
            )
        ]
    return []


def check_tags(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.E080: a tag index setting that is not a positive number.

    roan.E081: a ``ROAN_TAG_PREFIX`` no cache can carry (spaces, control characters).
    roan.W080: ``ROAN_TAGS`` on without ``CacheTagMiddleware``: no page carries a tag.
    """
    messages: list[checks.CheckMessage] = []
    for name, default, kind in (
        ("ROAN_TAG_INDEX_TTL", 86400, float),
        ("ROAN_TAG_INDEX_MAX_TAGS", 200, int),
    ):
        value = getattr(settings, name, default)
        try:
            number = kind(value)
            good = not isinstance(value, bool) and math.isfinite(number) and number > 0
        except (TypeError, ValueError):
            good = False
        if not good:
            messages.append(
                checks.Error(
                    f"{name} is {value!r}; it must be a positive number.",
                    hint=f"Remove it for the default ({default}).",
                    id="roan.E080",
                )
            )
    prefix = getattr(settings, "ROAN_TAG_PREFIX", "")
    if not isinstance(prefix, str) or any(ch.isspace() or ord(ch) < 0x20 for ch in prefix):
        messages.append(
            checks.Error(
                f"ROAN_TAG_PREFIX is {prefix!r}; tag headers separate tags by spaces.",
                hint="Use letters, digits and punctuation, such as 'www-' or 'shop:'.",
                id="roan.E081",
            )
        )
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    if getattr(settings, "ROAN_TAGS", None) and (
        "roan.middleware.CacheTagMiddleware" not in middleware
    ):
        messages.append(
            checks.Warning(
                "ROAN_TAGS is on but roan.middleware.CacheTagMiddleware is not in MIDDLEWARE.",
                hint=(
                    "No page carries a tag, so every save writes tag purges that purge "
                    "nothing. Add the middleware, or remove ROAN_TAGS."
                ),
                id="roan.W080",
            )
        )
    return messages


TAG_MIDDLEWARE = "roan.middleware.CacheTagMiddleware"
# Middleware that may add a cookie on the way out; the tag middleware must see it.
_COOKIE_MIDDLEWARE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)


def check_cache_tags(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """roan.E070: ``ROAN_TAG_PREFIX`` cannot go in a header; roan.W070:
    ``CacheTagMiddleware`` below middleware that sets cookies."""
    messages: list[checks.CheckMessage] = []
    prefix = getattr(settings, "ROAN_TAG_PREFIX", "")
    bad = not isinstance(prefix, str)
    if isinstance(prefix, str):
        try:
            prefix.encode("latin-1")
        except UnicodeEncodeError:
            bad = True
        bad = bad or any(ch.isspace() or not ch.isprintable() or ch == "," for ch in prefix)
    if bad:
        messages.append(
            checks.Error(
                f"ROAN_TAG_PREFIX is {prefix!r}.",
                hint="Use Latin-1 text without spaces, commas or control characters, "
                'e.g. "shop-": every cache tag header carries it.',
                id="roan.E070",
            )
        )
    middleware = [str(m) for m in getattr(settings, "MIDDLEWARE", None) or ()]
    if TAG_MIDDLEWARE in middleware:
        position = middleware.index(TAG_MIDDLEWARE)
        above = [m for m in _COOKIE_MIDDLEWARE if m in middleware[:position]]
        if above:
            messages.append(
                checks.Warning(
                    f"{TAG_MIDDLEWARE} comes after {', '.join(above)} in MIDDLEWARE: it "
                    "cannot see the cookies they set, and tags responses no shared cache "
                    "should keep.",
                    hint="Put it first in MIDDLEWARE, or right after SecurityMiddleware.",
                    id="roan.W070",
                )
            )
    return messages


def register() -> None:
    checks.register(check_backends, "roan")
    checks.register(check_task_dispatch, "roan")
    # A production setting: told by `check --deploy`, not before every command.
    checks.register(check_rule_stamp_cache, "roan", deploy=True)
    checks.register(check_admin, "roan")
    checks.register(check_sqlite_writers, "roan")
    checks.register(check_default_backend, "roan")
    checks.register(check_timeouts, "roan")
    checks.register(check_rate_limit_cache, "roan", deploy=False)
    checks.register(check_rule_models, "roan")
    checks.register(check_private_fields, "roan")
    checks.register(check_rule_stamp_timeout, "roan")
    checks.register(check_manual_purge_bounds, "roan")
    checks.register(check_http_url_credentials, "roan")
    checks.register(check_verify, "roan")
    checks.register(check_layers, "roan")
    checks.register(check_tags, "roan")
    checks.register(check_cache_tags, "roan")
    checks.register(check_page_hosts, "roan")
    checks.register(check_page_cache_local, "roan")
