"""The rule preview renders without sending; "send a test purge" really purges (nginx)."""

from __future__ import annotations

import pytest
import requests

from roan.models import PurgeAttempt
from tests.testapp.models import Author, Post

pytestmark = pytest.mark.django_db


def test_the_preview_shows_urls_and_backends_for_an_object_and_sends_nothing(
    admin_client, make_rule, outbox
) -> None:
    rule = make_rule("posts", "/posts/\n/posts/{slug}/\n/authors/{author.username}/")
    post = Post.objects.create(
        title="Hello", slug="hello", author=Author.objects.create(username="ada")
    )
    outbox.clear()
    PurgeAttempt.objects.all().delete()

    response = admin_client.get(f"/admin/roan/purgerule/{rule.pk}/preview/?object_id={post.pk}")

    assert response.status_code == 200
    lines = response.context["lines"]
    assert [(line.target, line.backend, line.skipped) for line in lines] == [
        ("/posts/", "default", ""),
        ("/posts/hello/", "default", ""),
        ("/authors/ada/", "default", ""),
    ]
    assert "Send a test purge" in response.text
    assert outbox == [] and not PurgeAttempt.objects.exists()


def test_the_preview_says_which_requests_a_backend_would_skip(
    admin_client, make_rule, settings
) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": "http://127.0.0.1:9/p"}
    }
    rule = make_rule("prefix", "/posts/*")
    post = Post.objects.create(title="Hello", slug="hello")

    response = admin_client.get(f"/admin/roan/purgerule/{rule.pk}/preview/?object_id={post.pk}")

    [line] = response.context["lines"]
    assert line.kind == "prefix" and "cannot purge by prefix" in line.skipped


def test_an_unknown_object_is_a_form_error(admin_client, post_rule) -> None:
    response = admin_client.get(f"/admin/roan/purgerule/{post_rule.pk}/preview/?object_id=999")
    assert "There is no post with the key 999." in response.text
    assert response.context["lines"] == []


@pytest.mark.caches
@pytest.mark.django_db(transaction=True)
def test_a_test_purge_really_purges_nginx_and_shows_the_result(
    admin_client, make_rule, settings, nginx_cache, cache_origin
) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx_cache.url}/purge",
        }
    }
    rule = make_rule("posts", "/preview-test/{slug}/")
    post = Post.objects.create(title="Hello", slug="hello")
    page = f"{nginx_cache.url}/preview-test/hello/"
    requests.get(page, timeout=5)
    assert requests.get(page, timeout=5).headers["X-Cache-Status"] == "HIT"

    response = admin_client.post(
        f"/admin/roan/purgerule/{rule.pk}/preview/", {"object_id": str(post.pk)}
    )

    [sent] = response.context["sent"]
    assert (sent.status, sent.http_status, sent.trigger) == ("ok", 200, "admin")
    assert sent.latency_ms is not None and sent.latency_ms > 0
    assert sent.user.username == "admin"
    assert "roan-status-ok" in response.text
    assert requests.get(page, timeout=5).headers["X-Cache-Status"] == "MISS"


def test_the_preview_picks_an_object_by_name_from_a_list_or_a_search(
    admin_client, make_rule
) -> None:
    rule = make_rule("posts", "/posts/{slug}/")
    hello = Post.objects.create(title="Hello world", slug="hello")
    Post.objects.create(title="Goodbye", slug="bye")
    url = f"/admin/roan/purgerule/{rule.pk}/preview/"

    page = admin_client.get(url).content.decode()

    # A select of the newest posts by name, not a box for a primary key.
    select = page.split('<select name="object_id" id="id_object_id"')[1].split("</select>")[0]
    assert "Goodbye" in select and "Hello world" in select
    assert select.index("Goodbye") < select.index("Hello world")  # newest first
    assert 'id="roan-preview-search"' in page  # the Post admin has search_fields

    found = admin_client.get(url, {"q": "hello"}).content.decode()
    select = found.split('<select name="object_id" id="id_object_id"')[1].split("</select>")[0]
    assert "Hello world" in select and "Goodbye" not in select

    shown = admin_client.get(url, {"q": "hello", "object_id": str(hello.pk)})
    assert [line.target for line in shown.context["lines"]] == ["/posts/hello/"]
    assert "Nothing matches" in admin_client.get(url, {"q": "zzz"}).text
