"""ROAN_DISPATCH = "task": the database task backend, real db_worker processes."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
import requests
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from roan.models import PurgeAttempt
from tests.support.caches import LoopbackServer
from tests.support.workers import wait_until
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


def use_nginx(settings, url: str) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{url}/purge",
            "TIMEOUT": (1.0, 2.0),
        }
    }


def cache_status(url: str) -> str:
    return requests.get(url, timeout=5).headers["X-Cache-Status"]


def test_a_save_is_purged_by_a_worker_not_by_the_saving_process(
    make_rule, settings, nginx_cache, workers
) -> None:
    settings.ROAN_DISPATCH = "task"
    use_nginx(settings, nginx_cache.url)
    make_rule("task pages", "/tasks/{slug}/")
    page = f"{nginx_cache.url}/tasks/by-worker/"
    requests.get(page, timeout=5)
    assert cache_status(page) == "HIT"

    with transaction.atomic():
        Post.objects.create(title="T", slug="by-worker")
    # Committed and queued, not sent: the page is still cached.
    assert cache_status(page) == "HIT"
    [attempt] = PurgeAttempt.objects.all()
    assert attempt.status == "pending"
    [task] = DBTaskResult.objects.all()
    assert (task.task_path, task.queue_name) == ("roan.tasks.send_attempts", "default")

    worker = workers("--batch")
    assert worker.wait(60) == 0, worker.output()
    attempt.refresh_from_db()
    assert (attempt.status, attempt.tries, attempt.claimed_until) == ("ok", 1, None)
    assert cache_status(page) == "MISS"
    task.refresh_from_db()
    assert task.status == "SUCCESSFUL", worker.output()


def test_the_task_goes_to_roan_task_backend_and_queue(post_rule, settings) -> None:
    settings.ROAN_DISPATCH = "task"
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend"},
        "purges": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["roan"]},
    }
    settings.ROAN_TASK_BACKEND = "purges"
    settings.ROAN_TASK_QUEUE = "roan"
    Post.objects.create(title="T", slug="queued")
    [task] = DBTaskResult.objects.all()
    assert (task.backend_name, task.queue_name) == ("purges", "roan")
    assert sorted(task.args_kwargs["args"][0]) == sorted(
        PurgeAttempt.objects.values_list("pk", flat=True)
    )


class ScriptedCache(LoopbackServer):
    """Answers the n-th request with ``script[n]`` (status, headers), then 200; records
    when each request arrived (``time.time()``, comparable across processes)."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.arrivals: list[float] = []
        cache = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                cache.arrivals.append(time.time())
                status, headers = cache.script.pop(0) if cache.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)


@pytest.fixture
def busy_cache() -> Iterator[ScriptedCache]:
    cache = ScriptedCache([(429, {"Retry-After": "2"})])
    yield cache
    cache.close()


def test_a_429_with_retry_after_is_retried_by_a_deferred_task_no_sooner(
    make_rule, settings, busy_cache, workers
) -> None:
    settings.ROAN_DISPATCH = "task"
    # A backoff far shorter than Retry-After, so only the header can explain the wait.
    settings.ROAN_RETRY = {"BASE": 0.05, "FACTOR": 1.0}
    use_nginx(settings, busy_cache.url)
    make_rule("busy", "/busy/{slug}/")
    workers()  # a long-running worker, polling every 0.1 s
    Post.objects.create(title="T", slug="later")

    wait_until(lambda: len(busy_cache.arrivals) >= 2, 30, "the retry reached the cache")
    first, second = busy_cache.arrivals[:2]
    assert second - first >= 2.0
    attempt = PurgeAttempt.objects.get()
    wait_until(
        lambda: PurgeAttempt.objects.filter(pk=attempt.pk, status="ok").exists(),
        10,
        "the retry was recorded",
    )
    attempt.refresh_from_db()
    assert (attempt.tries, attempt.http_status) == (2, 200)
    # The retry was its own task, deferred until the attempt was due.
    tasks = list(DBTaskResult.objects.order_by("enqueued_at"))
    assert len(tasks) == 2
    assert tasks[1].run_after is not None
    assert tasks[1].run_after.timestamp() >= first + 2.0
    assert len(busy_cache.arrivals) == 2


