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


def test_the_admin_without_import_export_is_an_error(settings) -> None:
    """roan's rules and log pages extend import-export's templates: without the app they
    answer 500, so the check says so before a page does."""
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "import_export"]
    [error] = check_admin()
    assert error.id == "roan.E005"
    assert "import_export" in error.hint


def test_a_process_local_rule_stamp_cache_is_told_by_check_deploy_only(settings) -> None:
    """Not before every manage.py command of a production site: `check --deploy` says it."""
    from django.core import checks

    settings.DEBUG = False
    assert "roan.W001" not in ids(checks.run_checks(tags=["roan"]))
    assert "roan.W001" in ids(checks.run_checks(tags=["roan"], include_deployment_checks=True))


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


NGINX = {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": "http://127.0.0.1:9/purge"}


def page_hosts(settings, **backend: object) -> list[checks.CheckMessage]:
    from roan.checks import check_page_hosts

    settings.ROAN_BACKENDS = {"edge": backend}
    return check_page_hosts()


def test_a_url_purging_backend_without_hosts_warns_and_shows_what_to_set(settings) -> None:
    settings.ALLOWED_HOSTS = ["www.example.org", ".example.org"]
    [warning] = page_hosts(settings, **NGINX)
    assert warning.id == "roan.W005" and warning.level == checks.WARNING
    assert "no HOSTS" in warning.msg and "not cached" in warning.msg
    assert "ROAN_BACKENDS['edge']['HOSTS'] = ['www.example.org', 'example.org']" in warning.hint
    varnish = {"BACKEND": "roan.backends.varnish.VarnishBackend", "NODES": ["http://127.0.0.1:9"]}
    assert ids(page_hosts(settings, **varnish)) == ["roan.W005"]
    http = {"BACKEND": "roan.backends.http.HTTPBackend", "URL": "http://127.0.0.1:9/p{path}"}
    assert page_hosts(settings, **http) == []  # sends no host: nothing to get wrong
    # Registered: `manage.py check` reports it.
    page_hosts(settings, **NGINX)
    assert "roan.W005" in ids(checks.run_checks(tags=["roan"]))
    assert page_hosts(settings, **NGINX, HOSTS=["www.example.org"]) == []


def test_hosts_that_django_refuses_warn(settings) -> None:
    settings.ALLOWED_HOSTS = ["www.example.org"]
    [warning] = page_hosts(settings, **NGINX, HOSTS=["localhost"])
    assert warning.id == "roan.W005" and "ALLOWED_HOSTS" in warning.msg
    assert "['www.example.org']" in warning.hint
    http = {
        "BACKEND": "roan.backends.http.HTTPBackend",
        "URL": "http://127.0.0.1:9/p?u={url}",
        "HOSTS": ["cdn.example.net"],
    }
    assert ids(page_hosts(settings, **http)) == ["roan.W005"]
    # One allowed host is enough; ports and subdomain patterns count.
    settings.ALLOWED_HOSTS = [".example.org"]
    assert page_hosts(settings, **NGINX, HOSTS=["localhost", "www.example.org:8080"]) == []
    settings.ALLOWED_HOSTS = ["*"]
    assert page_hosts(settings, **NGINX, HOSTS=["localhost"]) == []


def test_the_implicit_default_backend_is_left_to_w003_and_purge_url_is_named(settings) -> None:
    from roan.checks import check_page_hosts

    del settings.ROAN_BACKENDS
    assert check_page_hosts() == []
    settings.ROAN_PURGE_URL = "http://127.0.0.1:8080/purge"
    settings.ALLOWED_HOSTS = ["www.example.org"]
    [warning] = check_page_hosts()
    assert warning.id == "roan.W005" and warning.msg.startswith("ROAN_PURGE_URL")
    assert "'LOCATION': 'http://127.0.0.1:8080/purge', 'HOSTS': ['www.example.org']" in (
        warning.hint
    )


def test_tag_only_and_cdn_backends_are_quiet(settings) -> None:
    settings.ALLOWED_HOSTS = ["www.example.org"]
    tags = {"BACKEND": "roan.backends.http.HTTPBackend", "URL": "http://127.0.0.1:9/t/{target}"}
    assert page_hosts(settings, **tags, KINDS=["tag"]) == []
    assert page_hosts(settings, BACKEND="roan.backends.locmem.LocMemBackend") == []


def test_a_page_cache_in_process_memory_warns_in_production(settings) -> None:
    from roan.checks import check_page_cache_local

    settings.DEBUG = False
    settings.ROAN_BACKENDS = {
        "site": {"BACKEND": "roan.backends.django_cache.DjangoCacheBackend", "HOSTS": ["a.b"]}
    }
    [warning] = check_page_cache_local()
    assert warning.id == "roan.W006" and "'default'" in warning.msg
    assert "only the copy of the process that sends it" in warning.msg
    assert "roan.W006" in ids(checks.run_checks(tags=["roan"]))
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": "/tmp/roan-check",
        }
    }
    assert check_page_cache_local() == []
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.DEBUG = True  # runserver: one process
    assert check_page_cache_local() == []


def test_the_rule_stamp_warning_says_the_render_guard_needs_a_shared_cache(settings) -> None:
    settings.DEBUG = False
    [warning] = check_rule_stamp_cache()
    assert "render guard" in warning.hint and "shared" in warning.hint
