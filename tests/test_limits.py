"""Rate limits and the pause switch, against a real nginx (roan.outbox.limits)."""

from __future__ import annotations

import importlib.util
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.core.cache import caches
from django.utils import timezone

import roan
from roan import pauses
from roan.backends import options
from roan.models import BackendState, PurgeAttempt
from roan.outbox import limits
from roan.outbox.sender import send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_buckets() -> Iterator[None]:
    """Buckets and the paused list live in ROAN_CACHE, which outlives a test's database."""
    caches["default"].clear()
    yield
    caches["default"].clear()


def use_nginx(settings: Any, nginx: Any, **options: Any) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx.url}/purge",
            **options,
        }
    }


def cached_pages(nginx: Any, count: int) -> list[str]:
    """``count`` fresh paths, each fetched twice so that nginx holds it (a HIT)."""
    paths = [f"/limits/{uuid.uuid4().hex[:8]}/{i}" for i in range(count)]
    for path in paths:
        requests.get(f"{nginx.url}{path}", timeout=5)
        assert status_of(nginx, path) == "HIT"
    return paths


def status_of(nginx: Any, path: str) -> str:
    return str(requests.get(f"{nginx.url}{path}", timeout=5).headers["X-Cache-Status"])


def test_a_paused_backend_queues_purges_and_resuming_sends_them(nginx_cache, settings) -> None:
    use_nginx(settings, nginx_cache)
    [page] = cached_pages(nginx_cache, 1)
    pauses.pause("nginx")

    roan.purge_urls([page])  # committed at once: inline dispatch runs now
    send(None)  # as roan_dispatch would

    attempt = PurgeAttempt.objects.get(target=page)
    assert (attempt.status, attempt.tries, attempt.claimed_until) == ("pending", 0, None)
    assert status_of(nginx_cache, page) == "HIT"
    # While paused a second request for the page queues beside the first.
    roan.purge_urls([page])

    assert pauses.resume("nginx") == 2

    # Sent once for both (a second purge would have answered 404, "not cached"), and
    # each row records that one outcome.
    rows = PurgeAttempt.objects.filter(target=page)
    assert sorted((a.status, a.http_status, a.tries, a.coalesced) for a in rows) == [
        ("ok", 200, 1, 0),
        ("ok", 200, 1, 1),
    ]
    assert status_of(nginx_cache, page) == "MISS"


def test_the_paused_option_holds_purges_until_it_is_removed(nginx_cache, settings) -> None:
    use_nginx(settings, nginx_cache, PAUSED=True)
    [page] = cached_pages(nginx_cache, 1)
    roan.purge_urls([page])
    send(None)
    assert PurgeAttempt.objects.get(target=page).status == "pending"
    assert status_of(nginx_cache, page) == "HIT"
    assert "nginx" in pauses.paused_backends()

    use_nginx(settings, nginx_cache)  # the deploy that un-pauses it
    [handled] = send(None)
    assert handled.status == "ok"
    assert status_of(nginx_cache, page) == "MISS"


def test_a_pause_in_the_database_reaches_a_sender_without_the_cache(settings) -> None:
    """Another process's toggle: the row is there, this process's cache knows nothing."""
    settings.ROAN_RULES_TTL = 0.01  # a process-local cache keeps the list this long
    BackendState.objects.create(alias="default", paused=True)
    assert pauses.paused_backends() == {"default"}
    BackendState.objects.filter(alias="default").update(paused=False)
    time.sleep(0.05)
    assert pauses.paused_backends() == frozenset()


def test_over_the_rate_limit_attempts_wait_their_turn_and_are_sent_later(
    nginx_cache, settings
) -> None:
    rate, burst = 4.0, 3
    use_nginx(settings, nginx_cache, RATE_LIMIT={"RATE": rate, "BURST": burst})
    pages = cached_pages(nginx_cache, 8)
    started = timezone.now()

    roan.purge_urls(pages)  # inline dispatch: the burst goes out, the rest waits

    rows = {a.target: a for a in PurgeAttempt.objects.all()}
    sent = [p for p in pages if rows[p].status == "ok"]
    held = [p for p in pages if rows[p].status == "pending"]
    assert len(sent) == burst and len(held) == len(pages) - burst
    for path in held:  # not failures, not tries, not claimed: queued for later
        row = rows[path]
        assert (row.tries, row.error, row.claimed_until) == (0, "", None)
        assert row.next_attempt_at is not None and row.next_attempt_at > started
    assert [status_of(nginx_cache, p) for p in pages] == ["MISS"] * burst + ["HIT"] * len(held)

    deadline = time.monotonic() + 20
    while PurgeAttempt.objects.filter(status="pending").exists():
        assert time.monotonic() < deadline, "held attempts were never sent"
        send(None)
        time.sleep(0.05)

    done = list(PurgeAttempt.objects.order_by("finished_at"))
    assert {a.status for a in done} == {"ok"}
    assert [status_of(nginx_cache, p) for p in held] == ["MISS"] * len(held)
    for attempt in done:
        if attempt.target in held:  # never before the time it was given
            assert attempt.finished_at >= rows[attempt.target].next_attempt_at
    # The bucket held: n sends need about (n - burst) / rate seconds after the first
    # (less one refill step of the bucket, BURST / RATE / SLOTS, and some for I/O).
    slack = burst / rate / options.SLOTS + 0.3
    first = done[0].finished_at
    for n, attempt in enumerate(done, start=1):
        assert (attempt.finished_at - first).total_seconds() >= (n - burst) / rate - slack


