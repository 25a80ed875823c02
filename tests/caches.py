"""Real nginx and Varnish on loopback, configured from the files in example/deploy/.

``start_nginx(origin_port)`` / ``start_varnish(origin_port)`` start a cache in front of
an origin (Django's live server, or any local HTTP server) on a free port, with every
file in a temp dir. ``.stop()`` and ``.start()`` take a node down and bring it back on
the same port, for fault tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "example" / "deploy"
PURGE_MODULE = Path("/usr/lib/nginx/modules/ngx_http_cache_purge_module.so")


def require(what: str, reason: str) -> None:
    """Skip for ``reason``, or fail when ROAN_TEST_REQUIRE asks for ``what`` (or "all")."""
    wanted = {w.strip() for w in os.environ.get("ROAN_TEST_REQUIRE", "").split(",")}
    if "all" in wanted or what in wanted:
        pytest.fail(f"{reason} (ROAN_TEST_REQUIRE={os.environ['ROAN_TEST_REQUIRE']})")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")  # type: ignore[index]
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class CacheServer:
    """One cache process; subclasses say how to configure and start it."""

    binary = ""

    def __init__(self, origin_port: int, *, allow: str = "127.0.0.1") -> None:
        self.origin_port = origin_port
        self.allow = allow
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"roan-{self.binary}-"))
        self.dir.chmod(0o755)  # nginx workers run as nobody
        self.proc: subprocess.Popen[bytes] | None = None
        self.configure()

    def configure(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> CacheServer:
        if self.proc is None:
            self.proc = subprocess.Popen(
                self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Nginx(CacheServer):
    binary = "nginx"

    def configure(self) -> None:
        for sub in ("logs", "temp", "cache"):
            (self.dir / sub).mkdir()
        conf = (DEPLOY / "nginx.conf").read_text()
        conf = conf.replace("@LISTEN@", f"127.0.0.1:{self.port}")
        conf = conf.replace("@ORIGIN@", f"127.0.0.1:{self.origin_port}")
        conf = conf.replace("@ALLOW@", self.allow)
        (self.dir / "nginx.conf").write_text(conf)

    def command(self) -> list[str]:
        return [
            "nginx",
            "-p", f"{self.dir}/",
            "-c", str(self.dir / "nginx.conf"),
            "-e", str(self.dir / "logs" / "error.log"),
            "-g", "daemon off;",
        ]  # fmt: skip


class Varnish(CacheServer):
    binary = "varnishd"

    def configure(self) -> None:
        self.admin_port = free_port()
        vcl = (DEPLOY / "varnish.vcl").read_text()
        vcl = vcl.replace("@ORIGIN_HOST@", "127.0.0.1").replace(
            "@ORIGIN_PORT@", str(self.origin_port)
        )
        (self.dir / "roan.vcl").write_text(vcl)

    def command(self) -> list[str]:
        return [
            "varnishd", "-F", "-j", "none",
            "-a", f"127.0.0.1:{self.port}",
            "-T", f"127.0.0.1:{self.admin_port}",
            "-n", str(self.dir / "work"),
            "-f", str(self.dir / "roan.vcl"),
            "-s", "malloc,32m",
            "-p", "default_grace=0",
        ]  # fmt: skip


def start_nginx(origin_port: int, *, allow: str = "127.0.0.1") -> Nginx:
    """nginx in front of ``origin_port``; only ``allow`` may purge."""
    if not shutil.which("nginx") or not PURGE_MODULE.exists():
        require("caches", "nginx with libnginx-mod-http-cache-purge is not installed")
    return Nginx(origin_port, allow=allow).start()  # type: ignore[return-value]


def start_varnish(origin_port: int) -> Varnish:
    if not shutil.which("varnishd"):
        require("caches", "varnish (with varnish-modules) is not installed")
    return Varnish(origin_port).start()  # type: ignore[return-value]


class Origin:
    """A tiny origin server: each path answers with how often it was fetched."""

    def __init__(self) -> None:
        counts: dict[tuple[str, str], int] = {}
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                key = (self.headers.get("Host", ""), self.path)
                with lock:
                    counts[key] = counts.get(key, 0) + 1
                    n = counts[key]
                body = f"{self.path} {n}\n".encode()
                section = self.path.strip("/").split("/")[0].split("?")[0] or "root"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "public, max-age=300")
                self.send_header("xkey", f"section-{section}")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.close()


@pytest.fixture(scope="session")
def nginx(origin: Origin) -> Iterator[Nginx]:
    node = start_nginx(origin.port)
    yield node
    node.close()


@pytest.fixture(scope="session")
def varnish(origin: Origin) -> Iterator[Varnish]:
    node = start_varnish(origin.port)
    yield node
    node.close()
