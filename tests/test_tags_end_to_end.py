"""The xkey header CacheTagMiddleware writes, proven on a real Varnish (example VCL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

import roan
from roan.models import PurgeAttempt
from tests.support.caches import start_varnish
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def varnish_site(live_server: Any) -> Iterator[Any]:
    node = start_varnish(live_server.thread.port)
    yield node
    node.close()


def fetch(url: str) -> requests.Response:
    return requests.get(url, timeout=10)


def test_varnish_keeps_the_xkey_and_a_tag_purge_makes_only_that_page_a_miss(
    varnish_site, settings
) -> None:
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    settings.ROAN_BACKENDS = {
        "edge": {"BACKEND": "roan.backends.varnish.VarnishBackend", "NODES": [varnish_site.url]}
    }
    with roan.suppress_purges():
        kept = Post.objects.create(title="Kept", slug="kept")
        purged = Post.objects.create(title="Purged", slug="purged")
    pages = {post.pk: f"{varnish_site.url}/one/{post.pk}/" for post in (kept, purged)}
    for page in pages.values():
        first = fetch(page)
        # Varnish keeps the tags (the purge below finds the page by them); the example
        # VCL strips them before the response reaches a visitor.
        assert (first.headers["X-Cache"], first.headers.get("xkey")) == ("MISS", None)
        assert fetch(page).headers["X-Cache"] == "HIT"

    assert roan.purge_urls([f"testapp.post:{purged.pk}"], kind="tag") == 1

    attempt = PurgeAttempt.objects.get(kind="tag")
    assert (attempt.target, attempt.status) == (f"testapp.post:{purged.pk}", "ok")
    assert fetch(pages[purged.pk]).headers["X-Cache"] == "MISS"
    assert fetch(pages[kept.pk]).headers["X-Cache"] == "HIT"
