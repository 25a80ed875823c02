"""FastlyBackend against a fake of Fastly's purge API on loopback (tests/support/cdn_fakes.py).

What is proved here was checked against that fake only, never against Fastly.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from django.utils import timezone

import roan
from roan.backends.base import PurgeRequest
from roan.backends.fastly import FastlyBackend
from roan.models import PurgeAttempt
from roan.outbox import pipeline
from roan.purges import Cause, Purge
from tests.support.cdn_fakes import Answer, FakeFastly, fresh_buckets, rows  # noqa: F401 (autouse)
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "fastly-Secret-Token-77c1-do-not-leak"
SERVICE = "SU1Z0isxPaozGVKXdv0eY"


@pytest.fixture
def fake() -> Any:
    server = FakeFastly(service=SERVICE, token=TOKEN)
    yield server
    server.close()


def config(fake: FakeFastly, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "roan.backends.fastly.FastlyBackend",
        "API_URL": fake.url,
        "SERVICE_ID": SERVICE,
        "API_TOKEN": TOKEN,
        "HOSTS": ["www.example.com"],
        "TIMEOUT": (1.0, 2.0),
        **options,
    }


@pytest.fixture
def fastly(settings: Any, fake: FakeFastly) -> FakeFastly:
    settings.ROAN_BACKENDS = {"fastly": config(fake)}
    return fake


def test_keys_are_split_at_256_and_each_gets_its_own_purge_id(fastly: FakeFastly) -> None:
    keys = [f"blog.post:{i}" for i in range(257)]
    roan.purge_urls(keys, kind="tag")
    first, second = fastly.purges()
    assert first.path == second.path == f"/service/{SERVICE}/purge"
    assert first.body == {"surrogate_keys": keys[:256]}
    assert second.body == {"surrogate_keys": keys[256:]}
    assert first.headers["Fastly-Soft-Purge"] == "1"  # soft by default
    assert first.headers["Fastly-Key"] == "[checked]"
    attempts = rows()
    assert {a.status for a in attempts} == {"ok"}
    assert len({a.purge_id for a in attempts}) == 257  # the key -> id map, row by row
    assert {a.soft for a in attempts} == {True}  # the log says the purges were soft


def test_a_url_is_one_call_with_its_query_in_the_path(fastly: FakeFastly) -> None:
    roan.purge_urls(["/posts/1/?page=2", "https://www.example.com/about/"])
    paths = sorted(r.path for r in fastly.purges())
    assert paths == ["/purge/www.example.com/about/", "/purge/www.example.com/posts/1/%3Fpage=2"]
    attempts = rows()
    assert {a.status for a in attempts} == {"ok"}
    assert all(a.purge_id.startswith("108-") for a in attempts)


def test_everything_is_never_soft_and_a_host_cannot_be_purged(
    fastly: FakeFastly, settings: Any
) -> None:
    roan.purge_urls([], kind="all")
    [request] = fastly.purges()
    assert request.path == f"/service/{SERVICE}/purge_all"
    assert "Fastly-Soft-Purge" not in request.headers
    assert rows()[-1].soft is False
    host = PurgeRequest("all", "", "www.example.com")
    pipeline.submit([Purge("fastly", host, Cause(trigger="admin"))])
    assert len(fastly.received) == 1
    assert rows()[-1].status == "skipped"


def test_soft_can_be_turned_off(fastly: FakeFastly, settings: Any) -> None:
    settings.ROAN_BACKENDS = {"fastly": config(fastly, SOFT=False)}
    roan.purge_urls(["/a"])
    [request] = fastly.purges()
    assert "Fastly-Soft-Purge" not in request.headers
    assert [(a.status, a.soft) for a in rows()] == [("ok", False)]


def test_a_429_waits_until_fastly_ratelimit_reset(fastly: FakeFastly) -> None:
    fastly.purge_all_per_hour = 0
    fastly.window_end = int(time.time()) + 600
    before = timezone.now()
    roan.purge_urls([], kind="all")
    [attempt] = rows()
    assert (attempt.status, attempt.http_status) == ("failed", 429)
    assert "throttled by Fastly: Too many requests" in attempt.error
    # No Retry-After: the wait comes from the reset time, 600 s on (backoff: 5 s).
    wait = attempt.next_attempt_at - before
    assert datetime.timedelta(seconds=590) <= wait <= datetime.timedelta(seconds=610)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("SERVICE_ID", "NoSuchService0", "HTTP 404: Record not found: Cannot find service"),
        ("API_TOKEN", "wrong", "HTTP 401: Provided credentials are missing or invalid"),
    ],
)
def test_a_configuration_error_is_given_up_with_fastlys_message(
    fastly: FakeFastly, settings: Any, option: str, value: str, message: str
) -> None:
    settings.ROAN_BACKENDS = {"fastly": config(fastly, **{option: value})}
    roan.purge_urls(["blog.post"], kind="tag")
    [attempt] = rows()
    assert (attempt.status, attempt.error, attempt.next_attempt_at) == ("gave_up", message, None)


def test_surrogate_key_is_declared_for_the_middleware() -> None:
    assert (FastlyBackend.tag_header, FastlyBackend.tag_separator) == ("Surrogate-Key", " ")


def test_a_dot_segment_never_reaches_fastlys_api_path(fastly: FakeFastly) -> None:
    # /purge/<host><path> holds the page's path: "/../" there could reach another endpoint.
    for target in ("/a/../../service/x/purge_all", "/a/%2e%2e/b"):
        request = PurgeRequest("url", target)
        pipeline.submit([Purge("fastly", request, Cause(trigger="api"))])
    assert fastly.received == []
    assert {(a.status, "'..'" in a.error) for a in rows()} == {("skipped", True)}


def test_pages_carry_surrogate_keys_and_a_save_purges_them(
    fastly: FakeFastly, settings: Any, client: Any
) -> None:
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    settings.ROAN_TAGS = True
    with roan.suppress_purges():
        post = Post.objects.create(title="Tagged", slug="tagged")
    page = client.get(f"/one/{post.pk}/")
    assert page.headers["Surrogate-Key"] == f"testapp.post:{post.pk}"
    post.title = "Changed"
    post.save()
    [request] = fastly.purges()
    assert f"testapp.post:{post.pk}" in request.body["surrogate_keys"]
    tagged = PurgeAttempt.objects.get(kind="tag", target=f"testapp.post:{post.pk}")
    assert tagged.status == "ok" and tagged.purge_id.startswith("108-")
