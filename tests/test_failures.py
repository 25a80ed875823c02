"""A cache that is down, too slow or broken never breaks or stalls the editor's save."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction

from roan.models import PurgeAttempt
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = (0.5, 1.0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: a cache that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


class StatusServer:
    """Answers every request with ``status`` and records the paths it was asked for."""

    def __init__(self) -> None:
        self.status = 500
        self.seen: list[str] = []
        self.port = 0


@pytest.fixture
def status_server() -> Iterator[StatusServer]:
    state = StatusServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.seen.append(self.path)
            body = b"upstream exploded" if state.status >= 500 else b"purged"
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.port = int(server.server_address[1])
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def use_nginx_at(settings, port: int) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"http://127.0.0.1:{port}/purge",
            "TIMEOUT": TIMEOUT,
        }
    }


def timed_save(**fields: str) -> float:
    start = time.monotonic()
    with transaction.atomic():
        Post.objects.create(**fields)
    return time.monotonic() - start


def test_a_cache_that_is_down(post_rule, settings) -> None:
    use_nginx_at(settings, closed_port())
    elapsed = timed_save(title="T", slug="down")
    assert elapsed < sum(TIMEOUT)
    rows = PurgeAttempt.objects.filter(trigger="save")
    assert {r.status for r in rows} == {"failed"}
    assert all("refused" in r.error for r in rows)
    assert all(r.next_attempt_at is not None for r in rows)


def test_a_cache_slower_than_the_timeout(post_rule, settings, silent_server) -> None:
    use_nginx_at(settings, silent_server)
    elapsed = timed_save(title="T", slug="slow")
    # Two URLs to purge, but a node that timed out is not asked again in this round.
    assert elapsed < TIMEOUT[1] + 1.0
    rows = PurgeAttempt.objects.filter(trigger="save").order_by("id")
    assert {r.status for r in rows} == {"failed"}
    assert any("timed out" in r.error for r in rows)


def test_a_cache_answering_500(post_rule, settings, status_server) -> None:
    use_nginx_at(settings, status_server.port)
    timed_save(title="T", slug="broken")
    assert sorted(status_server.seen) == ["/purge/posts/", "/purge/posts/broken/"]
    row = PurgeAttempt.objects.get(target="/posts/broken/")
    assert (row.status, row.http_status) == ("failed", 500)
    assert "500" in row.error
    assert row.next_attempt_at is not None


def test_roan_dispatch_resends_what_failed_once_the_cache_is_back(
    post_rule, settings, status_server
) -> None:
    from django.core.management import call_command
    from django.utils import timezone

    use_nginx_at(settings, status_server.port)
    timed_save(title="T", slug="later")
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"failed"}
    call_command("roan_dispatch", verbosity=0)  # nothing is due yet: backoff
    assert set(PurgeAttempt.objects.values_list("tries", flat=True)) == {1}

    status_server.status = 200  # the cache is back
    PurgeAttempt.objects.update(next_attempt_at=timezone.now())  # and the backoff has passed
    status_server.seen.clear()
    call_command("roan_dispatch", verbosity=0)
    assert sorted(status_server.seen) == ["/purge/posts/", "/purge/posts/later/"]
    assert set(PurgeAttempt.objects.values_list("status", "tries")) == {("ok", 2)}
