"""Layered caches (``AFTER``): the inner cache is purged first, the outer one only after.

The end-to-end tests put a real nginx (example/deploy/nginx.conf) in front of Django's
live server, whose views are cached by ``cache_page`` (Django's page cache): the demo's
own layering.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import requests
from django.core.cache import cache
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import cache_page

import roan
from roan import backends as backend_registry
from roan import pauses
from roan.backends.base import PurgeRequest, PurgeResult
from roan.backends.nginx import NginxBackend
from roan.context import hold_dispatch, suppress_purges
from roan.models import PurgeAttempt
from roan.outbox import limits
from roan.outbox.sender import send
from tests.testapp.models import Post


@cache_page(300)
def cached_post(request: HttpRequest, slug: str) -> HttpResponse:
    post = get_object_or_404(Post, slug=slug)
    response = HttpResponse(f"{post.title}\n", content_type="text/plain")
    response["Cache-Control"] = "public, max-age=300"
    return response


urlpatterns = [path("posts/<slug:slug>/", cached_post)]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

#: What ReadingNginx's reader got, fetching each page right after nginx purged it.
reads: list[str] = []


class ReadingNginx(NginxBackend):
    """nginx, plus a reader who fetches each purged page through nginx at once: the
    moment a refill would store an inner stale copy again."""

    def purge(self, node: str, requests_: Sequence[PurgeRequest]) -> list[PurgeResult]:
        results = super().purge(node, requests_)
        base = node.removesuffix("/purge")
        for request in requests_:
            reads.append(requests.get(base + request.target, timeout=5).text.strip())
        return results


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    cache.clear()
    reads.clear()
    yield
    backend_registry.reset()


def django_cache() -> dict[str, Any]:
    # nginx passes Host without the port, so Django keys the page under "127.0.0.1".
    return {"BACKEND": "roan.backends.django_cache.DjangoCacheBackend", "HOSTS": ["127.0.0.1"]}


def purge_log(nginx: Any) -> list[str]:
    log = nginx.dir / "logs" / "access.log"
    return [line for line in log.read_text().splitlines() if "/purge/" in line]


def fetch(nginx: Any, slug: str) -> tuple[str, str]:
    response = requests.get(f"{nginx.url}/posts/{slug}/", timeout=5)
    return response.text.strip(), response.headers.get("X-Cache-Status", "")


def cached_before(nginx: Any, slug: str, title: str) -> Post:
    """A post whose page both nginx and Django's page cache hold."""
    with suppress_purges():
        post = Post.objects.create(title=title, slug=slug)
    assert fetch(nginx, slug) == (title, "MISS")
    assert fetch(nginx, slug) == (title, "HIT")
    return post


def test_a_reader_right_after_the_nginx_purge_gets_the_fresh_page(
    nginx_site: Any, post_rule: Any, settings: Any
) -> None:
    settings.ROAN_BACKENDS = {
        "django": django_cache(),
        "nginx": {
            "BACKEND": "tests.test_layers.ReadingNginx",
            "LOCATION": f"{nginx_site.url}/purge",
            "AFTER": ["django"],
        },
    }
    post = cached_before(nginx_site, "layered", "Before")

    post.title = "After"
    post.save()

    # The reader fetched /posts/ and /posts/layered/ through nginx right after each purge.
    assert reads[-1] == "After"
    assert fetch(nginx_site, "layered") == ("After", "HIT")
    statuses = PurgeAttempt.objects.filter(target="/posts/layered/")
    assert sorted(statuses.values_list("backend", "status")) == [("django", "ok"), ("nginx", "ok")]


def test_purged_the_other_way_round_the_reader_refills_nginx_with_the_stale_copy(
    nginx_site: Any, post_rule: Any, settings: Any
) -> None:
    # What AFTER prevents, shown by ordering the layers wrongly: nginx purged first.
    settings.ROAN_BACKENDS = {
        "django": {**django_cache(), "AFTER": ["nginx"]},
        "nginx": {
            "BACKEND": "tests.test_layers.ReadingNginx",
            "LOCATION": f"{nginx_site.url}/purge",
        },
    }
    post = cached_before(nginx_site, "wrong-way", "Before")

    post.title = "After"
    post.save()

    assert reads[-1] == "Before"
    assert fetch(nginx_site, "wrong-way") == ("Before", "HIT")  # stale for nginx's lifetime


