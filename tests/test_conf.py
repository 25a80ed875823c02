"""Every setting is read when used, so override_settings works for each."""

from __future__ import annotations

import pytest
from django.test import override_settings

from roan.conf import DEFAULT_PURGE_URL, roan_settings


@pytest.mark.parametrize(
    ("name", "value", "attribute"),
    [
        ("ROAN_PURGE_URL", "http://cache.internal/purge", "PURGE_URL"),
        ("ROAN_DISPATCH", "task", "DISPATCH"),
        ("ROAN_TASK_BACKEND", "jobs", "TASK_BACKEND"),
        ("ROAN_TASK_QUEUE", "purges", "TASK_QUEUE"),
        ("ROAN_CACHE", "shared", "CACHE"),
        ("ROAN_RULES_TTL", 5.0, "RULES_TTL"),
        ("ROAN_MAX_URLS_PER_EVENT", 7, "MAX_URLS_PER_EVENT"),
        ("ROAN_ENABLED", False, "ENABLED"),
        ("ROAN_RETENTION_DAYS", 90, "RETENTION_DAYS"),
        ("ROAN_SCHEDULE_HORIZON_DAYS", 30, "SCHEDULE_HORIZON_DAYS"),
    ],
)
def test_override_settings_works_for_every_setting(
    name: str, value: object, attribute: str
) -> None:
    before = getattr(roan_settings, attribute)
    with override_settings(**{name: value}):
        assert getattr(roan_settings, attribute) == value
    assert getattr(roan_settings, attribute) == before


def test_retry_settings_merge_over_the_defaults() -> None:
    with override_settings(ROAN_RETRY={"MAX_ATTEMPTS": 2}):
        assert roan_settings.RETRY["MAX_ATTEMPTS"] == 2
        assert roan_settings.RETRY["BASE"] == 5.0


def test_without_roan_backends_roan_0_1_purge_url_is_used(settings) -> None:
    del settings.ROAN_BACKENDS
    assert roan_settings.BACKENDS == {
        "default": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": DEFAULT_PURGE_URL}
    }
    settings.ROAN_PURGE_URL = "http://10.0.0.9/purge"
    assert roan_settings.BACKENDS["default"]["LOCATION"] == "http://10.0.0.9/purge"


def test_backends_are_rebuilt_when_the_setting_changes(settings) -> None:
    from roan.backends import get_backends

    first = get_backends()
    settings.ROAN_BACKENDS = {"other": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    assert list(get_backends()) == ["other"]
    assert get_backends() is not first
