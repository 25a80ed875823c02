from __future__ import annotations

import pytest
from django.core import checks

from roan.backends.base import BaseBackend
from roan.checks import (
    check_admin,
    check_backends,
    check_default_backend,
    check_rate_limit_cache,
    check_rule_stamp_cache,
    check_timeouts,
)


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.id for m in messages if m.id]


def test_unknown_backend_path_is_an_error(settings) -> None:
    settings.ROAN_BACKENDS = {"x": {"BACKEND": "roan.backends.nope.Nope"}}
    messages = check_backends()
    assert ids(messages) == ["roan.E002"]
    assert "roan.backends.nope.Nope" in messages[0].msg


def test_unknown_option_is_an_error(settings) -> None:
    settings.ROAN_BACKENDS = {"x": {"BACKEND": "roan.backends.locmem.LocMemBackend", "TIMEOUTS": 3}}
    messages = check_backends()
    assert ids(messages) == ["roan.E002"]
    assert "TIMEOUTS" in messages[0].msg


def test_bad_dispatch_is_an_error(settings) -> None:
    settings.ROAN_DISPATCH = "later"
    assert "roan.E003" in ids(check_backends())


def test_a_process_local_rule_stamp_cache_warns_in_production(settings) -> None:
    settings.DEBUG = False
    assert ids(check_rule_stamp_cache()) == ["roan.W001"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": "/tmp/roan-check",
        }
    }
    assert check_rule_stamp_cache() == []


def test_the_admin_is_expected(settings) -> None:
    assert check_admin() == []
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django.contrib.admin"]
    assert ids(check_admin()) == ["roan.W002"]


@pytest.mark.parametrize("timeout", [None, 0, (0, 5), (2, None), -1])
def test_a_backend_without_a_timeout_is_an_error(settings, timeout) -> None:
    settings.ROAN_BACKENDS = {
        "x": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": "http://127.0.0.1:9/p"}
    }
    assert check_timeouts() == []
    settings.ROAN_BACKENDS["x"]["TIMEOUT"] = timeout
    messages = check_timeouts()
    assert ids(messages) == ["roan.E010"]
    assert messages[0].hint and "TIMEOUT" in messages[0].hint
    # Reported once, as a missing timeout, not again as a bad option.
    assert check_backends() == []


class NoTimeoutBackend(BaseBackend):
    """A custom backend that forgot BaseBackend.__init__."""

    def __init__(self, alias: str, options: dict) -> None:
        self.alias = alias


def test_a_custom_backend_that_leaves_timeouts_unset_is_an_error(settings) -> None:
    settings.ROAN_BACKENDS = {"custom": {"BACKEND": "tests.test_checks.NoTimeoutBackend"}}
    messages = check_timeouts()
    assert ids(messages) == ["roan.E010"]
    assert "'custom'" in messages[0].msg and "timeout unset" in messages[0].msg


def test_a_bad_rate_limit_or_paused_option_is_a_backend_error(settings) -> None:
    locmem = "roan.backends.locmem.LocMemBackend"
    settings.ROAN_BACKENDS = {
        "a": {"BACKEND": locmem, "RATE_LIMIT": {"RATE": 0}},
        "b": {"BACKEND": locmem, "RATE_LIMIT": {"PER_MINUTE": 5}},
        "c": {"BACKEND": locmem, "PAUSED": "yes"},
        "d": {"BACKEND": locmem, "RATE_LIMIT": {"RATE": 0.5, "BURST": 10}, "PAUSED": True},
    }
    messages = check_backends()
    assert ids(messages) == ["roan.E002"] * 3
    assert ["'a'" in messages[0].msg, "'b'" in messages[1].msg, "'c'" in messages[2].msg] == [
        True
    ] * 3


def test_a_rate_limit_in_a_process_local_cache_warns(settings) -> None:
    settings.DEBUG = False
    settings.ROAN_BACKENDS = {
        "cdn": {"BACKEND": "roan.backends.locmem.LocMemBackend", "RATE_LIMIT": {"RATE": 5}}
    }
    [warning] = check_rate_limit_cache()
    assert warning.id == "roan.W010" and "'cdn'" in warning.msg
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": "/tmp/roan-check",
        }
    }
    assert ids(check_rate_limit_cache()) == ["roan.W011"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # never connected to by the check
        }
    }
    assert check_rate_limit_cache() == []
    settings.DEBUG = True
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert check_rate_limit_cache() == []