def test_a_failing_inner_cache_holds_the_outer_purge_until_its_retry_succeeds(
    nginx_site: Any, post_rule: Any, settings: Any
) -> None:
    nginx = {
        "BACKEND": "roan.backends.nginx.NginxBackend",
        "LOCATION": f"{nginx_site.url}/purge",
        "LABEL": "nginx",
        "AFTER": ["django"],
    }
    failing = {
        "BACKEND": "roan.backends.locmem.LocMemBackend",
        "NODES": ["cache:default"],  # the node DjangoCacheBackend names below
        "LABEL": "Django page cache",
        "FAIL": 503,
    }
    settings.ROAN_BACKENDS = {"django": failing, "nginx": nginx}
    post = cached_before(nginx_site, "held", "Before")
    purges_before = len(purge_log(nginx_site))

    post.title = "After"
    post.save()

    inner = PurgeAttempt.objects.get(backend="django", target="/posts/held/")
    outer = PurgeAttempt.objects.get(backend="nginx", target="/posts/held/")
    assert (inner.status, inner.tries) == ("failed", 1)
    assert (outer.status, outer.tries) == ("pending", 0)
    assert outer.error == "waiting for Django page cache (inner cache) to purge first"
    assert inner.next_attempt_at is not None and outer.next_attempt_at is not None
    assert outer.next_attempt_at >= inner.next_attempt_at
    assert len(purge_log(nginx_site)) == purges_before  # no request reached nginx
    assert fetch(nginx_site, "held") == ("Before", "HIT")

    # Before the inner retry is due, roan_dispatch sends neither.
    call_command("roan_dispatch", stdout=io.StringIO())
    assert len(purge_log(nginx_site)) == purges_before

    # The page cache is back; the inner retry comes due and succeeds: nginx goes next.
    settings.ROAN_BACKENDS = {"django": django_cache(), "nginx": nginx}
    PurgeAttempt.objects.filter(backend="django").update(next_attempt_at=timezone.now())
    call_command("roan_dispatch", stdout=io.StringIO())

    inner.refresh_from_db()
    outer.refresh_from_db()
    assert (inner.status, inner.tries) == ("ok", 2)
    assert (outer.status, outer.tries, outer.error) == ("ok", 1, "")
    assert len(purge_log(nginx_site)) > purges_before
    assert fetch(nginx_site, "held") == ("After", "MISS")


# -- the sender's rules, with in-process backends -------------------------------------------


def locmem(**options: Any) -> dict[str, Any]:
    return {"BACKEND": "roan.backends.locmem.LocMemBackend", **options}


def sent(outbox: list[Any]) -> list[tuple[str, str]]:
    return [(node, request.target) for node, request in outbox]


def test_inner_attempts_go_first_even_when_the_outer_is_claimed_alone(
    settings: Any, outbox: list[Any]
) -> None:
    settings.ROAN_BACKENDS = {
        "outer": locmem(NODES=["edge"], AFTER=["inner"]),
        "inner": locmem(NODES=["page-cache"]),
    }
    with hold_dispatch() as held, transaction.atomic():
        roan.purge_urls(["/a/"])
    outer = PurgeAttempt.objects.get(backend="outer")
    assert set(held) == set(PurgeAttempt.objects.values_list("pk", flat=True))

    send([outer.pk])  # a batch that holds the outer attempt only

    assert sent(outbox) == [("page-cache", "/a/"), ("edge", "/a/")]
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}


def test_three_layers_go_in_order(settings: Any, outbox: list[Any]) -> None:
    settings.ROAN_BACKENDS = {
        "cdn": locmem(NODES=["cdn"], AFTER=["nginx"]),
        "nginx": locmem(NODES=["nginx"], AFTER=["django"]),
        "django": locmem(NODES=["django"]),
    }
    roan.purge_urls(["/a/"])
    assert sent(outbox) == [("django", "/a/"), ("nginx", "/a/"), ("cdn", "/a/")]


def test_an_outer_purge_from_a_later_transaction_waits_for_the_failed_inner_one(
    settings: Any, outbox: list[Any]
) -> None:
    settings.ROAN_BACKENDS = {
        "outer": locmem(NODES=["edge"], AFTER=["inner"]),
        "inner": locmem(NODES=["page-cache"], FAIL=503),
    }
    roan.purge_urls(["/a/"], backends=["inner"])
    outbox.clear()

    roan.purge_urls(["/a/"], backends=["outer"])  # another transaction, outer only

    assert outbox == []
    outer = PurgeAttempt.objects.get(backend="outer")
    assert outer.status == "pending" and outer.error.startswith("waiting for inner")


