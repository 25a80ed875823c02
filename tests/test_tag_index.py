"""Tag purges on save/delete/m2m, the URL<->tag index, ``purge_tags`` and ``purge_model``.

The nginx tests run a real nginx (example/deploy/nginx.conf) in front of the suite's
counting origin: a page is fetched through it (MISS, then HIT), the index is told which
tags the page carried, and after the change the next fetch must be a MISS again.
"""

from __future__ import annotations

import datetime
import uuid
from io import StringIO
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.http import HttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import roan
from roan.backends.base import PurgeRequest
from roan.conf import roan_settings
from roan.models import PurgeAttempt, TaggedURL
from roan.tags import index as tag_index
from roan.tags.collect import model_tag, object_tag
from tests.support.caches import Nginx
from tests.testapp.models import Author, Post, Tag

pytestmark = pytest.mark.django_db(transaction=True)


def status(url: str, host: str | None = None) -> str:
    headers = {"Host": host} if host else {}
    return requests.get(url, headers=headers, timeout=5).headers["X-Cache-Status"]


def cached(nginx: Nginx, path: str, host: str | None = None) -> str:
    """Fetch ``path`` through nginx so that it is cached (the second fetch is a HIT);
    return its full URL."""
    url = f"{nginx.url}{path}"
    status(url, host)
    assert status(url, host) == "HIT"
    return url


def remember(path: str, *tags: str, host: str = "127.0.0.1", cache_control: str = "") -> None:
    """What the tag middleware does for a rendered page: index the tags it carried."""
    request = RequestFactory().get(path, HTTP_HOST=host)
    response = HttpResponse("page")
    response["Cache-Control"] = cache_control or "public, max-age=300"
    tag_index.remember(request, response, frozenset(tags))


def unique_path(name: str) -> str:
    return f"/ti/{name}-{uuid.uuid4().hex[:8]}/"


#: A backend that purges tags by URL (so reads the index), never reached by these tests.
URL_ONLY = {
    "pages": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": "http://127.0.0.1:9/p"}
}


@pytest.fixture
def tags_on(settings: Any) -> Any:
    settings.ROAN_TAGS = True
    return settings


@pytest.fixture
def indexing(tags_on: Any) -> Any:
    # The index is written only when a backend will read it.
    tags_on.ROAN_BACKENDS = URL_ONLY
    return tags_on


LOCMEM = {"BACKEND": "roan.backends.locmem.LocMemBackend"}


def nginx_backend(nginx: Nginx, **options: Any) -> dict[str, dict[str, Any]]:
    return {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx.url}/purge",
            **options,
        }
    }


@pytest.fixture
def nginx_only(tags_on: Any, nginx_cache: Nginx) -> Nginx:
    tags_on.ROAN_BACKENDS = nginx_backend(nginx_cache)
    return nginx_cache


def attempts(**filters: Any) -> list[tuple[str, str, str, str, str]]:
    return sorted(
        PurgeAttempt.objects.filter(**filters).values_list(
            "backend", "kind", "target", "status", "rule_name"
        )
    )


# -- the receivers, through a real nginx ---------------------------------------------------------


def test_a_page_that_carried_a_posts_tag_is_purged_through_nginx_when_the_post_is_saved(
    nginx_only: Nginx,
) -> None:
    post = Post.objects.create(title="Before", slug=uuid.uuid4().hex)
    detail, elsewhere = unique_path("post"), unique_path("other")
    page = cached(nginx_only, detail)
    other = cached(nginx_only, elsewhere)
    remember(detail, object_tag(Post, post.pk), "testapp.author:7")
    remember(elsewhere, object_tag(Post, post.pk + 1000))
    PurgeAttempt.objects.all().delete()

    post.title = "After"
    post.save()

    assert status(page) == "MISS"
    assert status(other) == "HIT"  # another post's page stays cached
    # nginx cannot purge by tag: the tag became a purge of the URL the index held, and
    # the row says which tag it came from.
    assert attempts() == [("nginx", "url", detail, "ok", f"tag testapp.post:{post.pk}")]
    row = PurgeAttempt.objects.get()
    assert (row.trigger, row.object_pk) == ("save", str(post.pk))


