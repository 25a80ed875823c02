"""Retries: backoff with jitter, Retry-After, answers that will not change, the last try."""

from __future__ import annotations

import datetime
import email.utils
import time

import pytest
from django.core.management import call_command
from django.utils import timezone

from roan.models import PurgeAttempt
from roan.outbox.sender import backoff_seconds
from roan.tasks import retry_batches
from tests.support import retrying
from tests.support.retrying import dispatch_now
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

#: The nginx backend at the fake cache (tests/support/retrying.py).
cache = retrying.cache


@pytest.mark.parametrize("status", [400, 401, 403, 405, 410])
def test_an_answer_that_will_not_change_is_not_retried(cache, status) -> None:
    cache.status = status
    Post.objects.create(title="T", slug="refused")
    assert len(cache.calls) == 2  # /posts/ and /posts/refused/
    rows = list(PurgeAttempt.objects.all())
    assert {(r.status, r.http_status, r.next_attempt_at) for r in rows} == {
        ("gave_up", status, None)
    }
    assert all(f"HTTP {status}: " in r.error for r in rows)  # the reason, with a hint
    dispatch_now()
    assert len(cache.calls) == 2


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_a_passing_failure_is_retried_later(cache, status) -> None:
    cache.status = status
    before = timezone.now()
    Post.objects.create(title="T", slug="busy")
    rows = list(PurgeAttempt.objects.all())
    assert {(r.status, r.tries) for r in rows} == {("failed", 1)}
    # The default backoff is 5 s with +-25 % jitter.
    assert all(r.next_attempt_at - before >= datetime.timedelta(seconds=3.75) for r in rows)
    call_command("roan_dispatch", verbosity=0)  # not due yet: nothing is sent
    assert len(cache.calls) == 2
    cache.status = 200
    dispatch_now()
    assert len(cache.calls) == 4
    assert set(PurgeAttempt.objects.values_list("status", "tries")) == {("ok", 2)}


@pytest.mark.parametrize(
    "header",
    [lambda: "120", lambda: email.utils.formatdate(time.time() + 120, usegmt=True)],
    ids=["seconds", "http-date"],
)
def test_retry_after_is_honoured_over_a_shorter_backoff(cache, settings, header) -> None:
    settings.ROAN_RETRY = {"BASE": 0.1}
    cache.status = 503
    cache.headers = {"Retry-After": header()}
    before = timezone.now()
    Post.objects.create(title="T", slug="slow-down")
    for row in PurgeAttempt.objects.all():
        assert row.status == "failed"
        wait = (row.next_attempt_at - before).total_seconds()
        assert 118 <= wait <= 125


def test_after_max_attempts_an_attempt_gives_up(cache, settings) -> None:
    settings.ROAN_RETRY = {"MAX_ATTEMPTS": 3}
    cache.status = 502
    Post.objects.create(title="T", slug="down")
    dispatch_now()
    assert set(PurgeAttempt.objects.values_list("status", "tries")) == {("failed", 2)}
    dispatch_now()
    rows = list(PurgeAttempt.objects.all())
    assert {(r.status, r.tries, r.next_attempt_at) for r in rows} == {("gave_up", 3, None)}
    assert all("gave up after 3 tries" in r.error for r in rows)
    dispatch_now()
    assert len(cache.calls) == 6  # 2 URLs x 3 tries, and nothing after giving up


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap(settings) -> None:
    settings.ROAN_RETRY = {"BASE": 2.0, "FACTOR": 3.0, "MAX": 100.0}
    for tries, plain in [(1, 2.0), (2, 6.0), (3, 18.0), (4, 54.0), (5, 100.0), (9, 100.0)]:
        delays = [backoff_seconds(tries) for _ in range(200)]
        assert plain * 0.75 <= min(delays) <= max(delays) <= plain * 1.25
        assert max(delays) - min(delays) > plain * 0.1  # spread out, not in lockstep
    assert backoff_seconds(1, retry_after=30.0) >= 30.0


def test_retry_tasks_cover_every_failure_and_none_runs_before_its_rows_are_due() -> None:
    now = timezone.now()
    due = [(i, now + datetime.timedelta(seconds=s)) for i, s in enumerate([5, 4, 5.5, 6, 60, 61])]
    batches = retry_batches(due, now)
    assert sorted(pk for _, ids in batches for pk in ids) == list(range(6))
    when = dict(due)
    for run_after, ids in batches:
        assert all(when[pk] <= run_after for pk in ids)
        # and nobody waits longer than a quarter of its backoff (or a second) beyond it
        for pk in ids:
            slack = max(datetime.timedelta(seconds=1), (when[pk] - now) / 4)
            assert run_after - when[pk] <= slack
    # 4 s and 5 s share a task, 5.5 s and 6 s another, 60 s and 61 s a third.
    assert [sorted(ids) for _, ids in batches] == [[0, 1], [2, 3], [4, 5]]


def test_roan_dispatch_sends_each_due_attempt_once_per_run(cache, settings) -> None:
    # No backoff at all: a failure is due again at once, and must wait for the next run.
    settings.ROAN_RETRY = {"BASE": 0.0, "MAX_ATTEMPTS": 10}
    cache.status = 503
    Post.objects.create(title="T", slug="again")
    assert len(cache.calls) == 2
    call_command("roan_dispatch", verbosity=0)
    assert len(cache.calls) == 4
    assert set(PurgeAttempt.objects.values_list("status", "tries")) == {("failed", 2)}
