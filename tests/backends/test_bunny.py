"""BunnyBackend against a fake of bunny.net's purge API on loopback (tests/support/cdn_fakes.py).

What is proved here was checked against that fake only, never against bunny.net.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

import roan
from roan.backends.base import PurgeRequest
from roan.backends.bunny import BunnyBackend
from roan.outbox import pipeline
from roan.purges import Cause, Purge
from tests.support.cdn_fakes import Answer, Bucket, FakeBunny, fresh_buckets, rows  # noqa: F401 (autouse)

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "bunny-Secret-Key-0b1d-do-not-leak"
ZONE = 1234567


@pytest.fixture
def fake() -> Any:
    server = FakeBunny(zone=ZONE, key=KEY)
    yield server
    server.close()


def config(fake: FakeBunny, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "roan.backends.bunny.BunnyBackend",
        "API_URL": fake.url,
        "API_KEY": KEY,
        "PULL_ZONE_ID": ZONE,
        "HOSTS": ["www.example.com", "cdn.example.com"],
        "TIMEOUT": (1.0, 2.0),
        **options,
    }


@pytest.fixture
def bunny(settings: Any, fake: FakeBunny) -> FakeBunny:
    settings.ROAN_BACKENDS = {"bunny": config(fake)}
    return fake


def test_each_url_is_one_exact_call_with_an_absolute_url(bunny: FakeBunny) -> None:
    paths = [f"/posts/{i}/" for i in range(51)]  # more than one batch of the dispatcher
    roan.purge_urls(paths)
    received = bunny.purges()
    assert len(received) == 51
    assert {r.path for r in received} == {"/purge"}
    assert sorted(r.query["url"][0] for r in received) == sorted(
        f"https://www.example.com{p}" for p in paths
    )
    # A URL ending in "/" would purge everything below it without exactPath.
    assert {(r.query["exactPath"][0], r.query["async"][0]) for r in received} == {("true", "false")}
    assert received[0].headers["AccessKey"] == "[checked]"
    assert {a.status for a in rows()} == {"ok"}


def test_prefixes_hosts_tags_and_everything(bunny: FakeBunny) -> None:
    roan.purge_urls(["https://cdn.example.com/img/*"], kind="prefix")
    host = PurgeRequest("all", "", "www.example.com")
    pipeline.submit([Purge("bunny", host, Cause(trigger="admin"))])
    roan.purge_urls(["blog.post"], kind="tag")
    roan.purge_urls([], kind="all")
    prefix, whole_host, tag, everything = bunny.purges()
    assert (prefix.query["url"], prefix.query["exactPath"]) == (
        ["https://cdn.example.com/img/*"],
        ["false"],
    )
    assert whole_host.query["url"] == ["https://www.example.com/*"]
    assert (tag.path, tag.body) == (f"/pullzone/{ZONE}/purgeCache", {"CacheTag": "blog.post"})
    assert (everything.path, everything.body) == (f"/pullzone/{ZONE}/purgeCache", None)
    assert {a.status for a in rows()} == {"ok"}


def test_a_host_outside_hosts_never_reaches_bunny(bunny: FakeBunny) -> None:
    roan.purge_urls(["https://evil.example.net/x"])
    assert bunny.received == []
    assert rows()[0].status == "skipped"


def test_a_429_is_honoured_and_the_rest_waits_as_long(bunny: FakeBunny) -> None:
    bunny.exact = Bucket(1, 0.0)  # one purge, then Retry-After: 60
    before = timezone.now()
    roan.purge_urls(["/a", "/b", "/c"])
    assert len(bunny.received) == 2 and len(bunny.purges()) == 1
    a, b, c = rows()
    assert a.status == "ok"
    assert (b.status, b.http_status) == ("failed", 429)
    assert b.error == "HTTP 429: throttled by Bunny: Too many purge requests (ratelimit)"
    assert c.error.startswith("not sent: HTTP 429")
    for attempt in (b, c):
        assert attempt.next_attempt_at - before >= datetime.timedelta(seconds=59)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "PULL_ZONE_ID",
            7654321,
            "HTTP 404: The requested Pull Zone was not found (pullzone.not_found)",
        ),
        ("API_KEY", "wrong", "HTTP 401: Authorization has been denied (unauthorized)"),
    ],
)
def test_a_configuration_error_is_given_up_with_bunnys_message(
    bunny: FakeBunny, settings: Any, option: str, value: Any, message: str
) -> None:
    settings.ROAN_BACKENDS = {"bunny": config(bunny, **{option: value})}
    roan.purge_urls(["blog.post"], kind="tag")
    [attempt] = rows()
    assert (attempt.status, attempt.error, attempt.next_attempt_at) == ("gave_up", message, None)


def test_cdn_tag_and_the_exact_bucket_are_declared() -> None:
    assert BunnyBackend.tag_header == "CDN-Tag"
    assert BunnyBackend.default_rate_limit == {"RATE": 5, "BURST": 120}
