"""A bound per tag (issue 30): ``roan_prune`` keeps each tag within
``ROAN_TAG_INDEX_MAX_URLS_PER_TAG`` URLs, and a tag past it is still purged everywhere it
may be cached: nginx gets the forgotten pages purged at once, a cache that can purge
wider (a prefix) gets a wide purge for the tag until those pages have expired.

The nginx test runs the example nginx config in front of the suite's counting origin.
"""

from __future__ import annotations

import datetime
import uuid
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone

from roan.backends.base import PREFIX, URL
from roan.models import OverflowedTag, PurgeAttempt, TaggedURL
from roan.purges import Cause
from roan.tags import index as tag_index
from roan.tags.purges import tag_purges
from tests.support.caches import Nginx
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

LIST_TAG = "testapp.post"
CDN = {
    "BACKEND": "roan.backends.http.HTTPBackend",
    "URL": "http://127.0.0.1:9/purge?u={url}",
    "KINDS": ["url", "prefix"],
    "HOSTS": ["127.0.0.1"],
}


def status(url: str) -> str:
    return requests.get(url, timeout=5).headers["X-Cache-Status"]


def index(path: str, *tags: str, age: int, host: str = "127.0.0.1") -> None:
    """Rows as the middleware writes them for a page rendered ``age`` seconds ago."""
    TaggedURL.objects.bulk_create(
        TaggedURL(
            tag=tag,
            host=host,
            path=path,
            url_key=tag_index.url_key(host, path),
            page_key=tag_index.url_key(host, path.partition("?")[0]),
            expires_at=timezone.now() + datetime.timedelta(seconds=600 - age),
        )
        for tag in tags
    )


def prune() -> str:
    out = StringIO()
    call_command("roan_prune", days=30, stdout=out)
    return out.getvalue()


def test_roan_prune_forgets_a_tags_oldest_pages_and_nginx_gets_them_purged(
    settings: Any, nginx_cache: Nginx
) -> None:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx_cache.url}/purge",
        }
    }
    run = uuid.uuid4().hex[:8]
    paths = [f"/per-tag-{run}/{n}/" for n in range(5)]  # paths[0] rendered longest ago
    for n, path in enumerate(paths):
        status(f"{nginx_cache.url}{path}")
        assert status(f"{nginx_cache.url}{path}") == "HIT"
        index(path, LIST_TAG, f"testapp.post:{n}", age=100 - n)
    settings.ROAN_TAG_INDEX_MAX_URLS_PER_TAG = 3

    said = prune()

    assert "forgot 2 row(s) over ROAN_TAG_INDEX_MAX_URLS_PER_TAG (3)" in said
    kept = TaggedURL.objects.filter(tag=LIST_TAG).values_list("path", flat=True)
    assert sorted(kept) == paths[2:]
    # Only the list tag's rows went: each page's own object tag still finds it.
    assert TaggedURL.objects.exclude(tag=LIST_TAG).count() == 5
    # The forgotten pages were purged in the same run: no copy is left that the list
    # tag's purge would now miss.
    assert [status(f"{nginx_cache.url}{p}") for p in paths] == ["MISS"] * 2 + ["HIT"] * 3
    assert set(PurgeAttempt.objects.values_list("target", "status", "trigger")) == {
        (paths[0], "ok", "command"),
        (paths[1], "ok", "command"),
    }
    assert OverflowedTag.objects.filter(tag=LIST_TAG).exists()
    # Within the bound now: a second run has nothing to do.
    assert "ROAN_TAG_INDEX_MAX_URLS_PER_TAG" not in prune()

    # The next save purges the list tag's pages the index still holds, once each.
    PurgeAttempt.objects.all().delete()
    Post.objects.create(title="new", slug=run)
    assert [status(f"{nginx_cache.url}{p}") for p in paths[2:]] == ["MISS"] * 3


def test_a_cache_that_purges_prefixes_purges_an_overflowed_tag_wide_until_its_pages_expire(
    settings: Any,
) -> None:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {"cdn": {**CDN, "HOSTS": ["a.example"]}}
    for n in range(4):
        index(f"/wide/{n}/", LIST_TAG, age=100 - n, host="a.example")
    settings.ROAN_TAG_INDEX_MAX_URLS_PER_TAG = 2

    last_forgotten = TaggedURL.objects.get(path="/wide/1/").expires_at
    prune()

    # Nothing sent at eviction (the CDN purges wider at the next purge of the tag) ...
    assert not PurgeAttempt.objects.exists()
    assert TaggedURL.objects.count() == 2
    mark = OverflowedTag.objects.get(tag=LIST_TAG)
    # ... until the last forgotten page has expired from the caches.
    assert mark.until == last_forgotten
    purges = tag_purges([LIST_TAG, "testapp.post:9"], Cause(trigger="save"), ["cdn"])
    assert [(p.request.kind, p.request.target) for p in purges] == [
        (URL, "/wide/3/"),
        (URL, "/wide/2/"),
        (PREFIX, "/"),
    ]
    assert "more than ROAN_TAG_INDEX_MAX_URLS_PER_TAG (2) URLs" in purges[-1].cause.rule_name
    # A tag that never overflowed is purged by its URLs only.
    assert tag_purges(["testapp.post:9"], Cause(trigger="save"), ["cdn"]) == []

    # Once the forgotten pages have expired, the mark goes and purges are narrow again.
    OverflowedTag.objects.update(until=timezone.now() - datetime.timedelta(seconds=1))
    prune()
    assert not OverflowedTag.objects.exists()
    purges = tag_purges([LIST_TAG], Cause(trigger="save"), ["cdn"])
    assert [p.request.kind for p in purges] == [URL, URL]


def test_the_dry_run_counts_and_forgets_nothing(settings: Any) -> None:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {"cdn": CDN}
    for n in range(5):
        index(f"/dry/{n}/", LIST_TAG, age=n)
    settings.ROAN_TAG_INDEX_MAX_URLS_PER_TAG = 1
    out = StringIO()
    call_command("roan_prune", days=30, dry_run=True, stdout=out)
    assert "would forget 4 row(s) over ROAN_TAG_INDEX_MAX_URLS_PER_TAG (1)" in out.getvalue()
    assert TaggedURL.objects.count() == 5
    assert not OverflowedTag.objects.exists()


def test_no_bound_per_tag_when_the_setting_is_none(settings: Any) -> None:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {"cdn": CDN}
    settings.ROAN_TAG_INDEX_MAX_URLS_PER_TAG = None
    for n in range(5):
        index(f"/none/{n}/", LIST_TAG, age=n)
    prune()
    assert TaggedURL.objects.count() == 5


def test_the_dashboard_shows_the_index_size_and_its_bounds(
    settings: Any, admin_client: Any
) -> None:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {"cdn": CDN}
    settings.ROAN_TAG_INDEX_MAX_ROWS = 500
    settings.ROAN_TAG_INDEX_MAX_URLS_PER_TAG = 40
    for n in range(3):
        index(f"/size/{n}/", LIST_TAG, f"testapp.post:{n}", age=n)
    prune()  # counts it afresh

    page = admin_client.get("/admin/roan/dashboard/").content.decode()

    assert '<td class="roan-num roan-index-rows">6</td>' in page
    assert '<td class="roan-num roan-index-urls">3</td>' in page
    assert "at most 500" in page and "at most 40 per tag" in page
    # Without a backend that reads the index there is nothing to show.
    settings.ROAN_BACKENDS = {"edge": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    assert "roan-tag-index" not in admin_client.get("/admin/roan/dashboard/").content.decode()
