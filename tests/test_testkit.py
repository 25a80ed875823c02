"""roan's test kit for projects (``roan.testing``): a real nginx and Varnish in front of
Django's live server, ``assert_hit`` / ``assert_miss`` / ``assert_fresh``, and
``CacheTestCase`` written as a project would write its tests (tests/support/tagged_site.py
plays the project's views)."""

from __future__ import annotations

import pytest
import requests
from django.conf import settings
from django.test import override_settings

import roan
from roan import testing
from tests.support.caches import require
from tests.testapp.models import Post

pytestmark = pytest.mark.caches


def installed(cache: str) -> None:
    """A kit test must not pass by skipping: fail when the cache is missing (and
    ROAN_TEST_REQUIRE asks for it)."""
    try:
        with {"nginx": testing.start_nginx, "varnish": testing.start_varnish}[cache](9):
            pass
    except testing.CacheUnavailable as exc:
        require("caches", str(exc))


@override_settings(ROOT_URLCONF="tests.support.tagged_site", ROAN_TAGS=True)
class TestNginxCache(testing.CacheTestCase):
    """What a project's own test looks like (see docs/howto/testing-your-cache.md)."""

    cache_server = "nginx"

    @classmethod
    def setUpClass(cls) -> None:
        installed(cls.cache_server)
        super().setUpClass()

    def test_a_saved_post_is_a_miss_then_fresh(self) -> None:
        with roan.suppress_purges():
            post = Post.objects.create(title="Before", slug="kit-before")
        page = f"/one/{post.pk}/"
        self.assertMiss(page)
        self.assertHit(page)

        post.title = "After"
        post.save()  # a TransactionTestCase: purged at commit, at once

        assert "After" in self.assertMiss(page).text
        self.assertHit(page)
        self.assertFresh([page, f"/front/{post.pk}/"])

    def test_a_change_roan_cannot_see_is_caught_by_assert_fresh(self) -> None:
        with roan.suppress_purges():
            post = Post.objects.create(title="Seen", slug="kit-seen")
        page = f"/one/{post.pk}/"
        self.assertMiss(page)
        with roan.suppress_purges():
            post.title = "Unseen"
            post.save()

        with pytest.raises(AssertionError, match=rf"stale in the cache: /one/{post.pk}/ \[HIT"):
            self.assertFresh([page])
        with pytest.raises(AssertionError, match="expected a cache MISS, the cache said HIT"):
            self.assertMiss(page)

    def test_the_backend_it_configures_is_the_one_roan_purges(self) -> None:
        assert {"cache": self.cache.backend()} == settings.ROAN_BACKENDS
        assert self.cache.backend()["LOCATION"] == f"{self.cache.url}/purge"


@override_settings(ROOT_URLCONF="tests.support.tagged_site", ROAN_TAGS=True)
class TestVarnishCache(testing.CacheTestCase):
    cache_server = "varnish"

    @classmethod
    def setUpClass(cls) -> None:
        installed(cls.cache_server)
        super().setUpClass()

    def test_a_saved_post_is_purged_by_its_tag(self) -> None:
        with roan.suppress_purges():
            post = Post.objects.create(title="Before", slug="kit-varnish")
        page = f"/one/{post.pk}/"
        self.assertMiss(page)
        self.assertHit(page)

        post.title = "After"
        post.save()

        self.assertFresh([page])
        self.assertHit(page)


def test_assert_hit_says_what_the_cache_said(cache_origin) -> None:
    installed("nginx")
    with testing.start_nginx(cache_origin.port) as nginx:
        url = f"{nginx.url}/kit/{nginx.port}/"
        with pytest.raises(AssertionError, match="expected a cache HIT, the cache said MISS"):
            testing.assert_hit(url)
        assert testing.assert_hit(url).status_code == 200
        # A server that says nothing about caching is neither.
        with pytest.raises(AssertionError, match="the cache said nothing"):
            testing.assert_miss(f"http://127.0.0.1:{cache_origin.port}/kit/")
    with pytest.raises(requests.ConnectionError):  # closed: its port is free again
        requests.get(url, timeout=2)
