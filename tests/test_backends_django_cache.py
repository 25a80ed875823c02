"""DjangoCacheBackend invalidates pages cached by cache_page, every variant of them."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.cache import cache_page
from django.views.decorators.vary import vary_on_headers

from roan.backends.base import PurgeRequest
from roan.backends.django_cache import DjangoCacheBackend

renders: list[str] = []


@cache_page(300)
@vary_on_headers("X-Variant")
def cached_view(request: HttpRequest) -> HttpResponse:
    renders.append(request.get_full_path())
    return HttpResponse(f"render {len(renders)}")


urlpatterns = [path("cached/", cached_view)]

pytestmark = pytest.mark.urls(__name__)


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    cache.clear()
    renders.clear()


def backend(**options) -> DjangoCacheBackend:
    return DjangoCacheBackend("site", {"HOSTS": ["testserver"], **options})


def test_a_cache_page_view_is_rendered_again_after_a_purge(client) -> None:
    first = client.get("/cached/").content
    assert client.get("/cached/").content == first
    b = backend()
    [result] = b.purge(b.nodes[0], [PurgeRequest("url", "/cached/")])
    assert result.status == "ok"
    assert client.get("/cached/").content != first
    assert len(renders) == 2


def test_the_variant_without_the_header_goes_whoever_asks_first(client) -> None:
    # A page varying on a header: the copy for visitors without it, and one with it.
    client.get("/cached/")
    client.get("/cached/", HTTP_X_VARIANT="a")
    assert len(renders) == 2
    b = backend()
    b.purge(b.nodes[0], [PurgeRequest("url", "/cached/")])
    # The variant with the header asks first and re-learns the header list; the
    # header-less copy must still be gone (it was deleted by its own key).
    client.get("/cached/", HTTP_X_VARIANT="a")
    client.get("/cached/")
    assert len(renders) == 4


def test_query_strings_are_separate_pages(client) -> None:
    client.get("/cached/?page=2")
    client.get("/cached/")
    b = backend()
    [result] = b.purge(b.nodes[0], [PurgeRequest("url", "/cached/?page=2")])
    assert result.status == "ok"
    client.get("/cached/")
    assert renders == ["/cached/?page=2", "/cached/"]


def test_a_page_that_was_not_cached(client) -> None:
    b = backend()
    [result] = b.purge(b.nodes[0], [PurgeRequest("url", "/cached/")])
    assert result.status == "not_cached"


def test_purging_everything_needs_allow_clear(client) -> None:
    assert "ALLOW_CLEAR" in backend().refuse(PurgeRequest("all", ""))
    client.get("/cached/")
    b = backend(ALLOW_CLEAR=True)
    assert b.refuse(PurgeRequest("all", "")) == ""
    [result] = b.purge(b.nodes[0], [PurgeRequest("all", "")])
    assert result.status == "ok"
    client.get("/cached/")
    assert len(renders) == 2


def test_options_are_checked() -> None:
    with pytest.raises(ImproperlyConfigured, match="HOSTS'] is required"):
        DjangoCacheBackend("site", {})
    with pytest.raises(ImproperlyConfigured, match="no cache 'nope'"):
        backend(CACHE="nope")
    with pytest.raises(ImproperlyConfigured, match="SCHEMES"):
        backend(SCHEMES=["gopher"])
