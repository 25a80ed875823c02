"""The tag index under real traffic (issue 30): only what a cache keeps and a purge can
reach is indexed, and a page no purge would reach is not kept by a shared cache.

The backend here purges tags by URL (nginx), so it reads the index; a tag-capable one
(Varnish) never does, and then nothing is written.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory

from roan.models import TaggedURL
from roan.tags import index as tag_index
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db

NGINX = {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": "http://127.0.0.1:9/purge"}


@pytest.fixture
def site(settings: Any) -> Any:
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {"nginx": {**NGINX, "HOSTS": ["blog.example", "www.example"]}}
    return settings


def indexed() -> set[tuple[str, str]]:
    return set(TaggedURL.objects.values_list("host", "path"))


def shared_caches_may_keep(response: Any) -> bool:
    directives = {d.strip().split("=")[0] for d in response["Cache-Control"].split(",")}
    return "private" not in directives and "no-store" not in directives


def remember(path: str, *tags: str, host: str = "blog.example", status: int = 200) -> bool:
    request = RequestFactory().get(path, HTTP_HOST=host)
    response = HttpResponse("page", status=status)
    response["Cache-Control"] = "public, max-age=300"
    return tag_index.remember(request, response, frozenset(tags))


def test_a_tagged_404_is_not_indexed_and_no_shared_cache_keeps_it(site: Any) -> None:
    # get_object_or_404 and friends tag a 404 with the model's list tag: one row per URL
    # a visitor makes up, and a cached 404 for a draft stays after it is published.
    response = Client().get("/missing/nope/", HTTP_HOST="blog.example")
    assert response.status_code == 404
    assert indexed() == set()
    assert not shared_caches_may_keep(response)


def test_a_page_is_indexed_under_the_host_the_purge_names_without_the_port(site: Any) -> None:
    post = Post.objects.create(title="One", slug="one")
    response = Client().get(f"/one/{post.pk}/", HTTP_HOST="blog.example:8000")
    assert shared_caches_may_keep(response)
    assert indexed() == {("blog.example", f"/one/{post.pk}/")}


def test_a_host_no_backend_purges_is_not_indexed_and_stays_cacheable(site: Any) -> None:
    post = Post.objects.create(title="One", slug="one")
    response = Client().get(f"/one/{post.pk}/", HTTP_HOST="elsewhere.example")
    assert indexed() == set()
    assert shared_caches_may_keep(response)  # not a cache of ours: not ours to refuse


def test_nothing_is_indexed_when_every_backend_purges_by_tag(settings: Any) -> None:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {
        "edge": {"BACKEND": "roan.backends.varnish.VarnishBackend", "NODES": ["http://127.0.0.1:9"]}
    }
    remember("/a/", "testapp.post")
    assert indexed() == set()


@pytest.mark.parametrize(
    "path", ["/cms/x/../../internal/status", "/a/./b/", "/a/%2e%2e/b/", "/a/%2E%2E/%2e/"]
)
def test_a_path_with_dot_segments_is_never_indexed(site: Any, path: str) -> None:
    # Sent to the purge location as is, nginx would resolve it: a blind GET of another URL.
    assert remember(path, "testapp.post") is False
    assert indexed() == set()


def test_tracking_parameters_are_not_indexed_and_their_pages_not_kept(site: Any) -> None:
    post = Post.objects.create(title="One", slug="one")
    client = Client()
    for query in ("utm_source=news&utm_medium=mail", "fbclid=abc", "page=2&GCLID=x"):
        response = client.get(f"/one/{post.pk}/?{query}", HTTP_HOST="blog.example")
        assert response.status_code == 200
        assert not shared_caches_may_keep(response), query
    assert indexed() == set()
    # A parameter that changes the page is a variant like any other.
    client.get(f"/one/{post.pk}/?page=2", HTTP_HOST="blog.example")
    assert indexed() == {("blog.example", f"/one/{post.pk}/?page=2")}


def test_the_ignored_parameters_are_a_setting(site: Any) -> None:
    site.ROAN_TAG_INDEX_IGNORED_PARAMS = ["ref", "src_*"]
    assert remember("/a/?utm_source=x", "t") is True
    assert remember("/a/?ref=x", "t") is False
    assert remember("/a/?src_id=1", "t") is False
    assert indexed() == {("blog.example", "/a/?utm_source=x")}


def test_the_query_string_is_kept_as_the_cache_keys_it(site: Any) -> None:
    # nginx keys "$request_uri": "?b=1&a=2" and "?a=2&b=1" are two copies, both purged.
    remember("/q/?b=1&a=2", "t")
    remember("/q/?a=2&b=1", "t")
    assert indexed() == {("blog.example", "/q/?b=1&a=2"), ("blog.example", "/q/?a=2&b=1")}


def test_variants_of_a_path_are_bounded_and_the_others_not_kept(site: Any) -> None:
    site.ROAN_TAG_INDEX_MAX_VARIANTS = 3
    post = Post.objects.create(title="One", slug="one")
    client = Client()
    kept = [client.get(f"/one/{post.pk}/?page={n}", HTTP_HOST="blog.example") for n in range(3)]
    assert all(shared_caches_may_keep(response) for response in kept)
    over = client.get(f"/one/{post.pk}/?page=99", HTTP_HOST="blog.example")
    assert not shared_caches_may_keep(over)
    # A variant already indexed is rendered again (its lifetime renewed) as before.
    again = client.get(f"/one/{post.pk}/?page=1", HTTP_HOST="blog.example")
    assert shared_caches_may_keep(again)
    assert len(indexed()) == 3  # page=0, 1 and 2
    # The page itself (no query string) is always kept: crawlers cannot push it out.
    bare = client.get(f"/one/{post.pk}/", HTTP_HOST="blog.example")
    assert shared_caches_may_keep(bare)
    assert ("blog.example", f"/one/{post.pk}/") in indexed()
    # The bound is per path and host: another host's copy of the path has its own.
    assert remember(f"/one/{post.pk}/?page=99", "t", host="www.example") is True
