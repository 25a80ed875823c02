"""Reverse relations in URL templates (issue 9, section 2): "when an Author changes, purge
each of their posts", bounded like every step to many objects, and never a way into a
table a rule could not name itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from roan import context
from roan.models import PurgeAttempt, PurgeRule
from roan.rules.templating import TemplateError, parse
from tests.testapp.models import Author, Comment, Post, Tag

pytestmark = pytest.mark.django_db


def sent(outbox: list[Any]) -> list[str]:
    return sorted(request.target for _node, request in outbox)


def rows() -> list[tuple[str, str, str]]:
    return list(PurgeAttempt.objects.order_by("id").values_list("target", "status", "error"))


@pytest.fixture
def ann() -> Author:
    author = Author.objects.create(username="ann", name="Ann")
    with context.suppress_purges():
        for slug in ("one", "two", "three"):
            Post.objects.create(title=slug, slug=slug, author=author)
        Post.objects.create(title="x", slug="not-anns", author=Author.objects.create(username="b"))
    return author


# -- what fires ------------------------------------------------------------------------------


def test_saving_an_author_purges_the_url_of_each_of_their_posts(
    make_rule: Callable[..., PurgeRule],
    ann: Author,
    outbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_rule("author's posts", "/posts/{post.slug}/", model=Author)
    ann = Author.objects.get(pk=ann.pk)

    with django_capture_on_commit_callbacks(execute=True):
        ann.name = "Ann Lovelace"
        ann.save()

    assert sent(outbox) == ["/posts/one/", "/posts/three/", "/posts/two/"]
    assert {status for _t, status, _e in rows()} == {"ok"}


def test_saving_an_author_with_nothing_changed_still_purges_the_posts(
    make_rule: Callable[..., PurgeRule],
    ann: Author,
    outbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # No column of the author is read, so "nothing changed" cannot be told from the
    # loaded values: the posts are read and purged on every save.
    make_rule("author's posts", "/posts/{post_set.slug}/", model=Author)

    with django_capture_on_commit_callbacks(execute=True):
        Author.objects.get(pk=ann.pk).save()

    assert sent(outbox) == ["/posts/one/", "/posts/three/", "/posts/two/"]


def test_deleting_an_author_purges_their_posts_rendered_before_the_delete(
    make_rule: Callable[..., PurgeRule],
    ann: Author,
    outbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Post.author is SET_NULL: after the delete no post points to Ann any more.
    make_rule("author's posts", "/posts/{post.slug}/\n/authors/{username}/", model=Author)

    with django_capture_on_commit_callbacks(execute=True):
        ann.delete()

    assert sent(outbox) == ["/authors/ann/", "/posts/one/", "/posts/three/", "/posts/two/"]
    assert not Post.objects.filter(author__username="ann").exists()


def test_deleting_a_post_purges_its_comments_before_the_cascade_deletes_them(
    make_rule: Callable[..., PurgeRule], outbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    post = Post.objects.create(title="T", slug="t")
    with context.suppress_purges():
        ids = [Comment.objects.create(post=post, text=str(n)).pk for n in range(2)]
    make_rule("comments", "/comments/{comments.pk}/", on_save=False)

    with django_capture_on_commit_callbacks(execute=True):
        post.delete()

    assert sent(outbox) == sorted(f"/comments/{pk}/" for pk in ids)
    assert not Comment.objects.exists()


def test_a_tag_rule_through_its_posts_fires_on_changes_from_both_sides(
    make_rule: Callable[..., PurgeRule], outbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    tag = Tag.objects.create(slug="news")
    first = Post.objects.create(title="1", slug="first")
    second = Post.objects.create(title="2", slug="second")
    make_rule("tag's posts", "/posts/{posts.slug}/", model=Tag)

    with django_capture_on_commit_callbacks(execute=True):
        first.tags.add(tag)  # from the post's side
    assert sent(outbox) == ["/posts/first/"]
    outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        tag.posts.add(second)  # from the tag's side
    assert sent(outbox) == ["/posts/first/", "/posts/second/"]
    outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        tag.posts.remove(first)  # "before" still had it
    assert sent(outbox) == ["/posts/first/", "/posts/second/"]
    outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        tag.slug = "renamed"
        tag.save()
    assert sent(outbox) == ["/posts/second/"]


# -- bounded while rendering -----------------------------------------------------------------


def test_a_reverse_step_stops_reading_at_the_cap(
    make_rule: Callable[..., PurgeRule], settings: Any
) -> None:
    settings.ROAN_MAX_URLS_PER_EVENT = 5
    author = Author.objects.create(username="prolific")
    with context.suppress_purges():
        Post.objects.bulk_create(
            Post(title=str(n), slug=f"p{n:03}", author=author) for n in range(300)
        )
    make_rule("author's posts", "/posts/{post.slug}/", model=Author)
    author = Author.objects.get(pk=author.pk)

    with CaptureQueriesContext(connection) as queries:
        author.save()

    written = rows()
    pending = [t for t, s, _e in written if s == "pending"]
    assert pending == [f"/posts/p{n:03}/" for n in range(5)]
    [(template, problem)] = [(t, e) for t, s, e in written if s == "skipped"]
    assert template == "/posts/{post.slug}/"
    assert "more than ROAN_MAX_URLS_PER_EVENT (5)" in problem
    # Posts are read cap + 1 at a time, before and after the save: never all 300.
    reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and "testapp_post" in q["sql"]
    ]
    assert reads and all("LIMIT 6" in sql for sql in reads)


# -- what a reverse step may reach -----------------------------------------------------------


def test_a_reverse_step_into_the_admin_log_is_refused_even_when_users_are_allowed(
    settings: Any,
) -> None:
    settings.ROAN_RULE_MODELS = ["auth.user"]
    parse("/u/{username}/", User)

    for source in ("/u/{logentry.object_repr}/", "/u/{logentry_set.pk}/"):
        with pytest.raises(TemplateError) as info:
            parse(source, User)
        assert "leads to a model rules may not read" in str(info.value)
        assert "admin.logentry" in str(info.value)

    settings.ROAN_RULE_MODELS = ["auth.user", "admin.logentry"]  # opted in by label
    parse("/u/{logentry.object_repr}/", User)
    assert LogEntry._meta.get_field("user").related_model is User


def test_a_reverse_step_into_a_model_left_out_of_rule_models_is_refused(
    settings: Any, make_rule: Callable[..., PurgeRule]
) -> None:
    settings.ROAN_RULE_MODELS = ["testapp.author", "testapp.tag"]

    with pytest.raises(TemplateError, match=r"testapp\.post is not in ROAN_RULE_MODELS"):
        parse("/posts/{post.slug}/", Author)
    with pytest.raises(ValidationError, match="leads to a model rules may not read"):
        make_rule("sneaky", "/posts/{posts.slug}/", model=Tag)
    assert not PurgeRule.objects.exists()


def test_private_fields_stay_private_through_a_reverse_step(settings: Any) -> None:
    settings.ROAN_PRIVATE_FIELDS = ["testapp.post.body"]

    with pytest.raises(TemplateError, match=r"testapp\.Post\.body is private"):
        parse("/x/{post.body}/", Author)
    with pytest.raises(TemplateError, match="is private"):
        parse("/x/{posts.body}/", Tag)


def test_the_preview_needs_view_permission_on_the_models_a_reverse_step_reads(
    django_user_model: Any, make_rule: Callable[..., PurgeRule], ann: Author
) -> None:
    from tests.support.admin_helpers import staff_client

    rule = make_rule("author's posts", "/posts/{post.slug}/", model=Author)
    base = ["roan.view_purgerule", "testapp.view_author"]
    authors_only = staff_client(django_user_model, "authors", base)
    both = staff_client(django_user_model, "both", [*base, "testapp.view_post"])
    url = f"/admin/roan/purgerule/{rule.pk}/preview/?object_id={ann.pk}"

    refused, shown = authors_only.get(url), both.get(url)

    assert refused.status_code == 403 and "/posts/one/" not in refused.text
    assert shown.status_code == 200 and "/posts/one/" in shown.text
    assert ContentType.objects.get_for_model(Author) == rule.content_type


# -- the rule form lists what a placeholder may use ------------------------------------------


def placeholders_url(model: type[Any]) -> str:
    content_type = ContentType.objects.get_for_model(model)
    return f"/admin/roan/purgerule/placeholders/?content_type={content_type.pk}"


def test_the_change_page_lists_the_placeholders_of_the_rules_model(
    admin_client: Any, make_rule: Callable[..., PurgeRule]
) -> None:
    rule = make_rule("author's posts", "/posts/{post.slug}/", model=Author)

    page = admin_client.get(f"/admin/roan/purgerule/{rule.pk}/change/").text

    assert "Placeholders for Author" in page
    for placeholder in ("{pk}", "{username}", "{name}", "{post.slug}", "{post.get_absolute_url}"):
        assert f"<code>{placeholder}</code>" in page
    assert "post: the posts pointing here" in page and "one URL each" in page
    assert "roan/placeholders.js" in page and "/admin/roan/purgerule/placeholders/" in page


def test_the_add_page_asks_for_a_model_first(admin_client: Any) -> None:
    page = admin_client.get("/admin/roan/purgerule/add/").text

    assert "Choose a model to see the placeholders" in page
    assert "<code>" not in page[page.index('id="roan-placeholders"') :]


def test_the_list_leaves_out_private_fields_and_models_the_editor_cannot_view(
    django_user_model: Any, settings: Any
) -> None:
    from tests.support.admin_helpers import staff_client

    settings.ROAN_PRIVATE_FIELDS = ["testapp.post.body"]
    editor = staff_client(
        django_user_model,
        "editor",
        ["roan.add_purgerule", "roan.change_purgerule", "testapp.view_post", "testapp.view_tag"],
    )

    listing = editor.get(placeholders_url(Post)).json()

    names = [p["placeholder"] for g in listing["groups"] for p in g["placeholders"]]
    assert "{slug}" in names and "{tags.slug}" in names and "{get_absolute_url}" in names
    assert "{body}" not in names  # private
    # No permission to view authors or comments: neither their fields nor the relation.
    assert not [n for n in names if n.startswith(("{author.", "{comments."))]
    assert "{author_id}" in names  # a column of the post itself
    assert [g["many"] for g in listing["groups"]] == [False, True]


def test_the_placeholders_endpoint_needs_the_rule_and_model_permissions(
    django_user_model: Any, admin_client: Any, settings: Any
) -> None:
    from django.contrib.sessions.models import Session

    from tests.support.admin_helpers import staff_client

    viewer = staff_client(django_user_model, "viewer", ["roan.view_purgerule", "testapp.view_post"])
    no_model = staff_client(django_user_model, "no-model", ["roan.change_purgerule"])
    adder = staff_client(
        django_user_model,
        "adder",
        ["roan.add_purgerule", "testapp.view_author", "testapp.view_post"],
    )

    assert viewer.get(placeholders_url(Post)).status_code == 403
    assert no_model.get(placeholders_url(Post)).status_code == 403
    author = adder.get(placeholders_url(Author))
    assert author.status_code == 200 and author["Content-Type"] == "application/json"
    assert {"placeholder": "{post.slug}", "about": "slug (CharField)"} in author.json()["groups"][
        1
    ]["placeholders"]
    # Models no rule may name: not even a superuser gets their fields.
    assert admin_client.get(placeholders_url(Session)).status_code == 403
    assert admin_client.get(placeholders_url(User)).status_code == 403
    assert admin_client.get("/admin/roan/purgerule/placeholders/?content_type=x").status_code == 400
    settings.ROAN_RULE_MODELS = ["auth.user"]
    names = [
        p["placeholder"]
        for g in admin_client.get(placeholders_url(User)).json()["groups"]
        for p in g["placeholders"]
    ]
    assert "{username}" in names and "{password}" not in names
    assert not [n for n in names if n.startswith(("{logentry.", "{groups."))]