def test_a_rate_limited_backend_does_not_hold_back_another(outbox, settings) -> None:
    settings.ROAN_BACKENDS = {
        "slow": {"BACKEND": "roan.backends.locmem.LocMemBackend", "RATE_LIMIT": {"RATE": 1}},
        "free": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
    }
    roan.purge_urls(["/a/", "/b/", "/c/"])
    statuses = sorted(PurgeAttempt.objects.values_list("backend", "status"))
    assert statuses == [
        ("free", "ok"),
        ("free", "ok"),
        ("free", "ok"),
        ("slow", "ok"),
        ("slow", "pending"),
        ("slow", "pending"),
    ]


def test_twins_take_one_token_and_are_held_or_sent_together(outbox, settings) -> None:
    settings.ROAN_BACKENDS = {
        "default": {
            "BACKEND": "roan.backends.locmem.LocMemBackend",
            "RATE_LIMIT": {"RATE": 1, "BURST": 1},
        }
    }
    row = {"backend": "default", "node": "default", "target": "/twin/", "trigger": "api"}
    ids = PurgeAttempt.objects.write([row, row, row, {**row, "target": "/other/"}])
    claimed = PurgeAttempt.objects.claim(ids)
    # One token: the three requests for /twin/ are one purge; /other/ waits its turn.
    sent = limits.hold_back(claimed, using="default")
    assert sorted(a.pk for a in sent) == ids[:3]
    held = PurgeAttempt.objects.get(pk=ids[3])
    assert (held.status, held.claimed_until) == ("pending", None)
    assert held.next_attempt_at > timezone.now()


def test_saves_never_read_the_pause_state_and_senders_read_it_once_per_ttl(
    post_rule, outbox, settings
) -> None:
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from tests.testapp.models import Post

    settings.ROAN_RULES_TTL = 60
    pauses.pause("default")
    # Leaving the block commits, and the sender gets the purges and reads the switches.
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        for i in range(5):
            Post.objects.create(title="T", slug=f"t{i}")
        in_transaction = len(queries)
    reads = [q for q in queries if "roan_backendstate" in q["sql"]]
    assert not any("roan_backendstate" in q["sql"] for q in queries[:in_transaction])
    assert len(reads) == 1
    assert outbox == []  # paused: nothing sent
    with CaptureQueriesContext(connection) as queries:
        for i in range(5):
            Post.objects.create(title="U", slug=f"u{i}")
    assert not any("roan_backendstate" in q["sql"] for q in queries)  # cached
    assert outbox == []


def tasks_framework() -> str | None:
    """``django.tasks`` (Django 6), the ``django_tasks`` backport, or None."""
    for name in ("django.tasks", "django_tasks"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def test_resuming_with_task_dispatch_sends_through_the_task(nginx_cache, settings) -> None:
    settings.ROAN_DISPATCH = "task"
    framework = tasks_framework()
    if framework:  # its immediate backend runs a task at once, in this process
        backend = f"{framework}.backends.immediate.ImmediateBackend"
        settings.TASKS = {"default": {"BACKEND": backend}}
    use_nginx(settings, nginx_cache)
    [page] = cached_pages(nginx_cache, 1)
    pauses.pause("nginx")
    roan.purge_urls([page])
    assert PurgeAttempt.objects.get(target=page).status == "pending"

    assert pauses.resume("nginx") == 1

    if framework is None:
        # Nothing can run the task: the attempt stays queued, for roan_dispatch.
        assert PurgeAttempt.objects.get(target=page).status == "pending"
        assert status_of(nginx_cache, page) == "HIT"
        send(None)
    assert PurgeAttempt.objects.get(target=page).status == "ok"
    assert status_of(nginx_cache, page) == "MISS"


def test_roan_dispatch_wait_sends_held_attempts_as_their_tokens_come(outbox, settings) -> None:
    from io import StringIO

    from django.core.management import call_command

    settings.ROAN_BACKENDS = {
        "default": {
            "BACKEND": "roan.backends.locmem.LocMemBackend",
            "RATE_LIMIT": {"RATE": 5, "BURST": 2},
        }
    }
    roan.purge_urls([f"/w/{i}/" for i in range(6)])
    assert len(outbox) == 2

    out = StringIO()
    call_command("roan_dispatch", stdout=out)  # one pass: nothing is due yet
    assert "nothing due" in out.getvalue() and len(outbox) == 2

    started = time.monotonic()
    out = StringIO()
    call_command("roan_dispatch", "--wait", "20", stdout=out)
    assert "4 attempt(s): 4 ok" in out.getvalue()
    assert sorted(r.target for _n, r in outbox) == [f"/w/{i}/" for i in range(6)]
    assert set(PurgeAttempt.objects.values_list("status", "tries")) == {("ok", 1)}
    # Four more tokens at five a second take most of a second (less a refill step).
    assert time.monotonic() - started >= 0.6
