from __future__ import annotations

import pytest
from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.test.utils import isolate_apps

from roan.rules.templating import (
    TemplateError,
    TemplateErrors,
    encode_segment,
    parse,
    parse_lines,
    render,
)
from tests.testapp.models import Author, Post, Tag


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("/posts/{nope}/", "has no field named 'nope'"),
        ("/posts/{comments}/", "is a relation"),
        ("/posts/{comment_set.text}/", "has no field named 'comment_set'"),
        ("/posts/{__class__}/", "not allowed"),
        ("/posts/{_meta}/", "not allowed"),
        ("/posts/{pk.__class__}/", "not allowed"),
        ("/posts/{slug!r}/", "not allowed"),
        ("/posts/{slug:>10}/", "not allowed"),
        ("/posts/{0}/", "not allowed"),
        ("/posts/{}/", "names nothing"),
        ("/posts/{secret}/", "has no field named 'secret'"),
        ("/posts/{author}/", "is a relation"),
        ("/posts/{slug.upper}/", "nothing can follow"),
        ("/posts/{title.__len__}/", "not allowed"),
        ("http://evil.example/x", "path starting with a single '/'"),
        ("//evil.example/x", "path starting with a single '/'"),
        ("posts/{slug}/", "path starting with a single '/'"),
        ("/posts/\r\nX-Evil: 1", "control character"),
        ("/posts/\x00", "control character"),
        ("/posts/a b", "a space"),
        ("/" + "a" * 2048, "longer than 2048"),
        ("/posts/{slug", "unbalanced"),
        ("/posts/*/x", "may only end"),
        ("/posts/#frag", "'#'"),
    ],
)
def test_bad_templates_are_refused_with_the_reason(template: str, reason: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse(template, Post, line=3)
    assert reason in str(info.value)
    assert str(info.value).startswith("Line 3: ")


def test_every_bad_line_is_reported_by_number() -> None:
    with pytest.raises(TemplateErrors) as info:
        parse_lines("/posts/\n/posts/{nope}/\n\n/x/{_y}/\n/ok/{slug}/", Post)
    assert [e.line for e in info.value.errors] == [2, 4]


def test_good_templates_parse() -> None:
    for source in (
        "/posts/",
        "/posts/{slug}/",
        "/authors/{author.username}/",
        "/tags/{tags.slug}/",
        "{get_absolute_url}",
        "{author.get_absolute_url}" if hasattr(Author, "get_absolute_url") else "/a/{pk}/",
        "/posts/{pk}/",
        "/search?q={slug}",
        "/posts/*",
    ):
        parse(source, Post)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("a/b", "a%2Fb"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a?b#c", "a%3Fb%23c"),
        ("a b", "a%20b"),
        ("café", "caf%C3%A9"),
        ("a..b", "a..b"),
    ],
)
def test_values_stay_inside_one_segment(value: str, encoded: str) -> None:
    assert encode_segment(value) == encoded


@pytest.mark.django_db
def test_render_follows_relations_and_expands_many_to_many() -> None:
    author = Author.objects.create(username="ann")
    post = Post.objects.create(title="T", slug="a/../b", author=author)
    post.tags.add(Tag.objects.create(slug="x"), Tag.objects.create(slug="y"))
    assert render(parse("/posts/{slug}/", Post), post) == ["/posts/a%2F..%2Fb/"]
    assert render(parse("/authors/{author.username}/", Post), post) == ["/authors/ann/"]
    assert render(parse("/tags/{tags.slug}/{slug}", Post), post) == [
        "/tags/x/a%2F..%2Fb",
        "/tags/y/a%2F..%2Fb",
    ]
    post.slug = "plain"
    assert render(parse("{get_absolute_url}", Post), post) == ["/posts/plain/"]


@pytest.mark.django_db
def test_missing_values_render_nothing() -> None:
    post = Post.objects.create(title="T", slug="s")
    assert render(parse("/authors/{author.username}/", Post), post) == []
    assert render(parse("/tags/{tags.slug}/", Post), post) == []


def test_prefix_templates() -> None:
    template = parse("/posts/{slug}*", Post)
    assert template.prefix
    assert render(template, Post(slug="a b")) == ["/posts/a%20b"]


@pytest.mark.parametrize(
    "url", ["//evil.example/x", "https://evil.example/x", "posts/x", "/a\r\nb"]
)
def test_get_absolute_url_must_stay_on_the_site(url: str, monkeypatch) -> None:
    from roan.rules.templating import RenderError

    monkeypatch.setattr(Post, "get_absolute_url", lambda self: url)
    with pytest.raises(RenderError):
        render(parse("{get_absolute_url}", Post), Post(slug="x"))


# -- reverse relations ------------------------------------------------------------------------