def test_one_failed_node_of_the_inner_cache_holds_the_outer_purge(
    settings: Any, outbox: list[Any]
) -> None:
    settings.ROAN_BACKENDS = {
        "outer": locmem(NODES=["edge"], AFTER=["inner"]),
        "inner": locmem(NODES=["a", "b"], FAIL=503),
    }
    roan.purge_urls(["/a/"])
    assert sorted(sent(outbox)) == [("a", "/a/"), ("b", "/a/")]
    assert PurgeAttempt.objects.get(backend="outer").status == "pending"


def test_a_skipped_inner_purge_does_not_hold_the_outer_one(
    settings: Any, outbox: list[Any]
) -> None:
    # Django's page cache cannot purge a prefix: its attempt is skipped, nginx still goes.
    settings.ROAN_BACKENDS = {
        "outer": locmem(NODES=["edge"], AFTER=["inner"]),
        "inner": {"BACKEND": "roan.backends.django_cache.DjangoCacheBackend", "HOSTS": ["x"]},
    }
    roan.purge_urls(["/posts/"], kind="prefix")
    assert sent(outbox) == [("edge", "/posts/")]
    statuses = dict(PurgeAttempt.objects.values_list("backend", "status"))
    assert statuses == {"inner": "skipped", "outer": "ok"}


def test_an_inner_purge_that_gives_up_releases_the_outer_one(
    settings: Any, outbox: list[Any]
) -> None:
    # 403 cannot get better by retrying: the inner gives up, the outer is sent anyway.
    settings.ROAN_BACKENDS = {
        "outer": locmem(NODES=["edge"], AFTER=["inner"]),
        "inner": locmem(NODES=["page-cache"], FAIL=403),
    }
    roan.purge_urls(["/a/"])
    assert sent(outbox) == [("page-cache", "/a/"), ("edge", "/a/")]
    statuses = dict(PurgeAttempt.objects.values_list("backend", "status"))
    assert statuses == {"inner": "gave_up", "outer": "ok"}


def test_a_paused_inner_cache_holds_the_outer_purge_and_resuming_sends_both_in_order(
    settings: Any, outbox: list[Any]
) -> None:
    settings.ROAN_BACKENDS = {
        "outer": locmem(NODES=["edge"], AFTER=["inner"]),
        "inner": locmem(NODES=["page-cache"]),
    }
    pauses.pause("inner")
    roan.purge_urls(["/a/"])
    assert outbox == []
    outer = PurgeAttempt.objects.get(backend="outer")
    assert outer.error == "waiting for inner (inner cache) to purge first; it is paused"
    assert outer.next_attempt_at is not None
    assert outer.next_attempt_at > timezone.now() + datetime.timedelta(seconds=30)

    pauses.resume("inner")

    assert sent(outbox) == [("page-cache", "/a/"), ("edge", "/a/")]
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}


def test_a_rate_limited_inner_cache_holds_the_outer_purge(settings: Any, outbox: list[Any]) -> None:
    settings.ROAN_BACKENDS = {
        "outer": locmem(NODES=["edge"], AFTER=["inner"]),
        "inner": locmem(NODES=["page-cache"], RATE_LIMIT={"RATE": 1, "BURST": 1}),
    }
    settings.ROAN_CACHE = "default"
    roan.purge_urls(["/a/", "/b/"])
    # One token: /a/ goes on both layers, /b/ waits for its inner token.
    assert sent(outbox) == [("page-cache", "/a/"), ("edge", "/a/")]
    waiting = PurgeAttempt.objects.get(backend="outer", target="/b/")
    assert waiting.status == "pending" and waiting.error.startswith("waiting for inner")


