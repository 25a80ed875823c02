"""A crawler through a real nginx, then a save (issue 30): every page that shows the post
is fresh afterwards, and the index stays within its bound.

nginx runs example/deploy/nginx.conf in front of Django's live server with the tag test
site (``tests.support.tagged_site``): the index is written by the tag middleware as in
production. The crawl is seeded, so a failure can be replayed.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.test import Client

from roan.models import PurgeAttempt, TaggedURL
from tests.support.caches import Nginx
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 600
SAVES = 3
ADMIN_SAVES = 9
#: The pages of a save's tags purged inside its request (the rest after the response).
INLINE = 10
HOST = "blog.example"
MAX_VARIANTS = 5
WORKERS = 4


def crawl_targets(rng: random.Random, pks: list[int], count: int) -> list[tuple[str, str]]:
    """``(Host header, path)`` a crawler and odd links would fetch."""
    hosts = [HOST, HOST, HOST, f"{HOST}:8080", f"{HOST}:1", "BLOG.example", "evil.example"]
    targets = []
    for _ in range(count):
        pk = rng.choice(pks)
        page = rng.choice([f"/one/{pk}/", f"/front/{pk}/", "/many/", f"/missing/x{rng.random()}/"])
        query = rng.choice(
            [
                "",
                "",
                f"page={rng.randint(1, 30)}",
                f"utm_source=s{rng.randint(1, 10**6)}&utm_medium=mail",
                f"fbclid={uuid.uuid4().hex}",
                f"q={rng.randint(1, 10**6)}",
                f"b=1&a={rng.randint(1, 3)}",
            ]
        )
        targets.append((rng.choice(hosts), f"{page}?{query}" if query else page))
    return targets


@contextlib.contextmanager
def an_editors_request() -> Iterator[None]:
    """The signals Django sends around a request (roan sends what must wait for the
    response on ``request_finished``), without closing this test's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        request_started.send(sender=None)
        try:
            yield
        finally:
            request_finished.send(sender=None)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def request_time(post: Post, title: str) -> tuple[float, int]:
    """Seconds a save of ``post`` takes inside a request (autocommit), and how many purges
    it sent before the response: recorded, or sent and claimed by this process while
    their outcomes wait for the response to be out (roan.outbox.after_response)."""
    with an_editors_request():
        before = set(PurgeAttempt.objects.values_list("pk", flat=True))
        start = time.perf_counter()
        post.title = title
        post.save()
        seconds = time.perf_counter() - start
        written = PurgeAttempt.objects.exclude(pk__in=before)
        return seconds, written.filter(
            ~Q(status="pending") | Q(claimed_until__isnull=False)
        ).count()


#: When each response of the admin client was ready (``answered``).
_ANSWERED: list[float] = []


