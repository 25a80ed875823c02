"""Real nginx and Varnish on loopback, configured from the files in roan/deploy/.

A pytest plugin (``pytest_plugins = ["tests.support.caches"]``):

- ``start_nginx(origin_port)`` / ``start_varnish(origin_port)`` start a cache in front of
  an origin (Django's live server, or any local HTTP server) on a free port, with every
  file in a temp dir: roan's own test kit (``roan.testing``), skipping (or failing, see
  ``require``) when the cache is not installed. ``.stop()`` and ``.start()`` take a node
  down and bring it back on the same port, for fault tests; ``.close()`` stops it and
  removes its files.
- fixtures ``cache_origin`` (a tiny in-process origin counting fetches per host and
  path; override it to put the caches in front of something else), ``nginx_cache`` and
  ``varnish_cache`` (session-scoped, in front of ``cache_origin``).
- fixture ``redis_url``: a redis-server of the test module's own, on loopback.
- ``require(what, reason)``: skip, or fail when ``ROAN_TEST_REQUIRE`` asks for ``what``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import pytest

from roan import testing
from roan.testing.caches import NGINX_PURGE_MODULE as PURGE_MODULE
from roan.testing.caches import CacheServer, Nginx, Varnish, free_port, stop_process

__all__ = ["PURGE_MODULE", "CacheServer", "Nginx", "Varnish", "free_port", "stop_process"]


def require(what: str, reason: str) -> None:
    """Skip the test for ``reason``; fail instead when ``ROAN_TEST_REQUIRE`` is ``all``
    or names ``what`` (comma or space separated), so CI cannot pass by skipping."""
    wanted = set(re.split(r"[\s,]+", os.environ.get("ROAN_TEST_REQUIRE", "").strip()))
    if "all" in wanted or what in wanted:
        pytest.fail(f"{reason} (ROAN_TEST_REQUIRE={os.environ['ROAN_TEST_REQUIRE']})")
    pytest.skip(reason)


class HasPort(Protocol):
    port: int


def _launch(server: CacheServer) -> None:
    server.launch()


def start_nginx(origin_port: int, *, purge_allow: str = "127.0.0.1") -> Nginx:
    """nginx (roan/deploy/nginx.conf) in front of ``origin_port``; only ``purge_allow``
    may purge."""
    try:
        return testing.start_nginx(origin_port, purge_allow=purge_allow)
    except testing.CacheUnavailable as exc:
        require("caches", str(exc))
        raise


def start_varnish(origin_port: int) -> Varnish:
    """Varnish (roan/deploy/varnish.vcl) in front of ``origin_port``."""
    try:
        return testing.start_varnish(origin_port)
    except testing.CacheUnavailable as exc:
        require("caches", str(exc))
        raise


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, served from a daemon thread.

    Subclasses build their request handler and call :meth:`serve` with it; ``close()``
    stops the server and its thread.
    """

    server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = self.server_class(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Origin(LoopbackServer):
    """A tiny origin: each (host, path) answers with how often it was fetched.

    Responses are public for 300 s and carry ``xkey: section-<first path segment>``.
    Paths under ``/slow/`` answer after ``slow_seconds``.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.slow_seconds = 0.0
        self.release = threading.Event()  # set at close so slow answers do not linger
        lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; without TCP_NODELAY each fetch
            # through a cache waits out a delayed ACK (40 ms).
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                key = (self.headers.get("Host", ""), self.path)
                with lock:
                    n = origin.counts[key] = origin.counts.get(key, 0) + 1
                if self.path.startswith("/slow/"):
                    origin.release.wait(origin.slow_seconds)
                body = f"{self.path} {n}\n".encode()
                section = self.path.strip("/").split("/")[0].split("?")[0] or "root"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "public, max-age=300")
                self.send_header("X-Origin-Count", str(n))
                self.send_header("xkey", f"section-{section}")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)

    def count(self, path: str, host: str = "") -> int:
        """How often the origin served ``path`` (for ``host``, or summed over hosts)."""
        return sum(n for (h, p), n in self.counts.items() if p == path and host in ("", h))

    def close(self) -> None:
        self.release.set()
        super().close()


@contextlib.contextmanager
def own_nginx() -> Iterator[Nginx]:
    """nginx of its own before an origin of its own, for tests that stop it or read its
    access log; both stopped at the end."""
    origin = Origin()
    try:
        node = start_nginx(origin.port)
        yield node
        node.close()
    finally:
        origin.close()


@pytest.fixture(scope="session")
def cache_origin() -> Iterator[HasPort]:
    """What ``nginx_cache`` and ``varnish_cache`` sit in front of; anything with a
    ``port`` (override this fixture to use another origin)."""
    server = Origin()
    yield server
    server.close()


@pytest.fixture(scope="session")
def nginx_cache(cache_origin: HasPort) -> Iterator[Nginx]:
    node = start_nginx(cache_origin.port)
    yield node
    node.close()


@pytest.fixture(scope="module")
def nginx_site(live_server: Any) -> Iterator[Nginx]:
    """nginx (``example/deploy/nginx.conf``) in front of Django's live server: pages are
    rendered by the suite's own URLconf and settings, as in production. One per module,
    so that no module sees pages another one cached."""
    node = start_nginx(live_server.thread.port)
    yield node
    node.close()


def serve_tagged_site(settings: Any, node: Nginx, **backend: Any) -> Nginx:
    """Set ``settings`` for the tag test site (``tests.support.tagged_site``) behind
    ``node``, purged through its purge location by a backend named ``nginx`` (with the
    options in ``backend``, such as ``HOSTS``)."""
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{node.url}/purge",
            **backend,
        }
    }
    return node


@pytest.fixture(scope="session")
def varnish_cache(cache_origin: HasPort) -> Iterator[Varnish]:
    node = start_varnish(cache_origin.port)
    yield node
    node.close()


class FakeCache(LoopbackServer):
    """A scripted HTTP server standing in for a cache or a purge API.

    It records every request as ``(method, path, headers)`` and answers ``status`` with
    ``headers``, after ``delay`` seconds when set; the statuses in ``script`` come first,
    one a request.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.status = 200
        self.script: list[int] = []
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self) -> None:
                fake.calls.append((self.command, self.path, dict(self.headers)))
                if fake.delay:
                    fake.release.wait(fake.delay)
                self.send_response(fake.script.pop(0) if fake.script else fake.status)
                for name, value in fake.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PURGE = do_BAN = do_DELETE = answer

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)

    def close(self) -> None:
        self.release.set()
        super().close()


@pytest.fixture
def fake_cache() -> Iterator[FakeCache]:
    server = FakeCache()
    yield server
    server.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server of this module's own on a free loopback port (no disk): its URL."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        require("caches", "redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        for _ in range(100):
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not answer")
        yield url
    finally:
        client.close()
        stop_process(proc)
