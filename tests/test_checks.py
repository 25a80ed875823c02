from __future__ import annotations

from django.core import checks

from roan.checks import check_admin, check_backends, check_rule_stamp_cache


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
