"""Inside an editor's request a change's purges are sent before the response, and their
outcomes written once it is out (``roan.outbox.after_response``): against a real nginx.

The page is fresh when the response leaves; the row is claimed until then, and says what
the cache answered right after; a failure is written before the response; a process that
ends in between leaves the row claimed, and it is sent again once its lease ends.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.core.signals import request_started
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from roan.models import PurgeAttempt
from roan.outbox import after_response
from tests.support.caches import Nginx, free_port
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

#: What the view saw of the post's row and page, before its response.
seen: dict[str, Any] = {}


def cache_status(url: str) -> str:
    return requests.get(url, timeout=5).headers["X-Cache-Status"]


def save_view(request: HttpRequest, pk: int) -> HttpResponse:
    post = Post.objects.get(pk=pk)
    post.title = uuid.uuid4().hex
    post.save()
    row = PurgeAttempt.objects.get(target=f"/after/{post.slug}/")
    seen["row"] = (row.status, row.tries, row.claimed_until is not None)
    if "page" in request.GET:
        seen["page"] = cache_status(request.GET["page"])
    return HttpResponse("saved")


urlpatterns = [path("save/<int:pk>/", save_view)]


def use_nginx(settings: Any, location: str) -> None:
    settings.ROOT_URLCONF = __name__
    settings.ROAN_BACKENDS = {
        "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": location}
    }


def test_the_page_is_purged_before_the_response_and_the_row_written_after_it(
    settings: Any, nginx_cache: Nginx, make_rule: Any
) -> None:
    use_nginx(settings, f"{nginx_cache.url}/purge")
    make_rule("after", "/after/{slug}/")
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    page = f"{nginx_cache.url}/after/{post.slug}/"
    cache_status(page)
    assert cache_status(page) == "HIT"
    PurgeAttempt.objects.all().delete()
    seen.clear()

    assert Client().get(f"/save/{post.pk}/", {"page": page}).status_code == 200

    # Inside the request, after the save: the page is gone from the cache, and its row is
    # claimed by this process, its outcome not written yet.
    assert seen == {"row": ("pending", 0, True), "page": "MISS"}
    # Once the response was out: written.
    row = PurgeAttempt.objects.get(target=f"/after/{post.slug}/")
    assert (row.status, row.http_status, row.tries, row.claimed_until) == ("ok", 200, 1, None)


def test_a_failed_purge_is_written_before_the_response(settings: Any, make_rule: Any) -> None:
    use_nginx(settings, f"http://127.0.0.1:{free_port()}/purge")  # nothing listens
    make_rule("after", "/after/{slug}/")
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    PurgeAttempt.objects.all().delete()
    seen.clear()

    assert Client().get(f"/save/{post.pk}/").status_code == 200

    assert seen["row"] == ("failed", 1, False)
    row = PurgeAttempt.objects.get(target=f"/after/{post.slug}/")
    assert row.error and row.next_attempt_at is not None


def test_a_process_that_ends_before_writing_leaves_the_purge_to_be_sent_again(
    settings: Any, nginx_cache: Nginx, make_rule: Any
) -> None:
    use_nginx(settings, f"{nginx_cache.url}/purge")
    settings.ROAN_RETRY = {"LEASE": 0.5}
    make_rule("after", "/after/{slug}/")
    post = Post.objects.create(title="P", slug=uuid.uuid4().hex)
    page = f"{nginx_cache.url}/after/{post.slug}/"
    PurgeAttempt.objects.all().delete()

    request_started.disconnect(close_old_connections)
    try:
        request_started.send(sender=None)
        post.title = "Changed"
        post.save()  # sent; its outcome waits for request_finished
        # The process ends here: request_finished never comes, what it held is gone.
        after_response._after.set(None)
    finally:
        request_started.connect(close_old_connections)
    row = PurgeAttempt.objects.get(target=f"/after/{post.slug}/")
    assert (row.status, row.tries) == ("pending", 0)
    assert row.claimed_until is not None
    cache_status(page)
    assert cache_status(page) == "HIT"  # cached again since that purge

    time.sleep(0.6)  # the lease ends
    call_command("roan_dispatch", verbosity=0)

    row.refresh_from_db()
    assert (row.status, row.tries, row.claimed_until) == ("ok", 1, None)
    assert cache_status(page) == "MISS"  # purged a second time: never lost