def test_no_backends_in_production_warns_and_names_the_default(settings) -> None:
    del settings.ROAN_BACKENDS
    settings.DEBUG = False
    [warning] = check_default_backend()
    assert warning.id == "roan.W003"
    assert warning.level == checks.WARNING
    assert "http://localhost/purge" in warning.msg
    # Registered: `manage.py check` reports it.
    assert "roan.W003" in ids(checks.run_checks(tags=["roan"]))


def test_no_backends_warning_is_quiet_when_a_purge_target_was_chosen(settings) -> None:
    settings.DEBUG = False
    assert check_default_backend() == []  # ROAN_BACKENDS is set
    del settings.ROAN_BACKENDS
    settings.ROAN_PURGE_URL = "http://127.0.0.1:8080/purge"
    assert check_default_backend() == []
    del settings.ROAN_PURGE_URL
    settings.DEBUG = True
    assert check_default_backend() == []


def sqlite(name: str = "/srv/site/db.sqlite3", **options: object) -> list[checks.CheckMessage]:
    from roan.checks import sqlite_writers

    database: dict[str, object] = {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if options:
        database["OPTIONS"] = options
    return sqlite_writers("default", database)


def test_a_sqlite_file_without_immediate_transactions_and_a_timeout_warns() -> None:
    [warning] = sqlite()
    assert warning.id == "roan.W004"
    assert warning.level == checks.WARNING
    assert '"transaction_mode": "IMMEDIATE"' in warning.msg and '"timeout"' in warning.msg
    assert (
        "DATABASES['default']['OPTIONS'] = {'transaction_mode': 'IMMEDIATE', 'timeout': 20}"
        in warning.hint
    )


def test_the_hint_keeps_the_options_set_and_names_only_what_is_missing() -> None:
    [warning] = sqlite(init_command="PRAGMA journal_mode=WAL;", transaction_mode="IMMEDIATE")
    assert "transaction_mode" not in warning.msg
    assert (
        "{'init_command': 'PRAGMA journal_mode=WAL;', 'transaction_mode': 'IMMEDIATE', "
        "'timeout': 20}" in warning.hint
    )
    [warning] = sqlite(transaction_mode="EXCLUSIVE", timeout=2)  # too short to wait
    assert "transaction_mode" not in warning.msg and '"timeout"' in warning.msg
    assert "{'transaction_mode': 'EXCLUSIVE', 'timeout': 20}" in warning.hint


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 20},
        {"transaction_mode": "IMMEDIATE"},
        {"transaction_mode": "DEFERRED", "timeout": 20},
        {"transaction_mode": "IMMEDIATE", "timeout": 1},
    ],
)
def test_either_option_missing_warns(options: dict[str, object]) -> None:
    assert ids(sqlite(**options)) == ["roan.W004"]


@pytest.mark.parametrize(
    "options",
    [
        {"transaction_mode": "IMMEDIATE", "timeout": 20},
        {"transaction_mode": "immediate", "timeout": 5},
        {"transaction_mode": "EXCLUSIVE", "timeout": 30.0},
    ],
)
def test_immediate_transactions_and_a_timeout_are_quiet(options: dict[str, object]) -> None:
    assert sqlite(**options) == []


@pytest.mark.parametrize("name", [":memory:", "file:roan?mode=memory&cache=shared", ""])
def test_an_in_memory_sqlite_database_is_quiet(name: str) -> None:
    assert sqlite(name) == []


def test_other_databases_are_quiet() -> None:
    from roan.checks import sqlite_writers

    database = {"ENGINE": "django.db.backends.postgresql", "NAME": "site"}
    assert sqlite_writers("default", database) == []


def test_the_sqlite_check_reads_the_database_roan_writes_attempts_to(settings, monkeypatch) -> None:
    """Registered, and on the database the router picks for roan's attempts."""
    from django.db import connections

    class Elsewhere:
        def db_for_write(self, model: type, **hints: object) -> str | None:
            return "attempts" if model._meta.app_label == "roan" else None

    attempts = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/site/attempts.sqlite3"}
    database = connections.settings["default"] | attempts
    monkeypatch.setitem(connections.settings, "attempts", database)
    settings.DATABASE_ROUTERS = [Elsewhere()]
    try:
        found = checks.run_checks(tags=["roan"])
    finally:
        connections._connections.__dict__.pop("attempts", None)
    [warning] = [m for m in found if m.id == "roan.W004"]
    assert "'attempts'" in warning.msg
