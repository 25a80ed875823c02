"""DjangoCacheBackend invalidates pages cached by cache_page and the cache middleware."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone, translation
from django.views.decorators.cache import cache_page
from django.views.decorators.vary import vary_on_headers

from roan.backends.base import PurgeRequest, PurgeResult
from roan.backends.django_cache import DjangoCacheBackend

renders: list[str] = []


def render(request: HttpRequest, **kwargs: str) -> HttpResponse:
    renders.append(request.get_full_path())
    return HttpResponse(f"render {len(renders)}")


urlpatterns = [
    path("cached/", cache_page(300)(vary_on_headers("X-Variant")(render))),
    path("cached/<str:slug>/", cache_page(300)(render)),
    path("own-prefix/", cache_page(300, key_prefix="mine")(render)),
    path("other-cache/", cache_page(300, cache="pages")(render)),
]

pytestmark = pytest.mark.urls(__name__)


class BrokenCache(LocMemCache):
    """A cache whose server is down."""

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache server at 10.0.0.9:6379 is down")


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    cache.clear()
    renders.clear()


def backend(**options: Any) -> DjangoCacheBackend:
    return DjangoCacheBackend("site", {"HOSTS": ["testserver"], **options})


def purge(target: str, host: str = "", **options: Any) -> PurgeResult:
    b = backend(**options)
    [result] = b.purge(b.nodes[0], [PurgeRequest("url", target, host)])
    return result


def test_a_cache_page_view_is_rendered_again_after_a_purge(client) -> None:
    first = client.get("/cached/").content
    assert client.get("/cached/").content == first
    assert len(renders) == 1

    result = purge("/cached/")

    assert (result.status, result.http_status, result.error) == ("ok", None, "")
    assert result.latency_ms is not None and result.latency_ms > 0
    assert client.get("/cached/").content != first
    assert len(renders) == 2


def test_the_node_is_named_after_the_cache() -> None:
    assert backend().nodes == ("cache:default",)
    assert backend().capabilities == {"url", "all"}


def test_every_variant_is_gone_whoever_asks_first(client) -> None:
    # A page varying on a header: the copy for visitors without it, and one with it.
    client.get("/cached/")
    client.get("/cached/", HTTP_X_VARIANT="a")
    assert len(renders) == 2
    purge("/cached/")
    # The variant with the header asks first and re-learns the header list; the
    # header-less copy must still be gone (it was deleted by its own key): deleting the
    # header list alone would serve the old header-less copy again here.
    client.get("/cached/", HTTP_X_VARIANT="a")
    client.get("/cached/")
    assert len(renders) == 4


def test_head_requests_are_purged_too(client) -> None:
    client.head("/cached/")
    client.head("/cached/")
    assert len(renders) == 1
    assert purge("/cached/").status == "ok"
    client.head("/cached/")
    assert len(renders) == 2


def test_query_strings_are_separate_pages(client) -> None:
    client.get("/cached/?page=2")
    client.get("/cached/")
    assert purge("/cached/?page=2").status == "ok"
    client.get("/cached/")
    client.get("/cached/?page=2")
    assert renders == ["/cached/?page=2", "/cached/", "/cached/?page=2"]


def test_percent_encoded_paths(client) -> None:
    # roan's URL templates percent-encode slugs; Django keys the decoded path re-encoded.
    client.get("/cached/caf%C3%A9/")
    client.get("/cached/caf%C3%A9/")
    assert len(renders) == 1
    assert purge("/cached/caf%C3%A9/").status == "ok"
    client.get("/cached/caf%C3%A9/")
    assert len(renders) == 2


def test_a_page_that_was_not_cached(client) -> None:
    assert purge("/cached/").status == "not_cached"


def test_no_host_means_every_host_in_hosts(client) -> None:
    for host in ("a.example", "b.example:8000"):
        client.get("/cached/", HTTP_HOST=host)
    hosts = ["a.example", "b.example:8000"]
    assert purge("/cached/", "a.example", HOSTS=hosts).status == "ok"
    client.get("/cached/", HTTP_HOST="b.example:8000")  # still cached
    assert len(renders) == 2
    assert purge("/cached/", HOSTS=hosts).status == "ok"  # the b.example:8000 copy
    for host in hosts:
        client.get("/cached/", HTTP_HOST=host)
    assert len(renders) == 4


def test_https_pages(client) -> None:
    client.get("/cached/", secure=True)
    assert purge("/cached/", SCHEMES=["http"]).status == "not_cached"
    assert purge("/cached/").status == "ok"


def test_the_editors_language_and_time_zone_do_not_matter(client) -> None:
    client.get("/cached/")
    with translation.override("fr"), timezone.override("Asia/Tokyo"):
        assert purge("/cached/").status == "ok"


def test_pages_cached_in_other_languages(client) -> None:
    with translation.override("de"):
        client.get("/cached/")  # without LocaleMiddleware the active language keys it
    assert purge("/cached/").status == "not_cached"
    assert purge("/cached/", LANGUAGES=["en-us", "de"]).status == "ok"


def test_key_prefix_defaults_cover_the_middleware_and_cache_page(client, settings) -> None:
    # cache_page() without key_prefix keys pages with "", whatever
    # CACHE_MIDDLEWARE_KEY_PREFIX says; the middleware uses CACHE_MIDDLEWARE_KEY_PREFIX.
    settings.CACHE_MIDDLEWARE_KEY_PREFIX = "site"
    client.get("/cached/")
    assert purge("/cached/").status == "ok"


def test_a_cache_page_key_prefix_needs_the_option(client) -> None:
    client.get("/own-prefix/")
    assert purge("/own-prefix/").status == "not_cached"
    assert purge("/own-prefix/", KEY_PREFIX="mine").status == "ok"
    client.get("/own-prefix/")
    assert len(renders) == 2


def test_another_cache_alias(client, settings) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "pages": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "p"},
    }
    client.get("/other-cache/")
    assert purge("/other-cache/").status == "not_cached"
    assert purge("/other-cache/", CACHE="pages").status == "ok"
    assert backend(CACHE="pages").nodes == ("cache:pages",)


def test_a_broken_cache_is_a_failure_not_an_exception(settings) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "broken": {"BACKEND": f"{__name__}.BrokenCache"},
    }
    result = purge("/cached/", CACHE="broken")
    assert (result.status, result.error, result.retryable) == (
        "failed",
        "cache error (ConnectionError)",
        True,
    )
    assert result.latency_ms is not None


def test_a_host_django_refuses_is_a_configuration_error(settings) -> None:
    settings.ALLOWED_HOSTS = ["www.example.com"]
    result = purge("/cached/")
    assert (result.status, result.retryable) == ("failed", False)
    assert "ALLOWED_HOSTS" in result.error


def test_purging_everything_needs_allow_clear(client) -> None:
    assert "ALLOW_CLEAR" in backend().refuse(PurgeRequest("all", ""))
    client.get("/cached/")
    b = backend(ALLOW_CLEAR=True)
    assert b.refuse(PurgeRequest("all", "")) == ""
    [result] = b.purge(b.nodes[0], [PurgeRequest("all", "")])
    assert result.status == "ok"
    client.get("/cached/")
    assert len(renders) == 2


def test_refusals() -> None:
    b = backend()
    assert "cannot purge by prefix" in b.refuse(PurgeRequest("prefix", "/"))
    assert "not in this backend's HOSTS" in b.refuse(PurgeRequest("url", "/", "evil.test"))
    assert "must start with /" in b.refuse(PurgeRequest("url", "cached/"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"HOSTS": []}, "['HOSTS'] is required"),
        ({"HOSTS": ["https://www.example.com"]}, "['HOSTS']: 'https://www.example.com' is not"),
        ({"CACHE": "nope"}, "['CACHE']: no cache 'nope'"),
        ({"SCHEMES": ["gopher"]}, "['SCHEMES'] must list"),
        ({"KEY_PREFIX": 3}, "['KEY_PREFIX'] must be a string"),
        ({"ALLOW_CLEAR": "yes"}, "['ALLOW_CLEAR'] must be True or False"),
        ({"TIMEOUT": -1}, "['TIMEOUT'] must be positive"),
        ({"LOCATION": "x"}, "unknown option(s) LOCATION"),
    ],
)
def test_options_are_checked(options: dict, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        backend(**options)
    assert message in str(info.value)
    assert "'site'" in str(info.value)
