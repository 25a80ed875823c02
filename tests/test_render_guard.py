"""The render guard: a page rendered while a change to what it shows committed is not cached.

Each test makes the race happen on purpose: the view loads a post, and while it is still
rendering, an editor (another thread, its own connection) saves that post; the save
commits and its purges go out before the view returns the old title.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.cache import cache_control, cache_page

from roan import backends as backend_registry
from roan.models import PurgeAttempt
from roan.outbox import render_guard
from roan.tags.collect import cache_tags
from tests.support.caches import start_nginx
from tests.support.tagged_site import tagged
from tests.testapp.models import Author, Post

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

#: Run by the views between loading their post and answering (the test's editor).
during_render: list[Callable[[], None]] = []


def in_another_thread(change: Callable[[], None]) -> Callable[[], None]:
    def committed() -> None:
        try:
            change()
        finally:
            connection.close()  # this thread's own

    def run() -> None:
        thread = threading.Thread(target=committed)
        thread.start()
        thread.join(30)

    return run


@cache_control(public=True, max_age=300)
def post_title(request: HttpRequest, slug: str) -> HttpResponse:
    title = Post.objects.get(slug=slug).title
    for hook in during_render:
        hook()
    return HttpResponse(f"{title}\n", content_type="text/plain")


urlpatterns = [
    path("posts/<slug:slug>/", tagged(post_title)),
    path("cached/<slug:slug>/", tagged(cache_page(300)(cache_tags()(post_title)))),
]


@pytest.fixture(autouse=True)
def _clean(settings: Any) -> Iterator[None]:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {"default": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    cache.clear()
    during_render.clear()
    yield
    during_render.clear()
    backend_registry.reset()


def retitle(slug: str, title: str) -> Callable[[], None]:
    def change() -> None:
        post = Post.objects.get(slug=slug)
        post.title = title
        post.save()

    return in_another_thread(change)


def test_a_page_whose_post_changed_while_it_rendered_goes_out_uncacheable(client: Any) -> None:
    Post.objects.create(title="Before", slug="raced")
    during_render.append(retitle("raced", "After"))

    raced = client.get("/posts/raced/")

    assert raced.content == b"Before\n"  # read before the commit: old
    assert raced["Cache-Control"] == "private, no-store"
    during_render.clear()
    again = client.get("/posts/raced/")
    assert (again.content, again["Cache-Control"]) == (b"After\n", "public, max-age=300")


def test_a_change_to_a_model_the_page_does_not_show_leaves_it_cacheable(client: Any) -> None:
    Post.objects.create(title="Calm", slug="calm")
    during_render.append(in_another_thread(lambda: Author.objects.create(username="new")))

    response = client.get("/posts/calm/")

    assert response["Cache-Control"] == "public, max-age=300"


def test_with_the_guard_off_the_raced_page_stays_cacheable(client: Any, settings: Any) -> None:
    settings.ROAN_RENDER_GUARD = False
    Post.objects.create(title="Before", slug="unguarded")
    during_render.append(retitle("unguarded", "After"))

    response = client.get("/posts/unguarded/")

    assert (response.content, response["Cache-Control"]) == (b"Before\n", "public, max-age=300")


def test_djangos_page_cache_does_not_store_the_raced_page(client: Any) -> None:
    Post.objects.create(title="Before", slug="paged")
    during_render.append(retitle("paged", "After"))
    assert client.get("/cached/paged/").content == b"Before\n"
    during_render.clear()

    # Had cache_page stored it, this would be the old title for 300 s.
    assert client.get("/cached/paged/").content == b"After\n"
    assert client.get("/cached/paged/")["Cache-Control"] == "public, max-age=300"


def test_a_committed_save_leaves_its_models_change_time_in_roan_cache() -> None:
    assert render_guard.changed_since(["testapp.post:1"], 0.0) is False
    Post.objects.create(title="Any", slug="any")
    # Any page showing a post (this one or another) and rendered since is concerned.
    assert render_guard.changed_since(["testapp.post:999"], 0.0) is True
    assert render_guard.changed_since(["testapp.author"], 0.0) is False


# -- through a real nginx ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx_site(live_server: Any) -> Iterator[Any]:
    node = start_nginx(live_server.thread.port)
    yield node
    node.close()


def through_nginx(nginx: Any, slug: str) -> tuple[str, str]:
    response = requests.get(f"{nginx.url}/posts/{slug}/", timeout=10)
    return response.text.strip(), response.headers.get("X-Cache-Status", "")


@pytest.mark.caches
@pytest.mark.parametrize(
    ("guard", "after_the_race"), [(True, ("After", "MISS")), (False, ("Before", "HIT"))]
)
def test_nginx_never_keeps_the_page_rendered_during_the_commit(
    nginx_site: Any, settings: Any, make_rule: Any, guard: bool, after_the_race: tuple[str, str]
) -> None:
    settings.ROAN_RENDER_GUARD = guard
    location = f"{nginx_site.url}/purge"
    settings.ROAN_BACKENDS = {
        "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": location}
    }
    slug = f"nginx-{guard}".lower()
    make_rule("post page", "/posts/{slug}/")
    Post.objects.create(title="Before", slug=slug)
    during_render.append(retitle(slug, "After"))

    # A reader's miss: the view read "Before"; the save committed and purged nginx
    # (nothing cached yet) before the page reached nginx.
    assert through_nginx(nginx_site, slug) == ("Before", "MISS")
    purges = PurgeAttempt.objects.filter(target=f"/posts/{slug}/", trigger="save")
    assert set(purges.values_list("status", flat=True)) == {"not_cached"}
    during_render.clear()

    # Guarded, nginx did not keep it; unguarded, it keeps the old page for 300 s.
    assert through_nginx(nginx_site, slug) == after_the_race
