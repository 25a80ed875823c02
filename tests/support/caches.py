"""Real nginx and Varnish on loopback, configured from the files in example/deploy/.

A pytest plugin (``pytest_plugins = ["tests.support.caches"]``):

- ``start_nginx(origin_port)`` / ``start_varnish(origin_port)`` start a cache in front of
  an origin (Django's live server, or any local HTTP server) on a free port, with every
  file in a temp dir. ``.stop()`` and ``.start()`` take a node down and bring it back on
  the same port, for fault tests; ``.close()`` stops it and removes its files.
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
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "example" / "deploy"
PURGE_MODULE = Path("/usr/lib/nginx/modules/ngx_http_cache_purge_module.so")


def require(what: str, reason: str) -> None:
    """Skip the test for ``reason``; fail instead when ``ROAN_TEST_REQUIRE`` is ``all``
    or names ``what`` (comma or space separated), so CI cannot pass by skipping."""
    wanted = set(re.split(r"[\s,]+", os.environ.get("ROAN_TEST_REQUIRE", "").strip()))
    if "all" in wanted or what in wanted:
        pytest.fail(f"{reason} (ROAN_TEST_REQUIRE={os.environ['ROAN_TEST_REQUIRE']})")
    pytest.skip(reason)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this suite started (by its own PID): TERM, then KILL after 10 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HasPort(Protocol):
    port: int


class CacheServer:
    """One cache process on a fixed loopback port; subclasses say how to run it."""

    name = ""

    def __init__(self, origin_port: int) -> None:
        self.origin_port = origin_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"roan-{self.name}-"))
        self.dir.chmod(0o755)  # nginx workers run as an unprivileged user (nobody)
        self.log = self.dir / "output.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def configure(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Start (again) on the same port; returns once the port accepts connections."""
        if self.proc is not None:
            return
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"{self.name} exited at start:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} does not listen on {self.port}:\n{self.output()}")

    def stop(self) -> None:
        """Stop the process (by its own PID) and wait for it."""
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


class Nginx(CacheServer):
    name = "nginx"

    def __init__(self, origin_port: int, *, purge_allow: str = "127.0.0.1") -> None:
        self.purge_allow = purge_allow
        super().__init__(origin_port)

    def configure(self) -> None:
        for sub in ("logs", "temp", "cache"):
            (self.dir / sub).mkdir(exist_ok=True)
        conf = (DEPLOY / "nginx.conf").read_text()
        for placeholder, value in (
            ("@LISTEN@", f"127.0.0.1:{self.port}"),
            ("@ORIGIN@", f"127.0.0.1:{self.origin_port}"),
            ("@ALLOW@", self.purge_allow),
        ):
            assert placeholder in conf, f"{placeholder} missing from example/deploy/nginx.conf"
            conf = conf.replace(placeholder, value)
        (self.dir / "nginx.conf").write_text(conf)

    def command(self) -> list[str]:
        return [
            "nginx",
            "-p", f"{self.dir}/",
            "-c", str(self.dir / "nginx.conf"),
            "-e", str(self.dir / "logs" / "error.log"),
            "-g", "daemon off;",
        ]  # fmt: skip

    def output(self) -> str:
        error_log = self.dir / "logs" / "error.log"
        text = error_log.read_text(errors="replace") if error_log.exists() else ""
        return super().output() + text[-2000:]


class Varnish(CacheServer):
    name = "varnish"

    def configure(self) -> None:
        self.admin_port = free_port()
        vcl = (DEPLOY / "varnish.vcl").read_text()
        for placeholder, value in (
            ("@ORIGIN_HOST@", "127.0.0.1"),
            ("@ORIGIN_PORT@", str(self.origin_port)),
        ):
            assert placeholder in vcl, f"{placeholder} missing from example/deploy/varnish.vcl"
            vcl = vcl.replace(placeholder, value)
        (self.dir / "roan.vcl").write_text(vcl)

    def command(self) -> list[str]:
        return [
            "varnishd", "-F",
            "-j", "none",  # no privilege separation: its files live in our temp dir
            "-a", f"127.0.0.1:{self.port}",
            "-T", f"127.0.0.1:{self.admin_port}",
            "-n", str(self.dir / "work"),
            "-f", str(self.dir / "roan.vcl"),
            "-s", "malloc,32m",
            "-p", "default_grace=0",  # a purged page is gone, not served stale
            *varnishd_params(),
        ]  # fmt: skip


def varnishd_params() -> list[str]:
    """``-p name=value`` for each line of example/deploy/varnishd.params."""
    found: list[str] = []
    for line in (DEPLOY / "varnishd.params").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            found += ["-p", line]
    return found


def _launch(server: CacheServer) -> None:
    try:
        server.configure()
        server.start()
    except BaseException:
        server.close()
        raise


def start_nginx(origin_port: int, *, purge_allow: str = "127.0.0.1") -> Nginx:
    """nginx (example/deploy/nginx.conf) in front of ``origin_port``; only
    ``purge_allow`` may purge."""
    if not shutil.which("nginx") or not PURGE_MODULE.exists():
        require("caches", "nginx with libnginx-mod-http-cache-purge is not installed")
    server = Nginx(origin_port, purge_allow=purge_allow)
    _launch(server)
    return server


def start_varnish(origin_port: int) -> Varnish:
    """Varnish (example/deploy/varnish.vcl) in front of ``origin_port``."""
    if not shutil.which("varnishd"):
        require("caches", "varnish is not installed")
    if not (shutil.which("cc") or shutil.which("gcc")):
        require("caches", "varnishd needs a C compiler to load a VCL")
    server = Varnish(origin_port)
    try:
        _launch(server)
    except RuntimeError as exc:
        if "Could not find VMOD" in str(exc):
            require("caches", "varnish-modules (the xkey vmod) is not installed")
        raise
    return server


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


@pytest.fixture(scope="session")
def varnish_cache(cache_origin: HasPort) -> Iterator[Varnish]:
    node = start_varnish(cache_origin.port)
    yield node
    node.close()


class FakeCache(LoopbackServer):
    """A scripted HTTP server standing in for a cache or a purge API.

    It records every request as ``(method, path, headers)`` and answers ``status`` with
    ``headers``, after ``delay`` seconds when set.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.status = 200
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
                self.send_response(fake.status)
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
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