def test_a_page_indexed_between_the_change_and_the_commit_is_purged_too(
    nginx_only: Nginx,
) -> None:
    post = Post.objects.create(title="Before", slug=uuid.uuid4().hex)
    early, late = unique_path("early"), unique_path("late")
    pages = [cached(nginx_only, early), cached(nginx_only, late)]
    remember(early, object_tag(Post, post.pk))
    with transaction.atomic():
        post.title = "After"
        post.save()
        # A reader rendered the page before the commit (still the old title) and the
        # middleware indexed it after the save had looked at the index.
        remember(late, object_tag(Post, post.pk))
    assert [status(page) for page in pages] == ["MISS", "MISS"]
    assert sorted(PurgeAttempt.objects.filter(trigger="save").values_list("target", "status")) == [
        (early, "ok"),
        (late, "ok"),
    ]


def test_a_list_page_is_purged_when_any_post_is_created_or_deleted(nginx_only: Nginx) -> None:
    listing = unique_path("list")
    page = cached(nginx_only, listing)
    remember(listing, "testapp.post")

    post = Post.objects.create(title="New", slug=uuid.uuid4().hex)
    assert status(page) == "MISS"
    assert status(page) == "HIT"
    remember(listing, "testapp.post", object_tag(Post, post.pk))

    post.delete()
    assert status(page) == "MISS"
    assert [row[:4] for row in attempts(trigger="delete")] == [("nginx", "url", listing, "ok")]


def test_m2m_changes_from_both_sides_purge_the_pages_of_both_sides(nginx_only: Nginx) -> None:
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    tag = Tag.objects.create(slug=uuid.uuid4().hex)
    tag_page, post_page = unique_path("tag"), unique_path("post")

    def cache_both() -> tuple[str, str]:
        pages = cached(nginx_only, tag_page), cached(nginx_only, post_page)
        remember(tag_page, object_tag(Tag, tag.pk))
        remember(post_page, object_tag(Post, post.pk))
        return pages

    for change in (
        lambda: post.tags.add(tag),  # forward side
        lambda: tag.posts.remove(post),  # reverse side
        lambda: tag.posts.add(post),
        lambda: post.tags.clear(),  # clear: who was related is read before
    ):
        pages = cache_both()
        change()
        assert [status(page) for page in pages] == ["MISS", "MISS"]
    assert {row[0:2] for row in attempts(trigger="m2m")} == {("nginx", "url")}


def test_a_host_with_a_port_is_purged_under_the_backends_host(
    tags_on: Any, nginx_cache: Nginx
) -> None:
    tags_on.ROAN_BACKENDS = nginx_backend(nginx_cache, HOSTS=["a.example"])
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    path = unique_path("hosted")
    page = cached(nginx_cache, path, host="a.example")
    other_site = cached(nginx_cache, path, host="b.example")
    # Django saw the Host as the browser sent it, port included.
    remember(path, object_tag(Post, post.pk), host="a.example:8000")
    remember(path, object_tag(Post, post.pk), host="b.example")  # not in HOSTS

    post.save()

    assert status(page, host="a.example") == "MISS"
    assert status(other_site, host="b.example") == "HIT"
    # The backend's default host is written "", as URL rules write it, so both coalesce.
    assert PurgeAttempt.objects.get().host == ""