def answered(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[..., HttpResponse]:
    """The outermost middleware: the moment the editor's response is ready. What runs on
    ``request_finished`` (after the WSGI server has sent the response) is not counted."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        _ANSWERED.append(time.perf_counter())
        return response

    return middleware


def admin_save_time(client: Client, post: Post, title: str) -> float:
    """Seconds the editor waits for the admin's change form to save ``post``."""
    form = {"title": title, "slug": post.slug, "body": "", "views": "0", "_save": "Save"}
    start = time.perf_counter()
    response = client.post(f"/admin/testapp/post/{post.pk}/change/", form)
    assert response.status_code == 302, response.content[:500]
    return _ANSWERED[-1] - start


def fetch(nginx: Nginx, host: str, path: str) -> tuple[int, str, str]:
    response = requests.get(f"{nginx.url}{path}", headers={"Host": host}, timeout=10)
    return response.status_code, response.headers.get("X-Cache-Status", ""), response.text


@pytest.mark.parametrize(
    "requests_made",
    [
        REQUESTS,
        # The crawl, in the suite that runs the slow freshness checks.
        pytest.param(10_000, marks=pytest.mark.freshness, id="10000"),
    ],
)
def test_after_a_crawl_a_save_leaves_no_page_showing_the_old_title(
    settings: Any, nginx_site: Nginx, requests_made: int, request: Any
) -> None:
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    settings.ALLOWED_HOSTS = [HOST]
    settings.ROAN_TAGS = True
    settings.ROAN_TAG_INDEX_MAX_VARIANTS = MAX_VARIANTS
    settings.ROAN_MAX_INLINE_TAG_URLS = INLINE
    # Every page must be a MISS after the save: a verification probe refills the page it
    # checks (fresh, as a reader would), and would show here as a HIT.
    settings.ROAN_VERIFY_SAMPLE = 0
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx_site.url}/purge",
            "HOSTS": [HOST],
        }
    }
    settings.MIDDLEWARE = [f"{__name__}.answered", *settings.MIDDLEWARE]
    editor = Client(HTTP_HOST=HOST)
    editor.force_login(User.objects.create_superuser("editor", "editor@example.com", "x"))
    run = uuid.uuid4().hex[:8]
    posts = [Post.objects.create(title=f"title-{run}-{n}", slug=f"{run}-{n}") for n in range(5)]
    changed = posts[0]
    # The same saves on an empty index: the baselines. The admin's change form (one
    # transaction, the editor's real request) and a save in autocommit.
    empty = statistics.median(request_time(changed, f"title-{run}-0")[0] for _ in range(SAVES))
    admin_empty = statistics.median(
        admin_save_time(editor, changed, f"title-{run}-0") for _ in range(ADMIN_SAVES)
    )
    old_title = changed.title
    rng = random.Random(30)
    targets = crawl_targets(rng, [p.pk for p in posts], requests_made)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(lambda t: fetch(nginx_site, *t), targets))
    showing = {
        target for target, (_, _, body) in zip(targets, results, strict=True) if old_title in body
    }
    assert showing, "the crawl never saw the post"
    assert {code for code, _, _ in results} <= {200, 400, 404}
    # Fetched again now, each is a HIT where it is cached: after the save it must not be.
    assert any(fetch(nginx_site, *t)[1] == "HIT" for t in showing)

    # The index's bound: per host and path, MAX_VARIANTS query strings, each with the
    # tags of its page (at most every post and the list tag here); no 404, no port, no
    # tracking parameter, no host the backend does not purge.
    rows = list(TaggedURL.objects.values_list("host", "path"))
    urls = set(rows)
    paths = {p.partition("?")[0] for _, p in rows}
    # (Renders of new variants at the same moment may each pass the count: over by at
    # most the other concurrent requests.)
    for page in paths:
        variants = [p for _, p in urls if p.partition("?")[0] == page]
        assert len(variants) <= MAX_VARIANTS + WORKERS - 1, page
    assert len(rows) <= len(urls) * (len(posts) + 1)
    assert {host for host, _ in rows} == {HOST.lower()}
    assert not any(p.startswith("/missing/") or "utm_" in p or "fbclid" in p for _, p in rows)

    PurgeAttempt.objects.all().delete()
    # The save after the crawl: its request sends at most ROAN_MAX_INLINE_TAG_URLS of the
    # pages (the post's own first), the others once its response is out.
    seconds, sent_inside = request_time(changed, f"renamed-{run}")
    assert 0 < sent_inside <= INLINE
    assert PurgeAttempt.objects.count() > INLINE
    assert not PurgeAttempt.objects.filter(status="pending").exists()
    written = PurgeAttempt.objects.count()
    # The editor's request through the admin, each save a change of title that purges
    # every page again.
    admin_after = statistics.median(
        admin_save_time(editor, changed, f"renamed-{run}-{n}") for n in range(ADMIN_SAVES)
    )
    ratio = admin_after / admin_empty
    # A regression guard, not the goal (1.5x, reported): timings on a shared machine vary.
    assert ratio < 3, (admin_after, admin_empty)
    # For the session's summary (tests/conftest.py); not record_property, which CI's
    # JUnit report (xunit2) refuses.
    request.node.user_properties.append(
        (
            "freshness",
            f"crawler ({requests_made} requests): the admin's save request "
            f"{admin_after * 1000:.1f} ms after the crawl against {admin_empty * 1000:.1f} ms "
            f"on an empty index ({ratio:.2f}x); a save in autocommit {seconds * 1000:.1f} "
            f"against {empty * 1000:.1f} ms ({len(rows)} index rows, {sent_inside} purges "
            f"inside the request, {written - sent_inside} after it)",
        )
    )

    # nginx keys a page by "$host$request_uri" ($host: lowercased, no port): one fetch
    # per key, each a MISS, none showing the old title.
    keys = {(host.lower().partition(":")[0], path) for host, path in showing}
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        after = list(pool.map(lambda key: (key, *fetch(nginx_site, *key)), sorted(keys)))
    stale = [
        (key, code, cache)
        for key, code, cache, body in after
        if cache == "HIT" or old_title in body
    ]
    assert stale == []
    assert not PurgeAttempt.objects.filter(status__in=["skipped", "failed"]).exists()
