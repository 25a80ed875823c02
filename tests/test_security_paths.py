"""Where a path enters roan it cannot climb out of itself (dot segments), and typed input
fits the attempt table's columns (issue 7: path traversal, a 300-character host)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

import roan
from roan.api import parse_target
from roan.models import PurgeAttempt
from roan.rules.templating import RenderError, TemplateError, parse, render
from tests.testapp.models import Post

DOTTED = [
    "/../../../OTHERZONE/settings/{slug}",
    "/posts/./{slug}/",
    "/posts/..",
    "/posts/%2e%2e/{slug}/",
    "/posts/%2E%2E/",
    "/posts/.%2E/x",
    "/posts/%252e%252e/x",
    "/posts/a%2F..%2Fb/",
    "/posts/..;x=1/b",
    "/posts/..*",
]


@pytest.mark.parametrize("template", DOTTED)
def test_a_template_with_a_dot_segment_is_refused_when_parsed(template: str) -> None:
    with pytest.raises(TemplateError, match=r"'\.' or '\.\.' path segments"):
        parse(template, Post, line=1)


@pytest.mark.parametrize(
    "template",
    ["/posts/{slug}.html", "/posts/...", "/.well-known/x", "/posts/..{slug}/", "/a.b/c?x=.."],
)
def test_dots_inside_a_segment_still_parse(template: str) -> None:
    assert parse(template, Post).source == template


@pytest.mark.parametrize("url", ["/posts/../admin/", "/posts/%2e%2e/admin/", "/a/./b/"])
def test_get_absolute_url_with_a_dot_segment_is_a_render_error(url: str, monkeypatch) -> None:
    monkeypatch.setattr(Post, "get_absolute_url", lambda self: url)
    with pytest.raises(RenderError, match=r"'\.' or '\.\.'"):
        render(parse("{get_absolute_url}", Post), Post(slug="x"))


@pytest.mark.django_db(transaction=True)
def test_a_value_that_renders_a_dot_segment_is_recorded_skipped_not_sent(make_rule, outbox) -> None:
    make_rule("posts", "/posts/{slug}/")

    Post.objects.create(title="Dots", slug="..")

    row = PurgeAttempt.objects.get()
    assert (row.status, row.target) == ("skipped", "/posts/%2E%2E/")
    assert "'.' or '..' segment" in row.error
    assert outbox == []


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("/a/../b", "url"),
        ("/a/./b", "url"),
        ("https://www.example.com/a/%2e%2e/b", "url"),
        ("/a/%2E%2E", "url"),
        ("/../*", "prefix"),
        ("/a/..\\b", "url"),
    ],
)
def test_a_typed_url_with_a_dot_segment_is_refused(value: str, kind: str) -> None:
    with pytest.raises(ValueError, match=r"'\.' or '\.\.' segment"):
        parse_target(value, kind)


def test_dots_in_a_typed_url_that_are_not_segments_pass() -> None:
    assert parse_target("/a..b/.x/?q=..", "url").target == "/a..b/.x/?q=.."


@pytest.mark.django_db(transaction=True)
def test_every_entrance_for_typed_urls_refuses_dot_segments(admin_client, outbox) -> None:
    with pytest.raises(ValueError):
        roan.purge_urls(["/ok/", "/x/../admin/"])
    with pytest.raises(CommandError, match="segment"):
        call_command("roan_purge", "/x/%2e%2e/admin/", stdout=io.StringIO())
    page = admin_client.post(
        "/admin/roan/purge/", {"urls": "/ok/\n/x/../admin/", "kind": "url", "backends": ["default"]}
    )

    assert page.status_code == 200
    assert any(e.startswith("Line 2: ") for e in page.context["form"].errors["urls"])
    assert not PurgeAttempt.objects.exists() and outbox == []


# -- lengths ---------------------------------------------------------------------------------

LONG_HOST = "http://" + "h" * 300 + ".example/x/"


def test_a_host_longer_than_its_column_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 255"):
        parse_target(LONG_HOST, "url")
    longest = PurgeAttempt._meta.get_field("host").max_length
    assert longest == 255
    host = "h" * (longest - len(".example")) + ".example"
    assert parse_target(f"http://{host}/x/", "url").host == host


@pytest.mark.django_db(transaction=True)
def test_a_long_host_is_a_form_error_and_a_value_error_not_a_database_error(
    admin_client, outbox
) -> None:
    # On PostgreSQL a7037b1 answered 500 (DataError: value too long for varchar(255)).
    page = admin_client.post(
        "/admin/roan/purge/", {"urls": LONG_HOST, "kind": "url", "backends": ["default"]}
    )
    assert page.status_code == 200
    [error] = page.context["form"].errors["urls"]
    assert error.startswith("Line 1: the host") and "longer than 255" in error

    with pytest.raises(ValueError, match="longer than 255"):
        roan.purge_urls([LONG_HOST])
    with pytest.raises(ValueError, match="longer than 100"):
        roan.purge_urls(["/x/"], backends=["b" * 101])
    assert not PurgeAttempt.objects.exists() and outbox == []


def test_a_target_longer_than_its_column_is_refused() -> None:
    longest = PurgeAttempt._meta.get_field("target").max_length
    with pytest.raises(ValueError, match=f"longer than {longest}"):
        parse_target("/" + "a" * longest, "url")