def test_a_tag_and_a_url_rule_naming_the_same_page_make_one_attempt(
    tags_on: Any, nginx_cache: Nginx, make_rule: Any
) -> None:
    tags_on.ROAN_BACKENDS = nginx_backend(nginx_cache, HOSTS=["a.example", "b.example"])
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    path = f"/posts/{post.slug}/"
    make_rule("post page", "/posts/{slug}/")
    page = cached(nginx_cache, path, host="a.example")
    remember(path, object_tag(Post, post.pk), host="a.example:8000")
    PurgeAttempt.objects.all().delete()

    with transaction.atomic():
        post.save()

    assert status(page, host="a.example") == "MISS"
    assert list(PurgeAttempt.objects.filter(target=path).values_list("status", flat=True)) == ["ok"]


# -- the index ------------------------------------------------------------------------------------


def test_expired_rows_are_not_expanded_and_roan_prune_deletes_them(nginx_only: Nginx) -> None:
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    old, live = unique_path("old"), unique_path("live")
    remember(old, object_tag(Post, post.pk))
    remember(live, object_tag(Post, post.pk))
    TaggedURL.objects.filter(path=old).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    PurgeAttempt.objects.all().delete()

    post.save()
    assert [row[2] for row in attempts()] == [live]

    out = StringIO()
    call_command("roan_prune", "--days", "30", stdout=out)
    assert "tag index: removed 1 expired row(s)" in out.getvalue()
    assert list(TaggedURL.objects.values_list("path", flat=True)) == [live]


def test_the_lifetime_is_the_shared_caches_and_private_pages_are_not_indexed(
    indexing: Any,
) -> None:
    now = timezone.now()
    remember("/a/", "t", cache_control="public, max-age=60, s-maxage=3600")
    remember("/b/", "t", cache_control="max-age=120")
    remember("/c/", "t", cache_control="no-cache")  # no lifetime given: the setting's
    remember("/d/", "t", cache_control="private, max-age=600")
    remember("/e/", "t", cache_control="public, s-maxage=0")
    left = {row.path: (row.expires_at - now).total_seconds() for row in TaggedURL.objects.all()}
    assert sorted(left) == ["/a/", "/b/", "/c/"]
    margin = tag_index.EXPIRY_MARGIN
    assert 3600 + margin - 5 < left["/a/"] < 3600 + margin + 5
    assert 120 + margin - 5 < left["/b/"] < 120 + margin + 5
    assert 86400 + margin - 5 < left["/c/"] < 86400 + margin + 5


def test_one_response_is_one_statement_and_a_render_again_refreshes_its_rows(indexing: Any) -> None:
    tags = [f"testapp.post:{pk}" for pk in range(50)] + ["testapp.post"]
    with CaptureQueriesContext(connection) as queries:
        remember("/posts/?page=2", *tags)
    inserts = [q for q in queries if "INSERT" in q["sql"].upper()]
    assert len(inserts) == 1
    first = TaggedURL.objects.get(tag="testapp.post").expires_at

    remember("/posts/?page=2", *tags, cache_control="s-maxage=9000")
    assert TaggedURL.objects.count() == 51
    assert TaggedURL.objects.get(tag="testapp.post").expires_at > first
    assert set(TaggedURL.objects.values_list("host", "path")) == {("127.0.0.1", "/posts/?page=2")}


def test_over_the_tag_limit_object_tags_are_kept_as_their_list_tag(indexing: Any) -> None:
    indexing.ROAN_TAG_INDEX_MAX_TAGS = 10
    remember("/big/", *(f"testapp.post:{pk}" for pk in range(30)), "testapp.author:1", "hand")
    assert sorted(TaggedURL.objects.values_list("tag", flat=True)) == [
        "hand",
        "testapp.author",
        "testapp.post",
    ]


def test_nothing_is_indexed_when_tags_are_off(settings: Any) -> None:
    settings.ROAN_TAGS = False
    remember("/off/", "testapp.post")
    assert not TaggedURL.objects.exists()


def test_tags_default_to_on_exactly_when_the_tag_middleware_is_installed(settings: Any) -> None:
    assert roan_settings.TAGS is False
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "roan.middleware.CacheTagMiddleware"]
    assert roan_settings.TAGS is True
    settings.ROAN_TAGS = False
    assert roan_settings.TAGS is False


