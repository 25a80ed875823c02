"""Django's real views behind a real nginx and a real Varnish: a save makes the next GET a MISS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.db import transaction

from roan.models import PurgeAttempt
from tests.support.caches import start_nginx, start_varnish
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def nginx_pair(live_server: Any) -> Iterator[list[Any]]:
    """Two nginx caches in front of Django's live server (two nodes of one backend)."""
    nodes = [start_nginx(live_server.thread.port), start_nginx(live_server.thread.port)]
    yield nodes
    for node in nodes:
        node.close()


@pytest.fixture(scope="module")
def varnish_site(live_server: Any) -> Iterator[Any]:
    node = start_varnish(live_server.thread.port)
    yield node
    node.close()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def cache_status(response: requests.Response) -> str:
    return response.headers.get("X-Cache-Status") or response.headers.get("X-Cache", "")


def purge_through(settings: Any, nginx: Any) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": f"{nginx.url}/purge"}
    }


def test_nginx_page_is_a_miss_with_new_content_after_an_orm_save(
    nginx_pair, post_rule, settings, session
) -> None:
    nginx = nginx_pair[0]
    purge_through(settings, nginx)
    post = Post.objects.create(title="Before", slug="orm")
    page = f"{nginx.url}/posts/orm/"
    first = session.get(page)
    assert (cache_status(first), first.text.splitlines()[0]) == ("MISS", "Before")
    assert cache_status(session.get(page)) == "HIT"

    with transaction.atomic():
        post.title = "After"
        post.save()

    fresh = session.get(page)
    assert (cache_status(fresh), fresh.text.splitlines()[0]) == ("MISS", "After")
    attempt = PurgeAttempt.objects.get(target="/posts/orm/", trigger="save", status="ok")
    assert attempt.http_status == 200
    assert attempt.latency_ms is not None and attempt.latency_ms > 0
    assert attempt.node == f"{nginx.url}/purge"


def test_nginx_page_is_purged_after_an_admin_change_form_save(
    nginx_pair, post_rule, settings, session, admin_client, admin_user
) -> None:
    nginx = nginx_pair[0]
    purge_through(settings, nginx)
    post = Post.objects.create(title="Draft", slug="admin-edit")
    page = f"{nginx.url}/posts/admin-edit/"
    session.get(page)
    assert cache_status(session.get(page)) == "HIT"

    response = admin_client.post(
        f"/admin/testapp/post/{post.pk}/change/",
        {"title": "Published", "slug": "admin-edit", "body": "", "views": "0"},
    )
    assert response.status_code == 302

    fresh = session.get(page)
    assert (cache_status(fresh), fresh.text.splitlines()[0]) == ("MISS", "Published")
    created, edited = PurgeAttempt.objects.filter(target="/posts/admin-edit/").order_by("id")
    # Creating the post found nothing cached yet; the admin's save purged the page.
    assert (created.status, created.http_status) == ("not_cached", 404)
    assert (edited.status, edited.http_status) == ("ok", 200)
    assert edited.user == admin_user  # named by roan.middleware.PurgeUserMiddleware


def test_both_nginx_nodes_are_purged_and_a_stopped_one_is_recorded_as_failed(
    nginx_pair, post_rule, settings, session
) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "NODES": [f"{node.url}/purge" for node in nginx_pair],
            "TIMEOUT": (1, 2),
        }
    }
    post = Post.objects.create(title="Two", slug="two")
    pages = [f"{node.url}/posts/two/" for node in nginx_pair]
    for page in pages:
        session.get(page)
        assert cache_status(session.get(page)) == "HIT"
    PurgeAttempt.objects.all().delete()  # forget the creation's not_cached attempts

    post.body = "edited"
    post.save()
    for page in pages:
        assert cache_status(session.get(page)) == "MISS"
    assert sorted(
        PurgeAttempt.objects.filter(target="/posts/two/").values_list("node", "status")
    ) == sorted((f"{node.url}/purge", "ok") for node in nginx_pair)

    up, down = nginx_pair
    down.stop()
    try:
        PurgeAttempt.objects.all().delete()
        post.body = "edited again"
        post.save()  # must not raise although a node is down
        outcomes = dict(
            PurgeAttempt.objects.filter(target="/posts/two/").values_list("node", "status")
        )
        assert outcomes == {f"{up.url}/purge": "ok", f"{down.url}/purge": "failed"}
        failed = PurgeAttempt.objects.get(node=f"{down.url}/purge", target="/posts/two/")
        assert "refused" in failed.error
        assert failed.next_attempt_at is not None
    finally:
        down.start()


def test_varnish_page_is_a_miss_with_new_content_after_a_save(
    varnish_site, post_rule, settings, session
) -> None:
    settings.ROAN_BACKENDS = {
        "varnish": {"BACKEND": "roan.backends.varnish.VarnishBackend", "NODES": [varnish_site.url]}
    }
    post = Post.objects.create(title="Before", slug="v")
    page = f"{varnish_site.url}/posts/v/"
    assert cache_status(session.get(page)) == "MISS"
    assert cache_status(session.get(page)) == "HIT"

    post.title = "After"
    post.save()

    fresh = session.get(page)
    assert (cache_status(fresh), fresh.text.splitlines()[0]) == ("MISS", "After")
    attempt = PurgeAttempt.objects.filter(target="/posts/v/").latest("id")
    assert (attempt.status, attempt.http_status) == ("ok", 200)
    assert attempt.latency_ms is not None and attempt.latency_ms > 0


def test_roan_0_1_readme_example_runs_unchanged_against_nginx(
    nginx_pair, settings, session
) -> None:
    nginx = nginx_pair[0]
    del settings.ROAN_BACKENDS
    settings.ROAN_PURGE_URL = f"{nginx.url}/purge"

    # roan 0.1's README, verbatim:
    from roan import purge

    purge("/posts").on_save(Post)

    Post.objects.create(title="First", slug="first")
    page = f"{nginx.url}/posts"
    assert session.get(page).text.startswith("posts: First")
    assert cache_status(session.get(page)) == "HIT"

    Post.objects.create(title="Second", slug="second")

    fresh = session.get(page)
    assert cache_status(fresh) == "MISS"
    assert fresh.text.startswith("posts: First, Second")
    attempt = PurgeAttempt.objects.get(target="/posts", status="ok", trigger="code_rule")
    assert attempt.backend == "default"
