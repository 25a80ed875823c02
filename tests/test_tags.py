"""Automatic cache tags: what a rendered page loaded becomes its ``xkey`` header."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.template import engines

from roan.backends.base import BaseBackend
from roan.checks import TAG_MIDDLEWARE, check_cache_tags
from roan.tags import collect as tags
from roan.tags.collect import header_value, model_tag, object_tag, tracking
from tests.testapp.models import Author, Post

pytestmark = pytest.mark.django_db

VARNISH = {
    "edge": {"BACKEND": "roan.backends.varnish.VarnishBackend", "NODES": ["http://127.0.0.1:9"]}
}


@pytest.fixture
def site(settings: Any) -> Any:
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    settings.ROAN_BACKENDS = VARNISH
    return settings


@pytest.fixture
def remembered(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, frozenset[str]]]:
    calls: list[tuple[str, frozenset[str]]] = []
    monkeypatch.setattr(
        "roan.tags.index.remember",
        lambda request, response, found: calls.append((request.path, found)) or True,
    )
    return calls


def xkey(response: Any) -> list[str]:
    return response.headers["xkey"].split(" ") if "xkey" in response.headers else []


# -- names -----------------------------------------------------------------------------------


def test_tag_names_follow_the_shared_contract(settings: Any) -> None:
    post = Post(pk=7)
    assert (model_tag(Post), object_tag(Post, 7), object_tag(post, post.pk)) == (
        "testapp.post", "testapp.post:7", "testapp.post:7",
    )  # fmt: skip
    settings.ROAN_TAG_PREFIX = "site1-"
    assert (model_tag(post), object_tag(Post, "a")) == (
        "site1-testapp.post",
        "site1-testapp.post:a",
    )


def test_a_proxy_is_tagged_as_its_concrete_model() -> None:
    class PostProxy(Post):
        class Meta:
            proxy = True
            app_label = "testapp"

    assert model_tag(PostProxy) == "testapp.post"


# -- the middleware --------------------------------------------------------------------------


def test_a_page_loading_a_post_and_listing_posts_gets_its_xkey_header(
    site, remembered, client
) -> None:
    first = Post.objects.create(title="One", slug="one")
    second = Post.objects.create(title="Two", slug="two")

    response = client.get(f"/front/{first.pk}/")

    assert response.status_code == 200
    assert (
        response.headers["xkey"] == f"testapp.post testapp.post:{first.pk} testapp.post:{second.pk}"
    )
    # The full set goes to the index once, with the response.
    assert remembered == [
        (
            f"/front/{first.pk}/",
            frozenset({"testapp.post", f"testapp.post:{first.pk}", f"testapp.post:{second.pk}"}),
        )
    ]


def test_a_get_gives_object_tags_only_select_related_included(site, client) -> None:
    author = Author.objects.create(username="ann")
    post = Post.objects.create(title="One", slug="one", author=author)
    assert xkey(client.get(f"/one/{post.pk}/")) == [
        f"testapp.author:{author.pk}",
        f"testapp.post:{post.pk}",
    ]


def test_head_is_tagged_like_get(site, client) -> None:
    post = Post.objects.create(title="One", slug="one")
    assert xkey(client.head(f"/one/{post.pk}/")) == [f"testapp.post:{post.pk}"]


def test_a_template_response_is_tracked_while_it_renders(site, client) -> None:
    post = Post.objects.create(title="One", slug="one")
    response = client.get(f"/lazy/{post.pk}/")
    # The queryset was only iterated by the template; {% cache_tag %} added two more.
    assert response.content.decode() == "One "
    assert xkey(response) == [
        "sidebar",
        "testapp.post",
        f"testapp.post:{post.pk}",
        "testapp.post:999",
    ]


def test_tags_added_by_hand_in_a_view(site, client, settings) -> None:
    settings.ROAN_TAG_PREFIX = "blog-"
    assert xkey(client.get("/by-hand/")) == ["blog-testapp.post", "blog-weather"]


def test_a_404_that_found_nothing_depends_on_the_list(site, client) -> None:
    response = client.get("/missing/nope/")
    assert (response.status_code, xkey(response)) == (404, ["testapp.post"])


@pytest.mark.parametrize("page", ["cookie", "private"])
def test_a_response_with_a_cookie_or_private_gets_no_tags(site, remembered, client, page) -> None:
    post = Post.objects.create(title="One", slug="one")
    response = client.get(f"/{page}/{post.pk}/")
    assert response.status_code == 200
    assert "xkey" not in response.headers
    assert remembered == []


def test_a_post_request_gets_no_tags(site, remembered, client) -> None:
    post = Post.objects.create(title="One", slug="one")
    assert xkey(client.get(f"/either/{post.pk}/")) == [f"testapp.post:{post.pk}"]
    response = client.post(f"/either/{post.pk}/")
    assert response.status_code == 200
    assert "xkey" not in response.headers
    assert [path for path, _ in remembered] == [f"/either/{post.pk}/"]


def test_without_a_backend_reading_tags_no_header_but_the_index_hears(
    settings, remembered, client
) -> None:
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    settings.ROAN_BACKENDS = {"default": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    post = Post.objects.create(title="One", slug="one")
    response = client.get(f"/one/{post.pk}/")
    assert "xkey" not in response.headers
    assert remembered == [(f"/one/{post.pk}/", frozenset({f"testapp.post:{post.pk}"}))]


def test_a_failing_index_never_breaks_the_page(site, client, monkeypatch, caplog) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("index down")

    monkeypatch.setattr("roan.tags.index.remember", broken)
    post = Post.objects.create(title="One", slug="one")
    response = client.get(f"/one/{post.pk}/")
    assert (response.status_code, xkey(response)) == (200, [f"testapp.post:{post.pk}"])
    assert "Could not record the cache tags" in caplog.text


def test_over_the_header_limit_object_tags_collapse_to_the_list_tag(site, client) -> None:
    Post.objects.bulk_create(Post(title=f"P{i}", slug=f"p{i}") for i in range(600))
    response = client.get("/many/")
    assert response.content == b"600"
    # 600 object tags are about 10,000 bytes, over Varnish's 7,500: the list tag stands in.
    assert xkey(response) == ["testapp.post"]


def test_a_page_served_by_djangos_page_cache_keeps_its_tags(site, client) -> None:
    post = Post.objects.create(title="One", slug="one")
    first = client.get(f"/page-cached/{post.pk}/")
    Post.objects.filter(pk=post.pk).update(title="changed under the cache")
    second = client.get(f"/page-cached/{post.pk}/")
    assert second.content == b"One"  # answered by cache_page, the view did not run
    assert xkey(first) == xkey(second) == [f"testapp.post:{post.pk}"]


def test_only_models_rules_may_name_are_tagged(site, client, settings) -> None:
    author = Author.objects.create(username="ann")
    post = Post.objects.create(title="One", slug="one", author=author)
    User.objects.create(username="someone")
    settings.ROAN_RULE_MODELS = ["testapp.author"]
    with tracking() as seen:
        list(User.objects.all())
        Post.objects.select_related("author").get(pk=post.pk)
    assert seen.tags() == {f"testapp.author:{author.pk}"}


# -- tracking --------------------------------------------------------------------------------


def test_instances_built_in_the_view_and_writes_are_not_tags() -> None:
    with tracking() as seen:
        Post(title="unsaved")
        Post.objects.filter(slug="x").update(title="y")
        Author.objects.create(username="new")
    assert seen.tags() == frozenset()


def test_deferred_fields_load_without_tracking_recursing() -> None:
    post = Post.objects.create(title="One", slug="one", body="long")
    with tracking() as seen:
        loaded = Post.objects.only("title").get(pk=post.pk)
        assert loaded.body == "long"  # a deferred load: a get() of its own
    assert seen.tags() == {f"testapp.post:{post.pk}"}


def test_counts_values_and_latest_are_list_reads() -> None:
    post = Post.objects.create(title="One", slug="one")
    for read in (
        lambda: Post.objects.count(),
        lambda: list(Post.objects.values_list("title", flat=True)),
        lambda: Post.objects.latest("pk"),
        lambda: Post.objects.exists(),
    ):
        with tracking() as seen:
            read()
        assert model_tag(Post) in seen.tags()
    with tracking() as seen:
        Post.objects.get(pk=post.pk)
    assert seen.tags() == {f"testapp.post:{post.pk}"}


def test_other_threads_are_not_tracked() -> None:
    Post.objects.create(title="One", slug="one")
    done = threading.Event()

    def elsewhere() -> None:
        try:
            list(Post.objects.all())
        finally:
            from django.db import connection

            connection.close()
            done.set()

    with tracking() as seen:
        threading.Thread(target=elsewhere).start()
        assert done.wait(10)
    assert seen.tags() == frozenset()


def test_outside_tracking_add_tags_does_nothing() -> None:
    tags.add_tags("anything")  # no collector: nothing to add to, nothing raised
    assert tags.current() is None


def test_the_template_tag_accepts_strings_querysets_and_instances() -> None:
    template = engines["django"].from_string("{% load roan %}{% cache_tag 'a' authors obj %}x")
    with tracking() as seen:
        assert template.render({"authors": Author.objects.none(), "obj": Post(pk=3)}) == "x"
    assert seen.extra == {"a", "testapp.author", "testapp.post:3"}
    with tracking() as seen:
        tags.add_tags(Author, Post())  # a model class, an unsaved instance: list tags
    assert seen.extra == {"testapp.author", "testapp.post"}


# -- the header ------------------------------------------------------------------------------


class Narrow(BaseBackend):
    tag_header = "Cache-Tag"
    tag_separator = ","
    tag_header_limit = 40
    tag_max_length = 20


def test_header_collapses_the_largest_model_first() -> None:
    backend = Narrow("cdn", {})
    value = header_value(
        ["testapp.post:1", "testapp.post:2", "testapp.post:3", "testapp.author:1"], backend
    )
    assert value == "testapp.author:1,testapp.post"


def test_a_tag_that_cannot_be_sent_collapses_or_is_dropped(caplog) -> None:
    backend = Narrow("cdn", {})
    value = header_value(
        ["testapp.post:é€", "testapp.post:a,b", "testapp.tag:" + "x" * 30, "ok", "bad tag"], backend
    )
    assert value == "ok,testapp.post,testapp.tag"
    assert "'bad tag' cannot be sent" in caplog.text


def test_list_tags_that_do_not_fit_leave_the_page_untagged(caplog) -> None:
    backend = Narrow("cdn", {})
    assert header_value([f"hand{i}" for i in range(10)], backend) is None
    assert "it is not tagged" in caplog.text


# -- checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["a b", "a,b", "ŝ€", 3])
def test_a_prefix_no_header_can_carry_is_an_error(settings, prefix) -> None:
    settings.ROAN_TAG_PREFIX = prefix
    assert [m.id for m in check_cache_tags()] == ["roan.E070"]


def test_the_middleware_below_the_session_middleware_warns(settings) -> None:
    session = "django.contrib.sessions.middleware.SessionMiddleware"
    settings.ROAN_TAG_PREFIX = "site-"
    settings.MIDDLEWARE = [TAG_MIDDLEWARE, session]
    assert check_cache_tags() == []
    settings.MIDDLEWARE = [session, TAG_MIDDLEWARE]
    assert [m.id for m in check_cache_tags()] == ["roan.W070"]
