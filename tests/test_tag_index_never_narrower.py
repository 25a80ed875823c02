"""A tag purge may be wider than needed, never narrower (issue 30): past
``ROAN_MAX_INLINE_TAG_URLS`` pages behind nginx, or ``ROAN_MAX_URLS_PER_EVENT`` URLs
behind a backend that purges wider, no page that carried the tag is left out.

The nginx test runs the example nginx config in front of the suite's counting origin.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
import requests
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django.utils import timezone

from roan.backends.base import PREFIX, URL
from roan.models import PurgeAttempt, TaggedURL
from roan.purges import Cause
from roan.tags import index as tag_index
from roan.tags.collect import model_tag, object_tag
from roan.tags.purges import tag_purges
from tests.support.caches import Nginx
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


def status(url: str) -> str:
    return requests.get(url, timeout=5).headers["X-Cache-Status"]


def index(paths: list[str], tag: str, *, host: str = "127.0.0.1", age: int = 0) -> None:
    """Rows as the middleware writes them (rendered ``age`` seconds ago)."""
    expires = timezone.now() + datetime.timedelta(seconds=600 - age)
    TaggedURL.objects.bulk_create(
        TaggedURL(
            tag=tag,
            host=host,
            path=p,
            url_key=tag_index.url_key(host, p),
            page_key=tag_index.url_key(host, p.partition("?")[0]),
            expires_at=expires,
        )
        for p in paths
    )


def nginx_settings(settings: Any, nginx: Nginx) -> None:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {
        "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": f"{nginx.url}/purge"}
    }


def test_past_the_cap_the_posts_own_page_is_still_purged_and_no_url_is_dropped(
    settings: Any, nginx_cache: Nginx
) -> None:
    nginx_settings(settings, nginx_cache)
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    run = uuid.uuid4().hex[:8]
    # 1,100 URLs carrying the list tag (as 404s did before, and list pages do), indexed
    # before the post's own page, which carries its object tag.
    index([f"/nn-{run}/missing-{n}/" for n in range(1100)], model_tag(Post))
    page_path = f"/nn-{run}/post/"
    page = f"{nginx_cache.url}{page_path}"
    status(page)
    assert status(page) == "HIT"
    index([page_path], object_tag(Post, post.pk), age=30)
    PurgeAttempt.objects.all().delete()

    post.title = "After"
    post.save()

    assert status(page) == "MISS"
    assert not PurgeAttempt.objects.filter(status="skipped").exists()
    rows = PurgeAttempt.objects.filter(kind=URL)
    # Every indexed URL is purged, once: the save wrote the first
    # ROAN_MAX_INLINE_TAG_URLS (50) pages and, per tag, one row whose sender wrote and
    # sent every other page of the tag after it (at once here: no request runs).
    assert sorted(rows.values_list("target", flat=True)) == sorted(
        [*(f"/nn-{run}/missing-{n}/" for n in range(1100)), page_path]
    )
    inline = rows.exclude(rule_name__contains="one of its pages")
    assert inline.count() == 50
    own = inline.get(target=page_path)
    assert own.rule_name == f"tag {object_tag(Post, post.pk)}"  # the post's own page first
    assert rows.filter(rule_name__contains="one of its pages").count() == 1051
    tags = PurgeAttempt.objects.filter(kind="tag")
    assert sorted(tags.values_list("target", "status")) == sorted(
        [(model_tag(Post), "ok"), (object_tag(Post, post.pk), "ok")]
    )
    assert all("more than ROAN_MAX_INLINE_TAG_URLS (50) pages" in t.rule_name for t in tags)


def test_the_expansion_puts_object_tags_then_the_latest_pages_first(settings: Any) -> None:
    settings.ROAN_TAGS = True
    index(["/old-list/"], "testapp.post", age=500)
    index(["/new-list/"], "testapp.post", age=10)
    index(["/old-detail/"], "testapp.post:1", age=400)
    rows, more = tag_index.expand(["testapp.post", "testapp.post:1"], [], 2)
    assert [p for _tag, _host, p in rows] == ["/old-detail/", "/new-list/"]
    assert more


def test_a_backend_that_purges_prefixes_gets_one_prefix_purge_past_the_cap(
    settings: Any,
) -> None:
    settings.ROAN_TAGS = True
    settings.ROAN_MAX_URLS_PER_EVENT = 3
    settings.ROAN_BACKENDS = {
        "cdn": {
            "BACKEND": "roan.backends.http.HTTPBackend",
            "URL": "http://127.0.0.1:9/purge?u={url}",
            "KINDS": ["url", "prefix"],
            "HOSTS": ["a.example", "b.example"],
        }
    }
    index([f"/p/{n}/" for n in range(10)], "testapp.post", host="a.example")
    purges = tag_purges(["testapp.post"], Cause(trigger="save"), ["cdn"])
    assert [p.request.kind for p in purges] == [URL] * 3 + [PREFIX, PREFIX]
    assert [(p.request.target, p.request.host) for p in purges[3:]] == [
        ("/", ""),
        ("/", "b.example"),
    ]
    assert "over ROAN_MAX_URLS_PER_EVENT (3) URLs" in purges[3].cause.rule_name


# -- inside a request: past the inline bound, sent once the response is out -----------------

seen_in_the_request: dict[str, int] = {}


def save_view(request: HttpRequest, pk: int) -> HttpResponse:
    post = Post.objects.get(pk=pk)
    post.save()
    # Sent: recorded, or claimed by this process (sent, their outcomes written once the
    # response is out). Pending: waiting to be sent.
    rows = PurgeAttempt.objects.values_list("status", "claimed_until")
    waiting = [status == "pending" and claimed is None for status, claimed in rows]
    seen_in_the_request["sent"] = waiting.count(False)
    seen_in_the_request["pending"] = waiting.count(True)
    return HttpResponse("saved")


def test_inside_a_request_the_urls_past_the_cap_are_sent_after_the_response(
    settings: Any, nginx_cache: Nginx
) -> None:
    nginx_settings(settings, nginx_cache)
    settings.ROOT_URLCONF = __name__
    settings.ROAN_MAX_INLINE_TAG_URLS = 2
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    index([f"/after/{n}/" for n in range(5)], object_tag(Post, post.pk))
    PurgeAttempt.objects.all().delete()

    assert Client().get(f"/save/{post.pk}/").status_code == 200

    # Inside the request: the first two pages sent; one row per tag of the post (its own
    # and its model's) waits for the response, whatever the number of pages.
    assert seen_in_the_request == {"sent": 2, "pending": 2}
    # After it: each of those rows wrote and sent a purge of every other page of its tag
    # (not the two sent inside the request).
    tags = PurgeAttempt.objects.filter(kind="tag").values_list("target", "status")
    assert sorted(tags) == sorted([(object_tag(Post, post.pk), "ok"), ("testapp.post", "ok")])
    pages = PurgeAttempt.objects.filter(kind=URL)
    assert sorted(pages.values_list("target", flat=True)) == [f"/after/{n}/" for n in range(5)]
    assert set(pages.values_list("status", flat=True)) == {"not_cached"}


def test_the_editor_hears_how_many_are_queued_for_after_the_response(
    settings: Any, nginx_cache: Nginx, admin_client: Any
) -> None:
    from tests.testapp.models import Author

    nginx_settings(settings, nginx_cache)
    settings.ROAN_MAX_INLINE_TAG_URLS = 2
    author = Author.objects.create(username=f"a{uuid.uuid4().hex[:8]}")
    index([f"/by/{n}/" for n in range(5)], object_tag(Author, author.pk))
    PurgeAttempt.objects.all().delete()

    response = admin_client.post(
        f"/admin/testapp/author/{author.pk}/change/", {"username": "renamed"}, follow=True
    )

    said = [str(m) for m in response.context["messages"] if "Cache purges" in str(m)]
    assert len(said) == 1
    # Two pages sent, and one row for each of the author's two tags (its own, its
    # model's) queued: each purges every page of its tag once the response is out.
    assert "2 queued, sent once this page has loaded" in said[0]
    pages = PurgeAttempt.objects.filter(kind=URL)
    assert set(pages.values_list("target", flat=True)) == {f"/by/{n}/" for n in range(5)}
    assert set(pages.values_list("status", flat=True)) == {"not_cached"}


rows_in_the_request: list[int] = []


def counting_save_view(request: HttpRequest, pk: int) -> HttpResponse:
    before = PurgeAttempt.objects.count()
    post = Post.objects.get(pk=pk)
    post.save()
    rows_in_the_request.append(PurgeAttempt.objects.count() - before)
    return HttpResponse("saved")


def test_a_tag_on_thousands_of_pages_writes_a_bounded_number_of_rows_in_the_request(
    settings: Any, nginx_cache: Nginx
) -> None:
    """A list tag carried by many pages (a busy site's listings): the editor's request
    writes the first ROAN_MAX_INLINE_TAG_URLS pages and one row per tag, however many
    pages there are; every page is purged once the response is out."""
    nginx_settings(settings, nginx_cache)
    settings.ROOT_URLCONF = __name__
    settings.ROAN_MAX_INLINE_TAG_URLS = 10
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    run = uuid.uuid4().hex[:8]
    cached = [f"/big-{run}/list/{n}/" for n in range(30)]
    for page in cached:
        status(f"{nginx_cache.url}{page}")
        assert status(f"{nginx_cache.url}{page}") == "HIT"
    rows_in_the_request.clear()
    for size in (300, 3000):
        TaggedURL.objects.all().delete()
        index(cached + [f"/big-{run}/other/{n}/" for n in range(size)], model_tag(Post))
        PurgeAttempt.objects.all().delete()

        assert Client().get(f"/count/{post.pk}/").status_code == 200

        every = sorted([*cached, *(f"/big-{run}/other/{n}/" for n in range(size))])
        pages = PurgeAttempt.objects.filter(kind=URL)
        assert sorted(pages.values_list("target", flat=True)) == every  # each once
        assert not PurgeAttempt.objects.exclude(status__in=["ok", "not_cached"]).exists()
    # Ten pages and two tag rows (the post's own tag and its model's), at either size.
    assert rows_in_the_request == [12, 12]
    for page in cached:
        assert status(f"{nginx_cache.url}{page}") == "MISS"


def test_re_purging_a_tags_row_purges_every_page_of_the_tag_again(
    settings: Any, nginx_cache: Nginx, admin_client: Any
) -> None:
    nginx_settings(settings, nginx_cache)
    settings.ROAN_MAX_INLINE_TAG_URLS = 2
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    run = uuid.uuid4().hex[:8]
    paths = [f"/again-{run}/{n}/" for n in range(4)]
    index(paths, object_tag(Post, post.pk))
    post.save()
    row = PurgeAttempt.objects.get(kind="tag", target=object_tag(Post, post.pk))
    for page in paths:
        status(f"{nginx_cache.url}{page}")
        assert status(f"{nginx_cache.url}{page}") == "HIT"
    before = set(PurgeAttempt.objects.values_list("pk", flat=True))

    response = admin_client.post(f"/admin/roan/purgeattempt/{row.pk}/repurge/")

    assert response.status_code == 302
    new = PurgeAttempt.objects.exclude(pk__in=before)
    again = new.get(kind="tag")
    assert (again.target, again.status, again.trigger) == (row.target, "ok", "admin")
    pages = new.filter(kind=URL)
    assert sorted(pages.values_list("target", "status")) == [(p, "ok") for p in sorted(paths)]
    for page in paths:
        assert status(f"{nginx_cache.url}{page}") == "MISS"


urlpatterns = [
    path("save/<int:pk>/", save_view),
    path("count/<int:pk>/", counting_save_view),
]
