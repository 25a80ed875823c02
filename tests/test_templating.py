from __future__ import annotations

import pytest

from roan.templating import (
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
        ("/posts/{comments.text}/", "reverse relation"),
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
    from roan.templating import RenderError

    monkeypatch.setattr(Post, "get_absolute_url", lambda self: url)
    with pytest.raises(RenderError):
        render(parse("{get_absolute_url}", Post), Post(slug="x"))
