"""CloudflareBackend against a fake of Cloudflare's purge API on loopback
(tests/support/cdn_fakes.py).

What is proved here was checked against that fake only, never against Cloudflare.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

import roan
from roan.backends.base import PurgeRequest
from roan.backends.cloudflare import CloudflareBackend
from roan.models import PurgeAttempt
from roan.outbox import pipeline
from roan.purges import Cause, Purge
from tests.support.cdn_fakes import FakeCloudflare, fresh_buckets, rows  # noqa: F401 (autouse)
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "cf-Secret-Token-4f9a-do-not-leak"
ZONE = "023e105f4ecef8ad9ca31a8372d0c353"


@pytest.fixture
def fake() -> Any:
    server = FakeCloudflare(zone=ZONE, token=TOKEN)
    yield server
    server.close()


def config(fake: FakeCloudflare, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "roan.backends.cloudflare.CloudflareBackend",
        "API_URL": f"{fake.url}/client/v4",
        "ZONE_ID": ZONE,
        "API_TOKEN": TOKEN,
        "HOSTS": ["www.example.com", "blog.example.com"],
        "TIMEOUT": (1.0, 2.0),
        **options,
    }


@pytest.fixture
def cf(settings: Any, fake: FakeCloudflare) -> FakeCloudflare:
    settings.ROAN_BACKENDS = {"cf": config(fake)}
    return fake


def test_urls_are_absolute_and_a_batch_is_split_at_the_cap(cf: FakeCloudflare) -> None:
    paths = [f"/posts/{i}/" for i in range(31)]
    roan.purge_urls(paths)
    first, second = cf.purges()
    assert [r.path for r in (first, second)] == [f"/client/v4/zones/{ZONE}/purge_cache"] * 2
    assert first.body == {"files": [f"https://www.example.com{p}" for p in paths[:30]]}
    assert second.body == {"files": ["https://www.example.com/posts/30/"]}
    assert first.headers["Authorization"] == "[checked]"  # the fake compared it
    attempts = rows()
    assert {a.status for a in attempts} == {"ok"}
    # One request, one purge id: each row carries the id of the call that purged it.
    ids = [a.purge_id for a in attempts]
    assert len(set(ids[:30])) == 1 and ids[30] != ids[0] and all(len(i) == 32 for i in ids)


def test_prefixes_tags_hosts_and_everything_each_have_their_body(
    cf: FakeCloudflare, settings: Any
) -> None:
    roan.purge_urls(["/posts/*", "https://blog.example.com/drafts/*"], kind="prefix")
    roan.purge_urls(["blog.post", "blog.post:1"], kind="tag")
    host = PurgeRequest("all", "", "blog.example.com")  # everything on one host
    pipeline.submit([Purge("cf", host, Cause(trigger="admin"))])
    roan.purge_urls([], kind="all")
    bodies = [r.body for r in cf.purges()]
    assert {"prefixes": ["www.example.com/posts/", "blog.example.com/drafts/"]} in bodies
    assert {"hosts": ["blog.example.com"]} in bodies
    assert {"tags": ["blog.post", "blog.post:1"]} in bodies
    assert {"purge_everything": True} in bodies
    assert {a.status for a in rows()} == {"ok"}


def test_a_host_outside_hosts_never_reaches_cloudflare(cf: FakeCloudflare) -> None:
    roan.purge_urls(["https://evil.example.net/x", "https://evil.example.net/"], kind="url")
    host = PurgeRequest("all", "", "evil.example.net")
    pipeline.submit([Purge("cf", host, Cause(trigger="admin"))])
    assert cf.received == []
    assert {(a.status, "HOSTS" in a.error) for a in rows()} == {("skipped", True)}


def test_a_429_is_honoured_and_the_rest_waits_as_long(cf: FakeCloudflare, settings: Any) -> None:
    settings.ROAN_BACKENDS = {"cf": config(cf, BATCH_SIZE=2)}
    cf.bucket.tokens, cf.bucket.rate = 1, 0.0  # one call, then Retry-After: 60
    before = timezone.now()
    roan.purge_urls(["/a", "/b", "/c", "/d", "/e"])
    # The first call went; the second was throttled; nothing more was sent.
    assert len(cf.received) == 2 and len(cf.purges()) == 1
    a, b, c, d, e = rows()
    assert (a.status, b.status) == ("ok", "ok")
    assert {(r.status, r.http_status) for r in (c, d)} == {("failed", 429)}
    assert "Rate limit enforced for cache purge" in c.error
    assert (e.status, e.http_status, e.error.startswith("not sent: ")) == ("failed", None, True)
    for attempt in (c, d, e):
        # Retry-After is 60 s; roan's own backoff would be 5 s +-25 %.
        assert attempt.next_attempt_at - before >= datetime.timedelta(seconds=59)
        assert attempt.tries == 1


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("ZONE_ID", "0" * 32, "7003: Could not route"),
        ("API_TOKEN", "wrong-token", "10000: Authentication error"),
    ],
)
def test_a_configuration_error_is_given_up_with_cloudflares_message(
    cf: FakeCloudflare, settings: Any, option: str, value: str, message: str
) -> None:
    settings.ROAN_BACKENDS = {"cf": config(cf, **{option: value})}
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert (attempt.status, attempt.next_attempt_at) == ("gave_up", None)
    assert message in attempt.error and attempt.error.startswith("HTTP ")


def test_a_200_without_success_is_a_failure(cf: FakeCloudflare) -> None:
    from tests.support.cdn_fakes import Answer

    cf.script = [Answer(200, {"success": False, "errors": [{"code": 1107, "message": "No"}]})]
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert attempt.status == "failed" and "1107: No" in attempt.error


def test_email_and_global_key(fake: FakeCloudflare, settings: Any) -> None:
    fake.email, fake.api_key = "ops@example.com", "global-key-do-not-leak"
    options = config(fake, EMAIL="ops@example.com", API_KEY="global-key-do-not-leak")
    del options["API_TOKEN"]
    settings.ROAN_BACKENDS = {"cf": options}
    roan.purge_urls(["/a"])
    [request] = fake.purges()
    assert request.headers["X-Auth-Key"] == "[checked]"


def test_tags_are_declared_for_the_middleware() -> None:
    assert CloudflareBackend.tag_header == "Cache-Tag"
    assert CloudflareBackend.tag_separator == ","


def test_the_plans_bucket_is_the_default_rate_limit(cf: FakeCloudflare, settings: Any) -> None:
    from roan.outbox.limits import rate_limit

    limit = rate_limit("cf")  # Free: 5 calls a minute, 25 saved up, of 30 URLs each
    assert limit is not None and (limit.rate, limit.burst) == (2.5, 750)
    settings.ROAN_BACKENDS = {"cf": {**config(cf), "PLAN": "business", "BATCH_SIZE": 100}}
    limit = rate_limit("cf")
    assert limit is not None and (limit.rate, limit.burst) == (1000, 5000)
    settings.ROAN_BACKENDS = {"cf": {**config(cf), "RATE_LIMIT": None}}
    assert rate_limit("cf") is None
    settings.ROAN_BACKENDS = {"cf": {**config(cf), "RATE_LIMIT": {"RATE": 1}}}
    limit = rate_limit("cf")
    assert limit is not None and limit.rate == 1


def test_the_default_rate_limit_holds_attempts_back(cf: FakeCloudflare, settings: Any) -> None:
    settings.ROAN_BACKENDS = {"cf": {**config(cf), "BATCH_SIZE": 1}}  # bucket: 25 targets
    roan.purge_urls([f"/p/{i}" for i in range(26)])
    assert len(cf.received) == 25
    held = rows()[-1]
    assert (held.status, held.tries) == ("pending", 0) and held.next_attempt_at is not None


def test_pages_carry_cache_tag_and_a_save_purges_them(
    cf: FakeCloudflare, settings: Any, client: Any
) -> None:
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    settings.ROAN_TAGS = True
    with roan.suppress_purges():
        post = Post.objects.create(title="Tagged", slug="tagged")
    page = client.get(f"/one/{post.pk}/")
    assert page.headers["Cache-Tag"] == f"testapp.post:{post.pk}"
    post.title = "Changed"
    post.save()
    [request] = cf.purges()
    assert f"testapp.post:{post.pk}" in request.body["tags"]
    assert PurgeAttempt.objects.get(kind="tag", target=f"testapp.post:{post.pk}").status == "ok"


def test_soft_invalidates_instead_of_purging_and_the_log_says_so(
    cf: FakeCloudflare, settings: Any
) -> None:
    roan.purge_urls(["/hard/"])
    settings.ROAN_BACKENDS = {"cf": config(cf, SOFT=True)}
    roan.purge_urls(["/soft/"])
    roan.purge_urls(["blog.post"], kind="tag")
    hard, soft, tag = cf.purges()
    assert hard.path == f"/client/v4/zones/{ZONE}/purge_cache"
    assert soft.path == tag.path == f"/client/v4/zones/{ZONE}/invalidate_cache"
    assert (soft.body, tag.body) == (
        {"files": ["https://www.example.com/soft/"]},
        {"tags": ["blog.post"]},
    )
    attempts = list(PurgeAttempt.objects.order_by("id"))
    assert [(a.target, a.status, a.soft) for a in attempts] == [
        ("/hard/", "ok", False),
        ("/soft/", "ok", True),
        ("blog.post", "ok", True),
    ]
