"""The example proxies (example/deploy/) keep cache tags to themselves, and cached 404s
never outlive a change (issue 30).

nginx and Varnish run the example configs in front of Django's live server with the tag
test site (``tests.support.tagged_site``). Tag headers reach the caches (a tag purge
still works) but never a visitor. A 404 that read the database (it carries the list tag)
is not indexed per URL: nginx, which purges tags by URL, is told not to keep it; Varnish
keeps it for at most a minute and purges it by tag. A 404 that read nothing is kept a
minute by both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from roan.models import TaggedURL
from tests.support.caches import Nginx, Varnish, start_nginx, start_varnish
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

TAG_HEADERS = ("xkey", "Cache-Tag", "Surrogate-Key", "Edge-Cache-Tag", "CDN-Tag")
#: Backends that only put their tag headers on pages here (their purges fail fast).
HEADERS_ONLY = {
    "edge": {"BACKEND": "roan.backends.varnish.VarnishBackend", "NODES": ["http://127.0.0.1:9"]},
    "cdn": {
        "BACKEND": "roan.backends.cloudflare.CloudflareBackend",
        "ZONE_ID": "0" * 32,
        "API_TOKEN": "not-used-here",
        "API_URL": "http://127.0.0.1:9/client/v4",
        "HOSTS": ["127.0.0.1"],
    },
}


@pytest.fixture(scope="module")
def nginx_site(live_server: Any) -> Iterator[Nginx]:
    node = start_nginx(live_server.thread.port)
    yield node
    node.close()


@pytest.fixture(scope="module")
def varnish_site(live_server: Any) -> Iterator[Varnish]:
    node = start_varnish(live_server.thread.port)
    yield node
    node.close()


@pytest.fixture
def tag_site(settings: Any) -> Any:
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    settings.ROAN_TAGS = True
    return settings


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=10)


def cache_of(response: requests.Response) -> str:
    return response.headers.get("X-Cache-Status") or response.headers["X-Cache"]


def leaked(response: requests.Response) -> list[str]:
    return [name for name in TAG_HEADERS if name in response.headers]


def test_nginx_hides_the_tag_headers_and_still_purges_by_tag(
    tag_site: Any, nginx_site: Nginx
) -> None:
    tag_site.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx_site.url}/purge",
        },
        **HEADERS_ONLY,
    }
    post = Post.objects.create(title=f"before-{uuid.uuid4().hex[:8]}", slug=uuid.uuid4().hex)
    page = f"{nginx_site.url}/one/{post.pk}/"
    origin = get(f"http://127.0.0.1:{nginx_site.origin_port}/one/{post.pk}/")
    assert {"xkey", "Cache-Tag"} <= set(origin.headers)  # Django sends them to the proxy

    first, second = get(page), get(page)
    assert (cache_of(first), cache_of(second)) == ("MISS", "HIT")
    assert leaked(first) == leaked(second) == []

    post.title = "after"
    post.save()  # purged by its tag: nginx gets the URL the index holds

    after = get(page)
    assert (cache_of(after), after.text.split(" by")[0], leaked(after)) == ("MISS", "after", [])


def test_varnish_hides_every_tag_header_and_still_purges_by_tag(
    tag_site: Any, varnish_site: Varnish
) -> None:
    tag_site.ROAN_BACKENDS = {
        "varnish": {"BACKEND": "roan.backends.varnish.VarnishBackend", "NODES": [varnish_site.url]},
        "cdn": HEADERS_ONLY["cdn"],
    }
    post = Post.objects.create(title=f"before-{uuid.uuid4().hex[:8]}", slug=uuid.uuid4().hex)
    page = f"{varnish_site.url}/one/{post.pk}/"
    first, second = get(page), get(page)
    assert (cache_of(first), cache_of(second)) == ("MISS", "HIT")
    assert leaked(first) == leaked(second) == []

    post.title = "after"
    post.save()

    after = get(page)
    assert (cache_of(after), after.text.split(" by")[0], leaked(after)) == ("MISS", "after", [])


def test_nginx_never_keeps_a_404_that_read_the_database_nor_indexes_it(
    tag_site: Any, nginx_site: Nginx
) -> None:
    tag_site.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx_site.url}/purge",
        }
    }
    slug = uuid.uuid4().hex
    page = f"{nginx_site.url}/missing/{slug}/"
    first, second = get(page), get(page)
    assert (first.status_code, cache_of(first), cache_of(second)) == (404, "MISS", "MISS")
    assert "private" in first.headers["Cache-Control"]
    assert not TaggedURL.objects.filter(path__contains=slug).exists()

    Post.objects.create(title="now here", slug=slug)
    assert (get(page).status_code, get(page).text) == (200, "found")

    # A URL that resolves nowhere read nothing: kept a minute (proxy_cache_valid 404 1m).
    nowhere = f"{nginx_site.url}/nowhere-{slug}/"
    assert [cache_of(get(nowhere)) for _ in range(2)] == ["MISS", "HIT"]


def test_varnish_keeps_a_tagged_404_briefly_and_a_change_purges_it(
    tag_site: Any, varnish_site: Varnish
) -> None:
    tag_site.ROAN_BACKENDS = {
        "varnish": {"BACKEND": "roan.backends.varnish.VarnishBackend", "NODES": [varnish_site.url]}
    }
    slug = uuid.uuid4().hex
    page = f"{varnish_site.url}/missing/{slug}/"
    first, second = get(page), get(page)
    assert (first.status_code, cache_of(first), cache_of(second)) == (404, "MISS", "HIT")
    assert leaked(second) == []

    Post.objects.create(title="now here", slug=slug)  # purges the list tag the 404 carried

    assert (get(page).status_code, get(page).text) == (200, "found")
