"""Rendering cannot explode, cannot break a save, and one event writes a bounded log."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from roan import context
from roan.models import PurgeAttempt, PurgeRule
from roan.rules import index as rules
from roan.rules.templating import TemplateError, parse
from tests.testapp.models import Author, Post, Tag

pytestmark = pytest.mark.django_db


def rows() -> list[tuple[str, str, str]]:
    return list(PurgeAttempt.objects.order_by("id").values_list("target", "status", "error"))


# -- one many-to-many step, rendered lazily up to the cap -----------------------------------


def test_nine_many_to_many_placeholders_are_refused_at_parse_time(make_rule) -> None:
    nine = "/x/" + "/".join(["{tags.slug}"] * 9) + "/"

    with pytest.raises(TemplateError) as info:
        parse(nine, Post)

    assert "at most one many-to-many relation" in str(info.value)
    assert "cross 9" in str(info.value)
    with pytest.raises(ValidationError) as form_error:
        make_rule("explosive", nine)
    assert "at most one many-to-many" in str(form_error.value)
    parse("/x/{tags.slug}/{slug}/{author.username}/", Post)  # one crossing is fine


def test_an_old_rule_crossing_two_relations_is_reported_broken_not_run(make_rule) -> None:
    make_rule("posts", "/posts/{slug}/")
    # Written before the limit existed (bulk_create skips validation, like old rows).
    PurgeRule.objects.bulk_create(
        [
            PurgeRule(
                name="old product",
                content_type=ContentType.objects.get_for_model(Post),
                templates="/t/{tags.slug}/{tags.pk}/",
            )
        ]
    )
    post = Post.objects.create(title="T", slug="t")
    post.tags.add(Tag.objects.create(slug="a"))

    post.save()

    assert "at most one many-to-many" in rules.get_index().broken["old product"]
    assert {target for target, _s, _e in rows()} == {"/posts/t/"}


def test_one_many_to_many_step_stops_reading_and_writing_at_the_cap(make_rule, settings) -> None:
    settings.ROAN_MAX_URLS_PER_EVENT = 5
    make_rule("tags", "/tags/{tags.slug}/")
    post = Post.objects.create(title="T", slug="t")
    with context.suppress_purges():
        tags = Tag.objects.bulk_create(Tag(slug=f"tag-{n:03}") for n in range(300))
        post.tags.add(*tags)
    PurgeAttempt.objects.all().delete()

    with CaptureQueriesContext(connection) as queries:
        post.save()

    written = rows()
    assert [t for t, s, _e in written if s == "pending"] == [f"/tags/tag-{n:03}/" for n in range(5)]
    skipped = [(t, e) for t, s, e in written if s == "skipped"]
    assert len(written) == 6 and len(skipped) == 1
    assert skipped[0][0] == "/tags/{tags.slug}/"
    assert "more than ROAN_MAX_URLS_PER_EVENT (5)" in skipped[0][1]
    # Tags are read a page of cap + 1 at a time, not all 300.
    tag_reads = [q["sql"] for q in queries.captured_queries if "testapp_tag" in q["sql"]]
    assert tag_reads and all("LIMIT 6" in sql for sql in tag_reads)


def test_render_follows_the_related_objects_order_and_drops_duplicates(make_rule) -> None:
    post = Post.objects.create(title="T", slug="t")
    post.tags.add(Tag.objects.create(slug="b"), Tag.objects.create(slug="a"))

    from roan.rules.templating import render

    assert render(parse("/tags/{tags.slug}/", Post), post) == ["/tags/b/", "/tags/a/"]
    assert render(parse("/tags/{tags.slug}/", Post), post, limit=1) == ["/tags/b/"]
    assert render(parse("/posts/{slug}/", Post), post) == ["/posts/t/"]


def test_render_without_a_limit_reads_related_objects_page_by_page(make_rule) -> None:
    from roan.rules.templating import render

    post = Post.objects.create(title="T", slug="t")
    with context.suppress_purges():
        post.tags.add(*Tag.objects.bulk_create(Tag(slug=f"s{n:04}") for n in range(1500)))

    with CaptureQueriesContext(connection) as queries:
        paths = render(parse("/tags/{tags.slug}/", Post), post)

    assert paths == [f"/tags/s{n:04}/" for n in range(1500)]
    assert len([q for q in queries.captured_queries if "testapp_tag" in q["sql"]]) == 2


# -- one event writes a bounded number of rows ----------------------------------------------


def test_an_event_over_the_cap_writes_one_row_per_backend_saying_how_many_were_dropped(
    make_rule, settings
) -> None:
    settings.ROAN_BACKENDS = {
        "edge": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
        "origin": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
    }
    settings.ROAN_MAX_URLS_PER_EVENT = 3
    make_rule("many", "\n".join(f"/page/{n}/" for n in range(10)))

    Post.objects.create(title="T", slug="t")

    written = list(PurgeAttempt.objects.order_by("id").values_list("backend", "status", "error"))
    assert [(b, s) for b, s, _e in written if s == "pending"] == [("edge", "pending")] * 3
    skipped = {b: e for b, s, e in written if s == "skipped"}
    assert len(written) == 5  # 3 sent, one summary per backend: not 17 skipped rows
    assert "this and 6 more purge(s)" in skipped["edge"]
    assert "this and 9 more purge(s)" in skipped["origin"]
    assert "ROAN_MAX_URLS_PER_EVENT (3)" in skipped["origin"]


# -- whatever rendering raises becomes a skipped attempt -------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_get_absolute_url_raising_no_reverse_match_is_skipped_and_the_save_goes_on(
    make_rule, outbox
) -> None:
    make_rule("own url", "{get_absolute_url}\n/posts/")
    make_rule("list", "/list/")

    # "not a slug" does not match the URL pattern: reverse() raises NoReverseMatch.
    post = Post.objects.create(title="T", slug="not a slug")

    written = rows()
    assert sorted(t for t, s, _e in written if s == "ok") == ["/list/", "/posts/"]
    [(target, error)] = [(t, e) for t, s, e in written if s == "skipped"]
    assert target == "{get_absolute_url}"
    assert "NoReverseMatch" in error

    PurgeAttempt.objects.all().delete()
    post.delete()

    written = rows()
    assert sorted(t for t, s, _e in written if s == "ok") == ["/list/", "/posts/"]
    assert [t for t, s, _e in written if s == "skipped"] == ["{get_absolute_url}"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["save", "delete"])
def test_a_dangling_foreign_key_is_skipped_and_the_save_or_delete_goes_on(
    make_rule, action
) -> None:
    make_rule("author", "/authors/{author.username}/\n/posts/{slug}/")
    author = Author.objects.create(username="ann")
    created = Post.objects.create(title="T", slug="t", author=author)
    PurgeAttempt.objects.all().delete()

    with transaction.atomic():
        # Delete the author behind the ORM's back: the foreign key is checked at commit
        # (deferred, on SQLite and PostgreSQL alike), so until then the post points at
        # nothing. The block is rolled back, so that commit never comes.
        with connection.cursor() as cursor:
            if connection.vendor == "mysql":
                # InnoDB checks foreign keys at once; switched off for this one statement.
                cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            cursor.execute("DELETE FROM testapp_author WHERE id = %s", [author.pk])
            if connection.vendor == "mysql":
                cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
        post = Post.objects.get(pk=created.pk)
        if action == "save":
            post.title = "changed"
            post.save()
        else:
            post.delete()
        written = rows()
        transaction.set_rollback(True)

    assert [t for t, s, _e in written if s == "pending"] == ["/posts/t/"]
    [(target, error)] = [(t, e) for t, s, e in written if s == "skipped"]
    assert target == "/authors/{author.username}/"
    assert "DoesNotExist" in error