def test_an_expansion_past_the_inline_bound_sends_every_url_and_says_why(
    nginx_only: Nginx, settings: Any
) -> None:
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    for n in range(5):
        remember(f"/cap/{n}/", object_tag(Post, post.pk))
    PurgeAttempt.objects.all().delete()
    settings.ROAN_MAX_INLINE_TAG_URLS = 3
    post.save()
    # No request is running: what waits for the response is sent at once, never dropped.
    # Three pages went first; then a row per tag said why, and purged the other two.
    tags = PurgeAttempt.objects.filter(kind="tag")
    assert sorted(tags.values_list("target", "status")) == sorted(
        [(object_tag(Post, post.pk), "ok"), ("testapp.post", "ok")]
    )
    assert all("more than ROAN_MAX_INLINE_TAG_URLS (3) pages" in t.rule_name for t in tags)
    pages = PurgeAttempt.objects.filter(kind="url")
    assert sorted(pages.values_list("target", flat=True)) == [f"/cap/{n}/" for n in range(5)]
    assert set(pages.values_list("status", flat=True)) == {"not_cached"}
    assert pages.filter(rule_name__contains="one of its pages").count() == 2


# -- tag-capable backends, bounds and switches ----------------------------------------------


def test_a_tag_capable_backend_gets_the_tags_and_a_transaction_purges_each_once(
    tags_on: Any, outbox: list[tuple[str, PurgeRequest]]
) -> None:
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    outbox.clear()
    with transaction.atomic():
        post.title = "one"
        post.save()
        post.title = "two"
        post.save()
    assert sorted((r.kind, r.target) for _n, r in outbox) == [
        ("tag", "testapp.post"),
        ("tag", object_tag(Post, post.pk)),
    ]
    assert attempts(trigger="save", kind="tag", rule_name=f"tag testapp.post:{post.pk}")


def test_m2m_purges_the_tags_of_every_related_object_on_a_tag_backend(
    tags_on: Any, outbox: list[tuple[str, PurgeRequest]]
) -> None:
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    tags = [Tag.objects.create(slug=uuid.uuid4().hex) for _ in range(2)]
    outbox.clear()
    post.tags.add(*tags)
    expected = {object_tag(Post, post.pk), "testapp.post", "testapp.tag"}
    expected |= {object_tag(Tag, t.pk) for t in tags}
    assert {r.target for _n, r in outbox} == expected
    outbox.clear()
    tags[0].posts.clear()  # from the other side: the post it was on
    assert {r.target for _n, r in outbox} == {
        object_tag(Tag, tags[0].pk),
        "testapp.tag",
        object_tag(Post, post.pk),
        "testapp.post",
    }
    outbox.clear()
    post.tags.add(tags[1])  # already there: nothing changed, nothing purged
    assert outbox == []


def test_suppress_purges_raw_saves_and_roan_enabled_purge_no_tags(
    tags_on: Any, outbox: list[tuple[str, PurgeRequest]]
) -> None:
    with roan.suppress_purges():
        post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
        post.save()
        post.tags.add(Tag.objects.create(slug=uuid.uuid4().hex))
        post.delete()
    post = Post(title="raw", slug=uuid.uuid4().hex)
    post.save_base(raw=True)  # what loaddata does
    tags_on.ROAN_ENABLED = False
    post.save()
    post.delete()
    assert outbox == []
    assert not PurgeAttempt.objects.exists()


def test_tags_are_purged_only_for_models_rules_may_name(
    tags_on: Any, outbox: list[tuple[str, PurgeRequest]]
) -> None:
    get_user_model().objects.create_user("someone")  # auth: never, by default
    tags_on.ROAN_RULE_MODELS = ["testapp.author"]
    Post.objects.create(title="P", slug=uuid.uuid4().hex)
    assert outbox == []
    Author.objects.create(username=uuid.uuid4().hex)
    assert [r.target for _n, r in outbox] == ["testapp.author"]


