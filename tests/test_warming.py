"""WARM: after a purge is confirmed, roan fetches the page through the cache, so that the
next reader gets a hit with the new content.

Against the real nginx of example/deploy/nginx.conf (``X-Cache-Status``) in front of an
origin of this module's own, whose body changes with every fetch ("/path N").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

import roan
from roan.backends import build_backend
from roan.backends.options import parse_warm
from roan.checks import check_verify
from roan.models import PurgeAttempt
from roan.outbox import warming
from tests.support.caches import Nginx, Origin, start_nginx
from tests.testapp.models import Post


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.close()


@pytest.fixture(scope="module")
def nginx(origin: Origin) -> Iterator[Nginx]:
    server = start_nginx(origin.port)
    yield server
    server.close()


def backend(nginx: Nginx, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "roan.backends.nginx.NginxBackend",
        "LOCATION": f"{nginx.url}/purge",
        "HOSTS": ["127.0.0.1", "www.example.com"],
        "WARM": {"BASE_URL": nginx.url, "RATE": 50},
        **options,
    }


def read(url: str) -> tuple[str, str]:
    """(X-Cache-Status, body) of a reader's request."""
    answer = requests.get(url, timeout=5)
    return answer.headers["X-Cache-Status"], answer.text.strip()


def fill(nginx: Nginx, path: str) -> str:
    read(nginx.url + path)
    state, body = read(nginx.url + path)
    assert state == "HIT"
    return body


def finish() -> None:
    assert warming.warmer.drain(timeout=30)


def test_after_a_save_the_next_reader_gets_a_hit_with_the_new_content(
    transactional_db: None, settings: Any, make_rule: Any, nginx: Nginx, origin: Origin
) -> None:
    settings.ROAN_BACKENDS = {"nginx": backend(nginx)}
    make_rule("warm posts", "/warm/{slug}/")
    post = Post.objects.create(title="One", slug="one")
    finish()
    assert fill(nginx, "/warm/one/") == f"/warm/one/ {origin.count('/warm/one/')}"
    before = origin.count("/warm/one/")

    post.title = "One, edited"
    post.save()
    finish()

    # roan fetched the page once after its purge: the reader's request is a hit, with
    # the content the origin served after the save.
    assert origin.count("/warm/one/") == before + 1
    assert read(nginx.url + "/warm/one/") == ("HIT", f"/warm/one/ {before + 1}")
    attempt = PurgeAttempt.objects.filter(target="/warm/one/").latest("id")
    assert (attempt.status, attempt.warming) == ("ok", "warmed")


def test_the_log_and_the_dashboard_show_it(
    transactional_db: None, settings: Any, nginx: Nginx, admin_client: Any
) -> None:
    settings.ROAN_BACKENDS = {"nginx": backend(nginx)}
    roan.purge_urls(["/shown/"])
    finish()
    attempt = PurgeAttempt.objects.get(target="/shown/")
    log = admin_client.get("/admin/roan/purgeattempt/")
    assert 'class="roan-badge roan-warming-warmed"' in log.text
    detail = admin_client.get(f"/admin/roan/purgeattempt/{attempt.pk}/change/")
    assert 'class="roan-badge roan-warming-warmed"' in detail.text
    dashboard = admin_client.get("/admin/roan/dashboard/")
    assert '<td class="roan-num" id="roan-warmed">1</td>' in dashboard.text
    # The dashboard's link to the pages not warmed is a filter the log accepts.
    PurgeAttempt.objects.filter(pk=attempt.pk).update(warming="failed")
    failed = admin_client.get("/admin/roan/purgeattempt/?warming__exact=failed")
    assert failed.status_code == 200 and "/shown/" in failed.text
    dashboard = admin_client.get("/admin/roan/dashboard/")
    assert "?warming__exact=failed" in dashboard.text


def test_the_editors_save_does_not_wait_for_the_warming(
    transactional_db: None, settings: Any, make_rule: Any, nginx: Nginx, origin: Origin
) -> None:
    settings.ROAN_BACKENDS = {"nginx": backend(nginx)}
    make_rule("slow posts", "/slow/{slug}/")
    origin.slow_seconds = 1.5
    try:
        started = time.monotonic()
        with transaction.atomic():
            Post.objects.create(title="Slow", slug="slowpage")
        saved = time.monotonic() - started
        finish()
        warmed = time.monotonic() - started
    finally:
        origin.slow_seconds = 0.0
    assert saved < 1.0 <= warmed
    attempt = PurgeAttempt.objects.get(target="/slow/slowpage/")
    assert attempt.warming == "warmed"
    assert read(nginx.url + "/slow/slowpage/")[0] == "HIT"


