"""A real nginx or Varnish on loopback for a project's own cache tests.

Public through :mod:`roan.testing` (see docs/howto/testing-your-cache.md). The caches run
the configurations roan ships (``roan/deploy/nginx.conf``, ``roan/deploy/varnish.vcl``,
also in the source tree's ``example/deploy/``), each process with its files in a temporary
directory, on a free loopback port, in front of any HTTP server (Django's live server).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import unittest
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
from django.test import Client, LiveServerTestCase, override_settings

#: The configurations roan ships, which these servers run.
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
#: Debian's ngx_cache_purge module (``libnginx-mod-http-cache-purge``), which the nginx
#: configuration loads.
NGINX_PURGE_MODULE = Path("/usr/lib/nginx/modules/ngx_http_cache_purge_module.so")
#: Seconds a cache may take to listen.
START_SECONDS = 15.0


class CacheUnavailable(Exception):
    """The cache cannot run here (not installed); a test usually skips on it."""


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc`` (by its own PID): TERM, then KILL after 10 seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class CacheServer:
    """One cache process on a loopback port of its own, in front of ``origin_port``.

    ``start()`` returns once the port accepts connections; ``stop()`` and ``start()``
    take it down and bring it back on the same port; ``close()`` stops it and removes
    its files. Also a context manager (started on entry, closed on exit).
    """

    name = ""
    #: The response header that says whether the cache answered from its copy.
    status_header = ""

    def __init__(self, origin_port: int, *, port: int | None = None) -> None:
        self.origin_port = origin_port
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"roan-{self.name}-"))
        self.dir.chmod(0o755)  # nginx's workers run as an unprivileged user
        self.log = self.dir / "output.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- what subclasses say -------------------------------------------------------------

    def configure(self) -> None:
        """Write the configuration into ``self.dir``."""
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def backend(self, **options: Any) -> dict[str, Any]:
        """A ``ROAN_BACKENDS`` entry that purges this cache (``options`` added)."""
        raise NotImplementedError

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        if self.proc is not None:
            return
        # The command is a fixed program name with our own temp paths and ports.
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                self.command(), stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_SECONDS
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
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def output(self) -> str:
        """The end of what the process printed, for an error message."""
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def __enter__(self) -> CacheServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def launch(self) -> None:
        """Configure and start; on failure, remove the files."""
        try:
            self.configure()
            self.start()
        except BaseException:
            self.close()
            raise


def _fill(text: str, values: dict[str, str], what: str) -> str:
    for placeholder, value in values.items():
        if placeholder not in text:
            raise RuntimeError(f"{placeholder} is missing from {what}")
        text = text.replace(placeholder, value)
    return text


class Nginx(CacheServer):
    """nginx with the purge module, running ``roan/deploy/nginx.conf``: pages cached by
    ``$scheme://$host$request_uri``, ``GET /purge/<path>`` purges (from ``purge_allow``
    only), ``X-Cache-Status`` says ``HIT`` or ``MISS``."""

    name = "nginx"
    status_header = "X-Cache-Status"

    def __init__(
        self,
        origin_port: int,
        *,
        purge_allow: str = "127.0.0.1",
        config: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.purge_allow = purge_allow
        self.config = config or DEPLOY / "nginx.conf"
        super().__init__(origin_port, port=port)

    def configure(self) -> None:
        for sub in ("logs", "temp", "cache"):
            (self.dir / sub).mkdir(exist_ok=True)
        values = {
            "@LISTEN@": f"127.0.0.1:{self.port}",
            "@ORIGIN@": f"127.0.0.1:{self.origin_port}",
            "@ALLOW@": self.purge_allow,
        }
        text = _fill(self.config.read_text(), values, str(self.config))
        (self.dir / "nginx.conf").write_text(text)

    def command(self) -> list[str]:
        return [
            "nginx",
            "-p", f"{self.dir}/",
            "-c", str(self.dir / "nginx.conf"),
            "-e", str(self.dir / "logs" / "error.log"),
            "-g", "daemon off;",
        ]  # fmt: skip

    def backend(self, **options: Any) -> dict[str, Any]:
        # nginx passes the Host without its port: pages are cached under 127.0.0.1.
        return {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{self.url}/purge",
            "HOSTS": ["127.0.0.1"],
            **options,
        }

    def output(self) -> str:
        error_log = self.dir / "logs" / "error.log"
        text = error_log.read_text(errors="replace") if error_log.exists() else ""
        return super().output() + text[-2000:]


class Varnish(CacheServer):
    """Varnish with varnish-modules' xkey, running ``roan/deploy/varnish.vcl``: PURGE,
    BAN and xkey purges from localhost, ``X-Cache`` says ``HIT`` or ``MISS``, no grace (a
    purged page is gone, not served stale)."""

    name = "varnish"
    status_header = "X-Cache"

    def __init__(
        self, origin_port: int, *, config: Path | None = None, port: int | None = None
    ) -> None:
        self.config = config or DEPLOY / "varnish.vcl"
        super().__init__(origin_port, port=port)

    def configure(self) -> None:
        self.admin_port = free_port()
        values = {"@ORIGIN_HOST@": "127.0.0.1", "@ORIGIN_PORT@": str(self.origin_port)}
        text = _fill(self.config.read_text(), values, str(self.config))
        (self.dir / "roan.vcl").write_text(text)

    def command(self) -> list[str]:
        return [
            "varnishd", "-F",
            "-j", "none",  # no privilege separation: its files are in a temp dir
            "-a", f"127.0.0.1:{self.port}",
            "-T", f"127.0.0.1:{self.admin_port}",
            "-n", str(self.dir / "work"),
            "-f", str(self.dir / "roan.vcl"),
            "-s", "malloc,32m",
            "-p", "default_grace=0",
            *varnishd_params(),
        ]  # fmt: skip

    def backend(self, **options: Any) -> dict[str, Any]:
        # Varnish keeps the Host as sent, port included.
        return {
            "BACKEND": "roan.backends.varnish.VarnishBackend",
            "NODES": [self.url],
            "HOSTS": [f"127.0.0.1:{self.port}"],
            **options,
        }


def varnishd_params(path: Path | None = None) -> list[str]:
    """``-p name=value`` for each line of the shipped ``varnishd.params`` (buffer sizes set
    explicitly, so that a change of Varnish's defaults cannot surprise)."""
    found: list[str] = []
    for line in (path or DEPLOY / "varnishd.params").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            found += ["-p", line]
    return found


def start_nginx(origin_port: int, **options: Any) -> Nginx:
    """A started :class:`Nginx` in front of ``origin_port``; ``close()`` it when done.
    Raises :class:`CacheUnavailable` when nginx or its purge module is not installed."""
    if not shutil.which("nginx") or not NGINX_PURGE_MODULE.exists():
        raise CacheUnavailable("nginx with libnginx-mod-http-cache-purge is not installed")
    server = Nginx(origin_port, **options)
    server.launch()
    return server


def start_varnish(origin_port: int, **options: Any) -> Varnish:
    """A started :class:`Varnish` in front of ``origin_port``; ``close()`` it when done.
    Raises :class:`CacheUnavailable` when Varnish, a C compiler (to load a VCL) or the
    xkey module is missing."""
    if not shutil.which("varnishd"):
        raise CacheUnavailable("varnish is not installed")
    if not (shutil.which("cc") or shutil.which("gcc")):
        raise CacheUnavailable("varnishd needs a C compiler to load a VCL")
    server = Varnish(origin_port, **options)
    try:
        server.launch()
    except RuntimeError as exc:
        if "Could not find VMOD" in str(exc):
            raise CacheUnavailable("varnish-modules (the xkey vmod) is not installed") from exc
        raise
    return server


# -- assertions --------------------------------------------------------------------------

_STATUS_HEADERS = ("X-Cache-Status", "X-Cache")


def cache_status(response: requests.Response) -> str:
    """``HIT``, ``MISS``... as the cache said in ``X-Cache-Status`` (nginx) or
    ``X-Cache`` (Varnish); ``""`` when it said nothing."""
    for name in _STATUS_HEADERS:
        if name in response.headers:
            return response.headers[name].upper()
    return ""


def _fetch(url: str, host: str | None, timeout: float) -> requests.Response:
    headers = {"Host": host} if host else {}
    return requests.get(url, headers=headers, timeout=timeout, allow_redirects=False)


def assert_hit(url: str, *, host: str | None = None, timeout: float = 10.0) -> requests.Response:
    """Fetch ``url`` (with ``host`` in the ``Host`` header) and assert the cache answered
    from its copy. Returns the response."""
    response = _fetch(url, host, timeout)
    status = cache_status(response)
    assert status == "HIT", f"{url}: expected a cache HIT, the cache said {status or 'nothing'}"
    return response


def assert_miss(url: str, *, host: str | None = None, timeout: float = 10.0) -> requests.Response:
    """Fetch ``url`` and assert the cache did not answer from a copy (``MISS``,
    ``EXPIRED``, ``BYPASS``...): after a purge, the page came from the origin."""
    response = _fetch(url, host, timeout)
    status = cache_status(response)
    assert status and status not in {"HIT", "STALE", "UPDATING", "REVALIDATED"}, (
        f"{url}: expected a cache MISS, the cache said {status or 'nothing'}"
    )
    return response


def assert_fresh(
    cache_url: str,
    paths: Sequence[str],
    *,
    origin: str | None = None,
    host: str = "127.0.0.1",
    ignore: Sequence[str] = (),
    timeout: float = 10.0,
) -> None:
    """Assert that every one of ``paths`` fetched through the cache at ``cache_url`` is
    what the site renders now: compared with ``origin`` (an uncached server, such as
    Django's live server) or, without one, with the page rendered in this process by
    Django's test client. CSRF tokens and the regular expressions of ``ignore`` (as
    ``ROAN_AUDIT_IGNORE``) are left out of the comparison. Run it after a change has
    committed (in a ``TestCase``, inside ``captureOnCommitCallbacks(execute=True)``).
    """
    from roan import audit  # the models: not at import, before settings are read

    patterns = audit.ignored_patterns(ignore)
    limits = (min(timeout, 5.0), timeout)
    stale = []
    client = Client(raise_request_exception=False)
    with requests.Session() as session:
        for path in paths:
            page = audit.Page("", host, path)
            cached = audit.fetch_http(session, cache_url.rstrip("/"), page, limits)
            if origin:
                fresh = audit.fetch_http(session, origin.rstrip("/"), page, limits)
            else:
                fresh = audit.render_here(page, cache_url.startswith("https:"), client)
            if audit.normalized(cached, patterns) != audit.normalized(fresh, patterns):
                stale.append(f"{path} [{cached[2] or '?'}: {cached[0]}, origin {fresh[0]}]")
    assert not stale, "stale in the cache: " + ", ".join(stale)


# -- a test case ---------------------------------------------------------------------------


class CacheTestCase(LiveServerTestCase):
    """Django's live server behind a real cache, with roan purging that cache.

    ``cache_server`` picks ``"nginx"`` (default) or ``"varnish"``; the class's tests
    skip when it is not installed. ``self.cache`` is the running :class:`CacheServer`;
    ``ROAN_BACKENDS`` names it alone (alias ``"cache"``; add options with
    ``cache_backend_options``). ``assertHit``, ``assertMiss`` and ``assertFresh`` take
    paths on the cache.
    """

    cache_server = "nginx"
    cache_backend_options: dict[str, Any] = {}  # read, never changed
    cache: CacheServer

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        starts = {"nginx": start_nginx, "varnish": start_varnish}
        try:
            cls.cache = starts[cls.cache_server](cls.server_thread.port)
        except CacheUnavailable as exc:
            super().tearDownClass()
            raise unittest.SkipTest(str(exc)) from exc
        cls.addClassCleanup(cls.cache.close)
        backends = {"cache": cls.cache.backend(**cls.cache_backend_options)}
        purging = override_settings(ROAN_BACKENDS=backends)
        purging.enable()
        cls.addClassCleanup(purging.disable)

    def cache_url(self, path: str) -> str:
        return self.cache.url + path

    def assertHit(self, path: str) -> requests.Response:
        return assert_hit(self.cache_url(path))

    def assertMiss(self, path: str) -> requests.Response:
        return assert_miss(self.cache_url(path))

    def assertFresh(self, paths: Sequence[str], *, ignore: Sequence[str] = ()) -> None:
        # Varnish keeps the port in the Host it caches under; nginx drops it.
        host = f"127.0.0.1:{self.cache.port}" if self.cache_server == "varnish" else "127.0.0.1"
        assert_fresh(self.cache.url, paths, origin=self.live_server_url, host=host, ignore=ignore)