def test_without_roan_tags_a_save_writes_no_tag_rows(
    settings: Any, outbox: list[tuple[str, PurgeRequest]]
) -> None:
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    post.save()
    assert outbox == []
    assert not PurgeAttempt.objects.exists()


# -- the public API ------------------------------------------------------------------------------


def test_purge_tags_sends_tags_or_their_urls_per_backend(
    tags_on: Any, nginx_cache: Nginx, outbox: list[tuple[str, PurgeRequest]]
) -> None:
    tags_on.ROAN_BACKENDS = {**nginx_backend(nginx_cache), "mem": LOCMEM}
    path = unique_path("hand")
    page = cached(nginx_cache, path)
    remember(path, "campaign-spring")

    assert roan.purge_tags("campaign-spring") == 2
    assert status(page) == "MISS"
    assert [r for _n, r in outbox] == [PurgeRequest("tag", "campaign-spring")]
    assert attempts() == [
        ("mem", "tag", "campaign-spring", "ok", "tag campaign-spring"),
        ("nginx", "url", path, "ok", "tag campaign-spring"),
    ]
    with pytest.raises(ValueError, match="control characters"):
        roan.purge_tags("two words")


def test_purge_object_purges_the_objects_tags_as_a_save_would(
    nginx_only: Nginx,
) -> None:
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    path = unique_path("obj")
    page = cached(nginx_only, path)
    remember(path, object_tag(Post, post.pk))
    with roan.suppress_purges():  # (an update() purges by itself: roan.tags.bulk_writes)
        Post.objects.filter(pk=post.pk).update(title="changed")

    roan.purge_object(post)

    assert status(page) == "MISS"
    assert attempts(trigger="api") == [("nginx", "url", path, "ok", f"tag testapp.post:{post.pk}")]


def test_purge_model_purges_every_page_showing_the_model_after_a_queryset_update(
    tags_on: Any, nginx_cache: Nginx, outbox: list[tuple[str, PurgeRequest]]
) -> None:
    tags_on.ROAN_BACKENDS = {**nginx_backend(nginx_cache), "mem": LOCMEM}
    posts = [Post.objects.create(title=str(n), slug=uuid.uuid4().hex) for n in range(3)]
    listing = unique_path("list")
    details = [unique_path(f"post{n}") for n in range(3)]
    unrelated = unique_path("author")
    pages = [cached(nginx_cache, path) for path in [listing, *details]]
    other = cached(nginx_cache, unrelated)
    remember(listing, model_tag(Post), *(object_tag(Post, p.pk) for p in posts))
    for post, path in zip(posts, details, strict=True):
        remember(path, object_tag(Post, post.pk))
    remember(unrelated, "testapp.author:1")
    outbox.clear()

    with roan.suppress_purges():  # a script that says itself what changed
        Post.objects.update(title="changed")
    roan.purge_model(Post)

    assert [status(page) for page in pages] == ["MISS"] * 4
    assert status(other) == "HIT"
    assert {r.target for _n, r in outbox} == {"testapp.post"} | {
        object_tag(Post, p.pk) for p in posts
    }


# -- checks ---------------------------------------------------------------------------------------


def check_ids() -> list[str]:
    from roan.checks import check_tags

    return [message.id or "" for message in check_tags()]


def test_bad_tag_settings_are_reported(settings: Any) -> None:
    assert check_ids() == []
    settings.ROAN_TAG_INDEX_TTL = "a day"
    settings.ROAN_TAG_INDEX_MAX_TAGS = 0
    settings.ROAN_TAG_PREFIX = "my site "
    assert check_ids() == ["roan.E080", "roan.E080", "roan.E081"]


def test_tags_on_without_the_middleware_warns(settings: Any) -> None:
    settings.ROAN_TAGS = True
    assert check_ids() == ["roan.W080"]
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "roan.middleware.CacheTagMiddleware"]
    assert check_ids() == []