@pytest.mark.parametrize(
    ("after", "message"),
    [
        ("inner", "must be a list of backend aliases"),
        (["nope"], "names 'nope', not in ROAN_BACKENDS"),
        (["outer"], "names 'outer' itself"),
        ([""], "non-empty strings"),
    ],
)
def test_a_bad_after_is_improperly_configured_and_a_system_check(
    settings: Any, after: Any, message: str
) -> None:
    settings.ROAN_BACKENDS = {"outer": locmem(AFTER=after), "inner": locmem()}
    with pytest.raises(ImproperlyConfigured, match=message):
        backend_registry.get_backends()
    errors = [m for m in run_checks(tags=["roan"]) if m.id == "roan.E100"]
    assert len(errors) == 1 and message in errors[0].msg


def test_a_cycle_is_named_in_the_error(settings: Any) -> None:
    settings.ROAN_BACKENDS = {
        "a": locmem(AFTER=["b"]),
        "b": locmem(AFTER=["c"]),
        "c": locmem(AFTER=["a"]),
    }
    with pytest.raises(ImproperlyConfigured, match=r"cycle \(a -> b -> c -> a\)"):
        backend_registry.get_backends()
    assert [m.id for m in run_checks(tags=["roan"]) if m.id.startswith("roan.E1")] == ["roan.E100"]


def test_a_valid_after_passes_the_checks(settings: Any) -> None:
    settings.ROAN_BACKENDS = {"outer": locmem(AFTER=["inner"]), "inner": locmem()}
    assert [m.id for m in run_checks(tags=["roan"]) if m.id.startswith("roan.E")] == []


def test_with_task_dispatch_the_held_outer_purge_is_queued_and_goes_after_the_inner_retry(
    settings: Any, outbox: list[Any]
) -> None:
    from django_tasks_db.models import DBTaskResult

    from roan.tasks import send_attempts

    settings.ROAN_DISPATCH = "task"
    settings.ROAN_BACKENDS = {
        "outer": locmem(NODES=["edge"], AFTER=["inner"]),
        "inner": locmem(NODES=["page-cache"], FAIL=503),
    }
    roan.purge_urls(["/a/"])
    [task] = DBTaskResult.objects.all()
    send_attempts.call(task.args_kwargs["args"][0])  # what a worker runs

    assert sent(outbox) == [("page-cache", "/a/")]
    inner = PurgeAttempt.objects.get(backend="inner")
    outer = PurgeAttempt.objects.get(backend="outer")
    assert (inner.status, outer.status) == ("failed", "pending")
    assert inner.next_attempt_at is not None and outer.next_attempt_at is not None
    # Both are queued again, the outer no sooner than the inner's retry.
    later = {
        pk: t for t in DBTaskResult.objects.exclude(pk=task.pk) for pk in t.args_kwargs["args"][0]
    }
    assert set(later) == {inner.pk, outer.pk}
    assert later[outer.pk].run_after >= inner.next_attempt_at

    # Time passes; the outer's task happens to run first: the inner still goes first.
    settings.ROAN_BACKENDS = {
        "outer": locmem(NODES=["edge"], AFTER=["inner"]),
        "inner": locmem(NODES=["page-cache"]),
    }
    PurgeAttempt.objects.update(next_attempt_at=timezone.now())
    outbox.clear()
    send_attempts.call([outer.pk])

    assert sent(outbox) == [("page-cache", "/a/"), ("edge", "/a/")]
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}


def test_an_inner_purge_recorded_by_another_sender_while_the_outer_is_held_releases_it(
    settings: Any, outbox: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another sender has the inner attempt in flight; it records "ok" just while this one
    # puts the outer attempt back (and found it still claimed, so it could not take it).
    settings.ROAN_BACKENDS = {
        "outer": locmem(NODES=["edge"], AFTER=["inner"]),
        "inner": locmem(NODES=["page-cache"]),
    }
    with hold_dispatch() as held, transaction.atomic():
        roan.purge_urls(["/a/"])
    inner = PurgeAttempt.objects.get(backend="inner")
    lease = timezone.now() + datetime.timedelta(seconds=120)
    PurgeAttempt.objects.filter(pk=inner.pk).update(claimed_until=lease)  # in flight
    release = limits.release_held

    def other_sender_records_meanwhile(*args: Any, **kwargs: Any) -> None:
        PurgeAttempt.objects.filter(pk=inner.pk).update(status="ok", claimed_until=None)
        release(*args, **kwargs)

    monkeypatch.setattr(limits, "release_held", other_sender_records_meanwhile)
    send(held)

    assert sent(outbox) == [("edge", "/a/")]
    assert PurgeAttempt.objects.get(backend="outer").status == "ok"