def test_task_dispatch_without_the_tasks_framework_is_an_error(settings, monkeypatch) -> None:
    from roan.checks import check_task_dispatch

    settings.ROAN_DISPATCH = "task"
    assert check_task_dispatch() == []
    # A None entry makes `import` fail, as on Django 5.2 without the backport.
    monkeypatch.setitem(sys.modules, "django.tasks", None)
    monkeypatch.setitem(sys.modules, "django_tasks", None)
    [error] = check_task_dispatch()
    assert error.id == "roan.E004"
    assert "Tasks framework" in error.msg
    assert "roan[tasks]" in error.hint
    settings.ROAN_DISPATCH = "inline"
    assert check_task_dispatch() == []


def test_task_dispatch_to_a_backend_or_queue_tasks_does_not_have_is_an_error(settings) -> None:
    from roan.checks import check_task_dispatch

    settings.ROAN_DISPATCH = "task"
    settings.ROAN_TASK_BACKEND = "purges"
    [error] = check_task_dispatch()
    assert (error.id, "'purges'" in error.msg) == ("roan.E004", True)
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend"},
        "purges": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["roan"]},
    }
    [error] = check_task_dispatch()
    assert error.id == "roan.E004"
    assert "ROAN_TASK_QUEUE 'default'" in error.msg
    settings.ROAN_TASK_QUEUE = "roan"
    assert check_task_dispatch() == []
    settings.TASKS = {"purges": {"BACKEND": "no.such.Backend"}}
    [error] = check_task_dispatch()
    assert error.id == "roan.E004"
    assert "no.such.Backend" in error.msg


def test_one_task_sends_every_attempt_of_a_large_transaction(make_rule, settings, outbox) -> None:
    from roan.tasks import send_attempts

    settings.ROAN_DISPATCH = "task"
    make_rule("many", "/many/{slug}/")
    with transaction.atomic():
        for i in range(1500):  # more than one claim takes
            Post.objects.create(title="T", slug=f"m{i}")
    [task] = DBTaskResult.objects.all()
    ids = task.args_kwargs["args"][0]
    assert len(ids) == 1500
    assert send_attempts.call(ids) == 1500  # what a worker runs (here in this process)
    assert len(outbox) == 1500
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}


def test_a_queue_that_refuses_the_task_loses_nothing(post_rule, settings, outbox, caplog) -> None:
    from django.core.management import call_command

    settings.ROAN_DISPATCH = "task"
    settings.ROAN_TASK_BACKEND = "gone"  # enqueueing raises: no such task backend
    with transaction.atomic():
        Post.objects.create(title="T", slug="kept")  # the save does not notice
    assert "dispatching 2 attempt(s) failed" in caplog.text
    assert not DBTaskResult.objects.exists()
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"pending"}
    call_command("roan_dispatch", verbosity=0)  # cron's pass
    assert sorted(request.target for _, request in outbox) == ["/posts/", "/posts/kept/"]
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}


def test_attempts_a_rate_limit_holds_back_get_a_deferred_task(make_rule, settings, outbox) -> None:
    from roan.tasks import send_attempts

    settings.ROAN_DISPATCH = "task"
    settings.ROAN_BACKENDS = {
        "default": {
            "BACKEND": "roan.backends.locmem.LocMemBackend",
            "RATE_LIMIT": {"RATE": 1, "BURST": 1},
        }
    }
    make_rule("limited", "/limited/{slug}/")
    with transaction.atomic():
        for i in range(3):
            Post.objects.create(title="T", slug=f"l{i}")
    [task] = DBTaskResult.objects.all()
    ids = task.args_kwargs["args"][0]
    assert send_attempts.call(ids) == 3  # what a worker runs (here in this process)
    assert len(outbox) == 1  # the burst
    held = PurgeAttempt.objects.filter(status="pending")
    assert held.count() == 2
    later = DBTaskResult.objects.exclude(pk=task.pk)
    # The held-back attempts are queued again, each no sooner than its token comes.
    queued = {pk for t in later for pk in t.args_kwargs["args"][0]}
    assert queued == set(held.values_list("pk", flat=True))
    for t in later:
        due = max(a.next_attempt_at for a in held.filter(pk__in=t.args_kwargs["args"][0]))
        assert t.run_after is not None and t.run_after >= due
