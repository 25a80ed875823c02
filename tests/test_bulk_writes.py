"""Writes that send no signals (``roan.tags.bulk_writes``): ``update()``, ``bulk_update()``,
``bulk_create()`` and raw deletes purge the tags they touch after commit, like a save.

The first tests run real pages (tests/support/tagged_site.py, tagged by the middleware)
behind a real nginx (example/deploy/nginx.conf): a page cached before the write is a
MISS after it and shows the new content. The others count the tags a tag backend gets.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import roan
from roan.backends.base import PurgeRequest
from roan.models import PurgeAttempt
from roan.tags import bulk_writes
from roan.tags.names import object_tag
from tests.support.caches import Nginx, serve_tagged_site
from tests.testapp.models import Author, Post, Tag

pytestmark = pytest.mark.django_db(transaction=True)


# -- behind a real nginx -------------------------------------------------------------------


@pytest.fixture
def site(nginx_site: Nginx, settings: Any) -> Nginx:
    return serve_tagged_site(settings, nginx_site)


def fetch(site: Nginx, path: str) -> tuple[str, str]:
    """(X-Cache-Status, body) of ``path`` through nginx."""
    response = requests.get(f"{site.url}{path}", timeout=10)
    return response.headers["X-Cache-Status"], response.text


def cache(site: Nginx, *paths: str) -> None:
    for path in paths:
        fetch(site, path)
        assert fetch(site, path)[0] == "HIT", path


def posts(*titles: str) -> list[Post]:
    with roan.suppress_purges():
        return [Post.objects.create(title=t, slug=uuid.uuid4().hex) for t in titles]


def test_a_queryset_update_leaves_no_stale_page_behind_nginx(site: Nginx) -> None:
    one, two, other = posts("One", "Two", "Other")
    pages = [f"/one/{one.pk}/", f"/one/{two.pk}/", f"/front/{other.pk}/", f"/one/{other.pk}/"]
    cache(site, *pages)

    # By primary key: the rows are named, no query reads them first.
    Post.objects.filter(pk=one.pk).update(title="One, edited")
    # By another field: roan reads the keys the filter matches before the UPDATE runs.
    Post.objects.filter(title="Two").update(title="Two, edited")

    assert fetch(site, pages[0]) == ("MISS", "One, edited by \n")
    assert fetch(site, pages[1]) == ("MISS", "Two, edited by \n")
    # The front page lists every title (the list tag); the other post's own page stays.
    assert fetch(site, pages[2]) == ("MISS", "Other\nOne, edited, Two, edited, Other\n")
    assert fetch(site, pages[3])[0] == "HIT"
    rows = PurgeAttempt.objects.filter(trigger="bulk")
    # Both updates purged the front page (the list tag): the second found it gone.
    assert {row.status for row in rows} <= {"ok", "not_cached"}
    assert {row.target for row in rows if row.status == "ok"} == set(pages[:3])


def test_a_bulk_update_and_a_bulk_create_leave_no_stale_page_behind_nginx(site: Nginx) -> None:
    first, second = posts("First", "Second")
    pages = [f"/one/{first.pk}/", f"/one/{second.pk}/", "/many/"]
    cache(site, *pages)

    first.title, second.title = "First, again", "Second, again"
    Post.objects.bulk_update([first, second], ["title"])

    assert fetch(site, pages[0]) == ("MISS", "First, again by \n")
    assert fetch(site, pages[1]) == ("MISS", "Second, again by \n")
    assert fetch(site, pages[2]) == ("MISS", "2")

    cache(site, *pages)
    Post.objects.bulk_create([Post(title="Third", slug=uuid.uuid4().hex)])
    assert fetch(site, pages[2]) == ("MISS", "3")
    assert fetch(site, pages[0])[0] == "HIT"  # a new row is on no object's page


# -- what is purged, on a tag backend ------------------------------------------------------


@pytest.fixture
def tags_on(settings: Any, outbox: list[Any]) -> Any:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {"mem": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    return settings


def purged(outbox: list[tuple[str, PurgeRequest]]) -> set[str]:
    found = {request.target for _name, request in outbox}
    outbox.clear()
    return found


def test_updates_purge_the_rows_they_matched_and_the_list(tags_on: Any, outbox: list[Any]) -> None:
    a, b, c = posts("a", "b", "c")
    with CaptureQueriesContext(connection) as queries:
        Post.objects.filter(pk__in=[a.pk, b.pk]).update(views=1)
    assert purged(outbox) == {object_tag(Post, a.pk), object_tag(Post, b.pk), "testapp.post"}
    assert not [q for q in queries if q["sql"].startswith("SELECT") and "testapp_post" in q["sql"]]

    Post.objects.filter(title="c").update(views=2)
    assert purged(outbox) == {object_tag(Post, c.pk), "testapp.post"}

    Post.objects.filter(title="nothing").update(views=3)  # matched no row: nothing to purge
    assert purged(outbox) == set()

    row = PurgeAttempt.objects.filter(trigger="bulk", target=object_tag(Post, c.pk)).get()
    assert (row.object_pk, row.object_repr) == (str(c.pk), "update(): 1 testapp.post rows")


def test_an_update_that_reports_no_row_count_still_purges(tags_on: Any, outbox: list[Any]) -> None:
    from django.db.models.sql import UpdateQuery

    (post,) = posts("p")
    # How a delete sets null on loaded objects: NO_RESULTS, so Django reports 0 rows.
    UpdateQuery(Post).update_batch([post.pk], {"views": 5}, connection.alias)
    assert purged(outbox) == {object_tag(Post, post.pk), "testapp.post"}


def test_over_the_row_limit_an_update_purges_what_the_index_knows(
    tags_on: Any, outbox: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_writes, "MAX_ROWS", 1)
    posts("a", "b")
    Post.objects.filter(title__in=["a", "b"]).update(views=1)
    assert purged(outbox) == {"testapp.post"}  # the index knows no cached object page


def test_bulk_create_purges_the_list_and_an_upsert_the_rows_it_changed(
    tags_on: Any, outbox: list[Any]
) -> None:
    Post.objects.bulk_create([Post(title="new", slug=uuid.uuid4().hex) for _ in range(3)])
    assert purged(outbox) == {"testapp.post"}
    row = PurgeAttempt.objects.get(trigger="bulk")
    assert row.object_repr == "bulk_create(): 3 testapp.post rows"

    (old,) = posts("old")
    if not connection.features.supports_update_conflicts_with_target:
        return
    Post.objects.bulk_create(
        [Post(title="upserted", slug=old.slug)],
        update_conflicts=True,
        unique_fields=["slug"],
        update_fields=["title"],
    )
    assert object_tag(Post, old.pk) in purged(outbox)


def test_a_raw_delete_purges_the_rows_it_deleted(tags_on: Any, outbox: list[Any]) -> None:
    a, _b = posts("a", "b")
    Post.objects.filter(title="a")._raw_delete(connection.alias)
    assert purged(outbox) == {object_tag(Post, a.pk), "testapp.post"}


def test_save_create_and_delete_purge_once_through_their_signals(
    tags_on: Any, outbox: list[Any]
) -> None:
    author = Author.objects.create(username=uuid.uuid4().hex)
    post = Post.objects.create(title="p", slug=uuid.uuid4().hex, author=author)
    outbox.clear()
    post.title = "q"
    post.save()  # its UPDATE runs the compiler roan wraps: purged once, by post_save
    assert sorted(r.target for _n, r in outbox) == ["testapp.post", object_tag(Post, post.pk)]
    post.tags.add(Tag.objects.create(slug=uuid.uuid4().hex))  # m2m_changed's own
    post.delete()
    assert not PurgeAttempt.objects.filter(trigger="bulk").exists()
    assert PurgeAttempt.objects.filter(trigger="save").exists()


def test_a_delete_purges_the_rows_set_null_changed(tags_on: Any, outbox: list[Any]) -> None:
    author = Author.objects.create(username=uuid.uuid4().hex)
    post = Post.objects.create(title="p", slug=uuid.uuid4().hex, author=author)
    outbox.clear()
    author_tag = object_tag(Author, author.pk)
    author.delete()  # the author's tags by post_delete; the post's row by its UPDATE
    bulk = PurgeAttempt.objects.filter(trigger="bulk")
    assert sorted(bulk.values_list("target", flat=True)) == [
        "testapp.post",
        object_tag(Post, post.pk),
    ]
    assert author_tag in purged(outbox)


def test_suppress_purges_and_models_rules_may_not_name_purge_nothing(
    tags_on: Any, outbox: list[Any]
) -> None:
    (post,) = posts("p")
    with roan.suppress_purges():
        Post.objects.filter(pk=post.pk).update(views=1)
        Post.objects.bulk_create([Post(title="n", slug=uuid.uuid4().hex)])
    tags_on.ROAN_RULE_MODELS = ["testapp.author"]
    Post.objects.filter(pk=post.pk).update(views=2)
    Author.objects.bulk_create([Author(username=uuid.uuid4().hex)])
    assert purged(outbox) == {"testapp.author"}


def test_nothing_when_tags_are_off(settings: Any, outbox: list[Any]) -> None:
    settings.ROAN_TAGS = False
    settings.ROAN_BACKENDS = {"mem": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    posts("p")
    with CaptureQueriesContext(connection) as queries:
        Post.objects.filter(title="p").update(views=1)
    assert len(queries) == 1  # the UPDATE, nothing read before it
    Post.objects.bulk_create([Post(title="n", slug=uuid.uuid4().hex)])
    assert outbox == []
    assert not PurgeAttempt.objects.exists()


def test_a_rolled_back_update_purges_nothing(tags_on: Any, outbox: list[Any]) -> None:
    (post,) = posts("p")
    with pytest.raises(RuntimeError), transaction.atomic():
        Post.objects.filter(pk=post.pk).update(views=1)
        raise RuntimeError
    assert outbox == []
    assert not PurgeAttempt.objects.exists()
