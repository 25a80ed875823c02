"""Nothing lost, nothing doubled: a cache that goes down, a worker that is killed.

Real nginx, real db_worker and roan_dispatch processes, on each test database: PostgreSQL
and MariaDB (SKIP LOCKED), SQLite (one writer at a time).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from roan.models import PurgeAttempt
from tests.support.caches import LoopbackServer, Nginx, own_nginx
from tests.support.workers import wait_until
from tests.testapp.models import Post

# On every database: the workers are separate processes on the test database (on SQLite
# a file, opened as README advises for several processes).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shared_sqlite")]


@pytest.fixture
def nginx() -> Iterator[Nginx]:
    """A node of our own (these tests stop it) before an origin of our own."""
    with own_nginx() as node:
        yield node


def use_backend(settings, location: str, **retry: float) -> None:
    settings.ROAN_DISPATCH = "task"
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": location,
            "TIMEOUT": (1.0, 5.0),
        }
    }
    settings.ROAN_RETRY = retry


def cache_statuses(base: str, paths: list[str]) -> Counter[str]:
    with requests.Session() as session:
        return Counter(session.get(base + p, timeout=5).headers["X-Cache-Status"] for p in paths)


def prime(base: str, paths: list[str]) -> None:
    cache_statuses(base, paths)
    assert cache_statuses(base, paths) == {"HIT": len(paths)}


def purges_seen(node: Nginx, prefix: str) -> Counter[str]:
    """Purge requests that reached nginx, per path, from its access log."""
    log = (node.dir / "logs" / "access.log").read_text()
    return Counter(re.findall(rf'"GET /purge({re.escape(prefix)}[^ ]*) HTTP', log))


@pytest.mark.postgres  # a thousand saves: the slowest of these, on one database
def test_saves_while_nginx_is_down_are_all_purged_once_it_is_back(
    make_rule, settings, nginx, workers
) -> None:
    use_backend(
        settings,
        f"{nginx.url}/purge",
        BASE=0.5,
        FACTOR=2.0,
        MAX=2.0,
        MAX_ATTEMPTS=100,
    )
    make_rule("down", "/down/\n/down/{slug}/")
    slugs = [f"p{t}-{i}" for t in range(100) for i in range(10)]
    pages = ["/down/", *(f"/down/{s}/" for s in slugs)]
    prime(nginx.url, pages)
    workers()

    nginx.stop()
    for t in range(100):
        with transaction.atomic():
            for i in range(10):
                Post.objects.create(title="T", slug=f"p{t}-{i}")
    assert Post.objects.count() == 1000
    wait_until(lambda: PurgeAttempt.objects.filter(status="failed").exists(), 30, "a send failed")
    nginx.start()

    def settled() -> bool:
        return not PurgeAttempt.objects.filter(status__in=["pending", "failed"]).exists()

    wait_until(settled, 180, "every attempt settled")
    # Every URL was purged while nginx still held it; a URL that several transactions
    # asked for (/down/) has more rows, and the later ones found nothing left to purge.
    ok = set(PurgeAttempt.objects.filter(status="ok").values_list("target", flat=True))
    assert ok == set(pages)
    assert not PurgeAttempt.objects.exclude(status__in=["ok", "not_cached"]).exists()
    assert cache_statuses(nginx.url, pages) == {"MISS": len(pages)}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the killed worker hung up on us: expected, not worth a traceback


class SlowProxy(LoopbackServer):
    """Forwards purges to nginx, each after ``delay`` seconds: a batch takes long enough
    to kill its worker in the middle of it. Records the paths it forwarded."""

    server_class = _QuietServer

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.forwarded: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                time.sleep(delay)
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=5)
                try:
                    conn.request("GET", self.path, headers={"Host": self.headers["Host"]})
                    answer = conn.getresponse()
                    body = answer.read()
                finally:
                    conn.close()
                proxy.forwarded.append(self.path)
                self.send_response(answer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)


@pytest.fixture
def slow_proxy(nginx) -> Iterator[SlowProxy]:
    proxy = SlowProxy(nginx.port, delay=0.05)
    yield proxy
    proxy.close()


def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_only_its_batch(
    make_rule, settings, nginx, slow_proxy, workers
) -> None:
    lease = 4.0
    use_backend(settings, f"{slow_proxy.url}/purge", LEASE=lease)
    make_rule("kill", "/kill/{slug}/")
    slugs = [f"k{t}-{i}" for t in range(12) for i in range(10)]
    pages = [f"/kill/{s}/" for s in slugs]
    prime(nginx.url, pages)
    for t in range(12):  # 12 tasks of 10 attempts
        with transaction.atomic():
            for i in range(10):
                Post.objects.create(title="T", slug=f"k{t}-{i}")
    targets = dict(PurgeAttempt.objects.values_list("pk", "target"))

    victim = workers(worker_id="victim")
    survivor = workers(worker_id="survivor")

    held: list[int] = []  # the ids of the task the victim is running

    def victim_is_mid_batch() -> bool:
        for task in DBTaskResult.objects.filter(status="RUNNING"):
            if "victim" not in task.worker_ids:
                continue
            held[:] = task.args_kwargs["args"][0]
            mine = {"/purge" + targets[pk] for pk in held}
            done = len(mine.intersection(slow_proxy.forwarded))
            # Sent some, with time left to send more (0.05 s each) before it records.
            return 1 <= done <= len(mine) - 3
        return False

    wait_until(victim_is_mid_batch, 60, "the victim is halfway through a batch")
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    killed_at = timezone.now()

    orphans = list(
        PurgeAttempt.objects.filter(pk__in=held, status="pending", claimed_until__gt=killed_at)
    )
    assert orphans, "the victim held no claimed rows when it died"
    orphan_paths = {a.target for a in orphans}
    # Within the lease nobody else may take them, not even roan_dispatch.
    assert PurgeAttempt.objects.claim([a.pk for a in orphans]) == []

    # The survivor runs every other task; the victim's task stays RUNNING in the queue.
    wait_until(
        lambda: DBTaskResult.objects.filter(status__in=["READY", "RUNNING"]).count() == 1,
        120,
        "the survivor ran every other task",
    )
    assert survivor.proc.poll() is None, survivor.output()
    # Once the lease is over, cron's roan_dispatch sends what the victim held.
    wait_until(
        lambda: timezone.now() > max(a.claimed_until for a in orphans),
        lease + 5,
        "the lease ended",
    )
    call_command("roan_dispatch", verbosity=0)

    assert not PurgeAttempt.objects.exclude(status__in=["ok", "not_cached"]).exists()
    sent = purges_seen(nginx, "/kill/")
    assert set(sent) == set(pages)  # every URL reached nginx
    doubled = {path for path, n in sent.items() if n > 1}
    assert all(sent[path] == 2 for path in doubled)
    # Only what the victim held when it died can have gone out twice.
    assert doubled <= orphan_paths
    assert sum(sent.values()) - len(pages) <= len(orphans)
    assert cache_statuses(nginx.url, pages) == {"MISS": len(pages)}


def test_senders_racing_for_the_same_backlog_send_each_attempt_once(
    make_rule, settings, nginx, workers
) -> None:
    """Three roan_dispatch runs at once, all wanting the same 300 attempts, in rounds of
    20: SKIP LOCKED and the lease give each attempt to exactly one of them."""
    use_backend(settings, f"{nginx.url}/purge")
    make_rule("race", "/race/{slug}/")
    pages = [f"/race/r{t}-{i}/" for t in range(6) for i in range(50)]
    prime(nginx.url, pages)
    for t in range(6):  # queued as tasks, but no db_worker runs: they stay pending
        with transaction.atomic():
            for i in range(50):
                Post.objects.create(title="T", slug=f"r{t}-{i}")
    assert PurgeAttempt.objects.filter(status="pending").count() == 300

    senders = [workers("--batch", "20", command="roan_dispatch") for _ in range(3)]
    for sender in senders:
        assert sender.wait(120) == 0, sender.output()

    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}
    assert purges_seen(nginx, "/race/") == Counter(dict.fromkeys(pages, 1))
    # Their own reports add up too (in trial runs they split it e.g. 80/120/100).
    handled = [int(re.search(r"(\d+) attempt", s.output()).group(1)) for s in senders]
    assert sum(handled) == 300


def test_roan_dispatch_killed_mid_backlog_loses_nothing_and_doubles_at_most_one_batch(
    make_rule, settings, nginx, slow_proxy, workers
) -> None:
    """roan_dispatch claims its next batch while it sends the current one, and records
    one half of a batch while it sends the other: killed in the middle, it leaves more
    than one batch claimed and at most two, and still at most one batch can reach the
    cache twice."""
    lease = 4.0
    batch = 20
    use_backend(settings, f"{slow_proxy.url}/purge", LEASE=lease)
    make_rule("drain", "/drain/{slug}/")
    pages = [f"/drain/d{i}/" for i in range(100)]
    prime(nginx.url, pages)
    with transaction.atomic():  # queued as a task, but no db_worker runs
        for i in range(100):
            Post.objects.create(title="T", slug=f"d{i}")
    assert PurgeAttempt.objects.filter(status="pending").count() == 100

    victim = workers("--batch", str(batch), command="roan_dispatch")
    # In its second batch (0.05 s a purge): the first is recorded, the third claimed.
    wait_until(
        lambda: batch + 3 <= len(slow_proxy.forwarded) <= 2 * batch - 5,
        60,
        "roan_dispatch is halfway through its second batch",
    )
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    killed_at = timezone.now()

    held = PurgeAttempt.objects.filter(status="pending", claimed_until__gt=killed_at)
    held_paths = set(held.values_list("target", flat=True))
    # The part it was sending (and the part being recorded, if any) and the batch
    # claimed next.
    assert batch < len(held_paths) <= 2 * batch
    assert PurgeAttempt.objects.claim(list(held.values_list("pk", flat=True))) == []

    wait_until(
        lambda: timezone.now() > killed_at + timezone.timedelta(seconds=lease),
        lease + 5,
        "the lease ended",
    )
    call_command("roan_dispatch", verbosity=0)

    # A purge sent twice finds nothing the second time: not_cached.
    assert not PurgeAttempt.objects.exclude(status__in=["ok", "not_cached"]).exists()
    sent = purges_seen(nginx, "/drain/")
    assert set(sent) == set(pages)
    doubled = {path for path, n in sent.items() if n > 1}
    assert doubled <= held_paths
    assert sum(sent.values()) - len(pages) <= batch
    assert cache_statuses(nginx.url, pages) == {"MISS": len(pages)}
