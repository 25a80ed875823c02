"""A scheduled purge against a real nginx: the page cached before its due time is a MISS
after ``roan_dispatch`` runs past it, with no save then; editing the date moves it."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone

from roan.models import PurgeAttempt, PurgeRule
from tests.support.caches import Nginx
from tests.testapp.models import Event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def on_nginx(settings: Any, nginx_cache: Nginx, make_rule: Callable[..., PurgeRule]) -> Nginx:
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx_cache.url}/purge",
        }
    }
    make_rule(
        "scheduled events",
        "/sched/{slug}/",
        model=Event,
        schedule_fields="publish_at, expires_at",
    )
    return nginx_cache


def status(url: str) -> str:
    return requests.get(url, timeout=5).headers["X-Cache-Status"]


def cached(url: str) -> None:
    """Fetch ``url`` until nginx serves it from its cache."""
    status(url)
    assert status(url) == "HIT"


def dispatch_after(when: datetime.datetime) -> None:
    time.sleep(max(0.0, (when - timezone.now()).total_seconds()) + 0.2)
    call_command("roan_dispatch")


def test_the_page_is_purged_when_its_date_comes(on_nginx: Nginx) -> None:
    page = f"{on_nginx.url}/sched/launch/"
    at = timezone.now() + datetime.timedelta(seconds=2)
    Event.objects.create(title="Launch", slug="launch", publish_at=at)
    cached(page)  # a reader fills the cache after the save

    call_command("roan_dispatch")  # not due yet: nothing sent
    assert status(page) == "HIT"

    dispatch_after(at)
    assert status(page) == "MISS"
    (row,) = PurgeAttempt.objects.filter(trigger="scheduled")
    assert row.status == "ok"


def test_editing_the_date_moves_the_purge(on_nginx: Nginx) -> None:
    page = f"{on_nginx.url}/sched/moved/"
    first = timezone.now() + datetime.timedelta(seconds=2)
    event = Event.objects.create(title="Moved", slug="moved", publish_at=first)
    event.publish_at = first + datetime.timedelta(seconds=2)
    event.save()
    cached(page)

    dispatch_after(first)  # the old time: cancelled, the page stays cached
    assert status(page) == "HIT"

    dispatch_after(event.publish_at)
    assert status(page) == "MISS"
    rows = PurgeAttempt.objects.filter(trigger="scheduled").order_by("id")
    assert [r.status for r in rows] == ["skipped", "ok"]