def test_reverse_relations_parse_by_query_name_or_accessor() -> None:
    # Post.author has no related_name: the query name is "post", the accessor "post_set".
    by_query = parse("/posts/{post.slug}/", Author).placeholders[0]
    by_accessor = parse("/posts/{post_set.slug}/", Author).placeholders[0]
    assert [(s.name, s.kind, s.accessor) for s in by_query.steps] == [
        ("post", "reverse", "post_set"),
        ("slug", "field", ""),
    ]
    assert by_accessor.steps == by_query.steps
    # Post.tags has related_name="posts": that is both names.
    [posts, slug] = parse("/posts/{posts.slug}/", Tag).placeholders[0].steps
    assert (posts.name, posts.kind, posts.accessor, slug.name) == (
        "posts",
        "reverse",
        "posts",
        "slug",
    )
    # Reverse then forward; nothing local is read, so no old value is kept for it.
    template = parse("/a/{post.author.username}/{username}/", Author)
    assert template.local_attnames == frozenset({"username"})
    assert template.placeholders[0].steps[1].kind == "fk"


@pytest.mark.django_db
def test_render_follows_reverse_foreign_keys_and_many_to_many() -> None:
    ann = Author.objects.create(username="ann")
    other = Author.objects.create(username="bob")
    first = Post.objects.create(title="1", slug="first", author=ann)
    second = Post.objects.create(title="2", slug="se/cond", author=ann)
    Post.objects.create(title="3", slug="bobs", author=other)
    news = Tag.objects.create(slug="news")
    first.tags.add(news)
    second.tags.add(news)

    assert render(parse("/posts/{post.slug}/", Author), ann) == [
        "/posts/first/",
        "/posts/se%2Fcond/",
    ]
    assert render(parse("/posts/{post_set.slug}/", Author), other) == ["/posts/bobs/"]
    assert render(parse("/t/{slug}/{posts.slug}/", Tag), news) == [
        "/t/news/first/",
        "/t/news/se%2Fcond/",
    ]
    assert render(parse("/a/{posts.author.username}/", Tag), news) == ["/a/ann/"]
    assert render(parse("{post.get_absolute_url}", Author), other) == ["/posts/bobs/"]
    assert render(parse("/posts/{post.slug}/", Author), Author.objects.create(username="c")) == []
    assert render(parse("/posts/{post.slug}/", Author), Author(username="unsaved")) == []


@pytest.mark.parametrize(
    "source",
    [
        "/x/{post.tags.slug}/",  # a reverse foreign key, then a many-to-many
        "/x/{post.slug}/{post.pk}/",
        "/x/{post.slug}/{post_set.pk}/",
    ],
)
def test_two_steps_to_many_objects_are_refused(source: str) -> None:
    with pytest.raises(TemplateError, match="at most one many-to-many relation or reverse"):
        parse(source, Author)


def test_two_steps_to_many_from_a_tag_are_refused() -> None:
    with pytest.raises(TemplateError, match="cross 2"):
        parse("/x/{posts.tags.slug}/", Tag)
    with pytest.raises(TemplateError, match="cross 2"):
        parse("/x/{posts.comments.pk}/", Tag)
    parse("/x/{posts.author.username}/{slug}/", Tag)  # one step to many is fine


@isolate_apps("tests.testapp")
def test_a_reverse_one_to_one_is_one_object_and_may_be_missing() -> None:
    class Person(models.Model):
        name = models.CharField(max_length=20)

        class Meta:
            app_label = "testapp"

    class Profile(models.Model):
        person = models.OneToOneField(Person, on_delete=models.CASCADE)
        handle = models.CharField(max_length=20)

        class Meta:
            app_label = "testapp"

    class Photo(models.Model):
        person = models.ForeignKey(Person, on_delete=models.CASCADE)

        class Meta:
            app_label = "testapp"

    [step, _handle] = parse("/p/{profile.handle}/", Person).placeholders[0].steps
    assert (step.kind, step.accessor) == ("reverse_one", "profile")
    # One object, like a foreign key: it may stand next to a step to many.
    parse("/p/{profile.handle}/{photo.pk}/", Person)
    rel = Person._meta.get_field("profile")
    with_profile, without = Person(pk=1, name="a"), Person(pk=2, name="b")
    rel.set_cached_value(with_profile, Profile(pk=1, person=with_profile, handle="h/1"))
    rel.set_cached_value(without, None)  # what Django caches when no row points here
    template = parse("/p/{profile.handle}/", Person)
    assert render(template, with_profile) == ["/p/h%2F1/"]
    assert render(template, without) == []


@isolate_apps("tests.testapp")
def test_generic_and_hidden_relations_stay_refused() -> None:
    class Writer(models.Model):
        class Meta:
            app_label = "testapp"

    class Note(models.Model):
        content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
        object_id = models.PositiveIntegerField()
        target = GenericForeignKey("content_type", "object_id")
        writer = models.ForeignKey(Writer, on_delete=models.CASCADE, related_name="+")

        class Meta:
            app_label = "testapp"

    class Page(models.Model):
        notes = GenericRelation(Note, related_query_name="page")

        class Meta:
            app_label = "testapp"

    for source, reason in [
        ("/x/{notes.pk}/", "generic relation"),
        ("/x/{target.pk}/", "generic relation"),
    ]:
        model = Page if source.startswith("/x/{notes") else Note
        with pytest.raises(TemplateError, match=reason):
            parse(source, model)
    with pytest.raises(TemplateError, match="generic relation"):
        parse("/x/{page.pk}/", Note)  # the GenericRel on the other side
    with pytest.raises(TemplateError, match="has no field"):
        parse("/x/{note.pk}/", Writer)  # related_name="+": no reverse side
