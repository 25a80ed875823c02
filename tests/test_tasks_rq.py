"""ROAN_DISPATCH = "task" on RQ: django-tasks-rq's backend, a real Redis, a real
``rqworker --with-scheduler`` process (the path a site takes beyond one machine)."""

from __future__ import annotations

import datetime
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from itertools import pairwise

import pytest
from django.db import transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from roan.models import PurgeAttempt
from roan.tasks import whole_second_after
from tests.support.caches import LoopbackServer
from tests.support.workers import wait_until
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "default"


class FlakyCache(LoopbackServer):
    """A purge endpoint that answers 503 to the first ``failures`` requests for each path,
    then 200; records when each request for each path arrived (``time.time()``)."""

    def __init__(self, failures: int) -> None:
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        cache = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                seen = cache.arrivals[self.path]
                seen.append(time.time())
                self.send_response(503 if len(seen) <= failures else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)


@pytest.fixture
def flaky_cache() -> Iterator[FlakyCache]:
    cache = FlakyCache(failures=3)
    yield cache
    cache.close()


@pytest.fixture
def on_rq(settings, redis_url, shared_sqlite) -> str:
    settings.ROAN_DISPATCH = "task"
    settings.RQ_QUEUES = {QUEUE: {"URL": redis_url, "DEFAULT_TIMEOUT": 60}}
    settings.TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": [QUEUE]}}
    return redis_url


def test_retries_deferred_on_rq_all_arrive_and_none_before_its_time(
    make_rule, settings, on_rq, flaky_cache, workers
) -> None:
    # Backoffs of a fraction of a second with jitter: due times that are never whole
    # seconds, which RQ's scheduler (whole seconds) releases early when not rounded up.
    settings.ROAN_RETRY = {"BASE": 0.4, "FACTOR": 1.5}
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{flaky_cache.url}/purge",
            "TIMEOUT": (1.0, 2.0),
        }
    }
    make_rule("flaky", "/flaky/{slug}/")
    worker = workers(
        "--job-class", "django_tasks_rq.Job", "--with-scheduler", QUEUE, command="rqworker"
    )
    # Eight pages in four saves a little over a second apart: four chains of retry tasks
    # (roan batches retries due within a second of each other), three retries each.
    for save in range(4):
        if save:
            time.sleep(1.1)
        with transaction.atomic():
            for page in range(2):
                Post.objects.create(title="T", slug=f"p{save}{page}")

    def settled() -> bool:
        assert worker.proc.poll() is None, worker.output()  # the worker must not die
        return not PurgeAttempt.objects.exclude(status="ok").exists()

    try:
        wait_until(settled, 90, "every attempt ended ok")
    except AssertionError:
        left = list(PurgeAttempt.objects.exclude(status="ok").values_list("target", "status"))
        raise AssertionError(f"still not ok: {left}\n{worker.output()}") from None
    assert PurgeAttempt.objects.count() == 8
    assert set(PurgeAttempt.objects.values_list("tries", "http_status")) == {(4, 200)}
    # Four requests per page (503, 503, 503, 200), each retry after its backoff had
    # passed: at least 0.75 * BASE * FACTOR ** (try - 1) after the one before.
    assert len(flaky_cache.arrivals) == 8
    for path, times in flaky_cache.arrivals.items():
        assert len(times) == 4, path
        waits = [later - sooner for sooner, later in pairwise(times)]
        assert all(w >= 0.75 * 0.4 * 1.5**n for n, w in enumerate(waits)), (path, waits)
    # The worker ran the tasks: none went through the database backend.
    assert not DBTaskResult.objects.exists()


def test_a_task_that_runs_before_its_attempts_are_due_queues_them_again(
    make_rule, settings
) -> None:
    from roan.tasks import send_attempts

    settings.ROAN_DISPATCH = "task"
    make_rule("early", "/early/{slug}/")
    with transaction.atomic():
        Post.objects.create(title="T", slug="early")
    [first] = DBTaskResult.objects.all()
    [pk] = first.args_kwargs["args"][0]
    due = timezone.now() + datetime.timedelta(seconds=30, microseconds=874_000)
    PurgeAttempt.objects.filter(pk=pk).update(status="failed", tries=1, next_attempt_at=due)

    assert send_attempts.call([pk]) == 0  # too early: nothing is sent ...
    attempt = PurgeAttempt.objects.get(pk=pk)
    assert (attempt.status, attempt.tries) == ("failed", 1)
    # ... and the attempt is queued again, for a whole second no sooner than it is due.
    [again] = DBTaskResult.objects.exclude(pk=first.pk)
    assert again.args_kwargs["args"] == [[pk]]
    assert again.run_after == whole_second_after(due)
    assert again.run_after >= due and again.run_after.microsecond == 0


def test_an_early_task_leaves_what_it_cannot_send_to_whoever_holds_it(make_rule, settings) -> None:
    from roan.tasks import send_attempts

    settings.ROAN_DISPATCH = "task"
    make_rule("held", "/held/{slug}/")
    with transaction.atomic():
        Post.objects.create(title="T", slug="held")
    [first] = DBTaskResult.objects.all()
    [pk] = first.args_kwargs["args"][0]
    later = timezone.now() + datetime.timedelta(seconds=30)
    # Claimed by another sender (which schedules its own retry), or already done.
    PurgeAttempt.objects.filter(pk=pk).update(
        status="failed", next_attempt_at=later, claimed_until=later
    )
    assert send_attempts.call([pk]) == 0
    PurgeAttempt.objects.filter(pk=pk).update(status="ok", next_attempt_at=None, claimed_until=None)
    assert send_attempts.call([pk]) == 0
    assert list(DBTaskResult.objects.all()) == [first]


def test_whole_second_after_rounds_up_only_a_fraction() -> None:
    when = datetime.datetime(2026, 1, 1, 12, 0, 27, 874_000, tzinfo=datetime.UTC)
    assert whole_second_after(when) == when.replace(second=28, microsecond=0)
    exact = when.replace(microsecond=0)
    assert whole_second_after(exact) == exact