def test_fetches_are_paced_by_rate(transactional_db: None, settings: Any, nginx: Nginx) -> None:
    settings.ROAN_BACKENDS = {"nginx": backend(nginx, WARM={"BASE_URL": nginx.url, "RATE": 4})}
    started = time.monotonic()
    roan.purge_urls([f"/paced/{i}/" for i in range(8)])
    finish()
    # A bucket of 4 a second, 4 at once: the other 4 wait about a second for their turn.
    assert time.monotonic() - started >= 0.8
    states = set(PurgeAttempt.objects.values_list("warming", flat=True))
    assert states == {"warmed"}
    assert read(nginx.url + "/paced/7/")[0] == "HIT"


def test_only_the_base_urls_host_is_warmed(
    transactional_db: None, settings: Any, nginx: Nginx
) -> None:
    settings.ROAN_BACKENDS = {"nginx": backend(nginx)}
    roan.purge_urls(["https://www.example.com/elsewhere/", "/here/"])
    finish()
    rows = dict(PurgeAttempt.objects.values_list("target", "warming"))
    assert rows == {"/elsewhere/": "", "/here/": "warmed"}


def test_an_error_page_is_recorded_not_warmed(
    transactional_db: None, settings: Any, nginx: Nginx, fake_cache: Any
) -> None:
    fake_cache.status = 503  # the site behind the cache answers an error
    settings.ROAN_BACKENDS = {
        "nginx": backend(nginx, HOSTS=["127.0.0.1"], WARM={"BASE_URL": fake_cache.url})
    }
    roan.purge_urls(["/down/"])
    finish()
    attempt = PurgeAttempt.objects.get(target="/down/")
    assert (attempt.status, attempt.warming) == ("not_cached", "failed")
    assert [(method, path) for method, path, _ in fake_cache.calls] == [("GET", "/down/")]
    assert fake_cache.calls[0][2]["User-Agent"] == "roan-warm"


def test_inner_caches_are_warmed_first(
    transactional_db: None, settings: Any, nginx: Nginx, monkeypatch: Any
) -> None:
    fetched: list[str] = []

    def record(options: Any, target: str) -> str:
        fetched.append(options.base_url)
        return ""

    monkeypatch.setattr(warming, "fetch", record)
    inner = backend(nginx, WARM={"BASE_URL": "http://127.0.0.1:1"})
    outer = backend(nginx, WARM={"BASE_URL": "http://127.0.0.1:2"}, AFTER=["inner"])
    settings.ROAN_BACKENDS = {"outer": outer, "inner": inner}
    roan.purge_urls(["/layers/"])
    finish()
    assert fetched == ["http://127.0.0.1:1", "http://127.0.0.1:2"]


def test_options_are_checked(settings: Any) -> None:
    base = {"HOSTS": ["www.example.com"]}
    assert parse_warm("a", {**base, "WARM": {"BASE_URL": "https://www.example.com"}}) is not None
    verified = {**base, "VERIFY": {"BASE_URL": "https://www.example.com"}, "WARM": True}
    assert parse_warm("a", verified).base_url == "https://www.example.com"  # type: ignore[union-attr]
    for bad, fragment in (
        ({"BASE_URL": "https://evil.example"}, "not in the backend's HOSTS"),
        ({"BASE_URL": "https://www.example.com", "RATE": 0}, "RATE"),
        ({"BASE_URL": "https://www.example.com", "EXTRA": 1}, "unknown option"),
        (True, "needs VERIFY"),
        ("yes", "must be True or a dict"),
    ):
        with pytest.raises(ImproperlyConfigured, match=fragment):
            parse_warm("a", {**base, "WARM": bad})
    config = {
        "BACKEND": "roan.backends.nginx.NginxBackend",
        "LOCATION": "http://127.0.0.1:9/purge",
        "HOSTS": ["www.example.com"],
        "TIMEOUT": 1,
        "WARM": {"BASE_URL": "https://www.example.com"},
    }
    build_backend("a", config)  # the backend never sees WARM
    settings.ROAN_BACKENDS = {"a": {**config, "WARM": {"BASE_URL": "https://evil.example"}}}
    assert [m.id for m in check_verify()] == ["roan.E111"]
