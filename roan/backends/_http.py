"""Shared transport for backends that speak HTTP to their caches.

One ``requests.Session`` per node and thread keeps connections alive; every call has a
connect and a read timeout; redirects are never followed; and every exception becomes a
``failed`` result with a short message written here, never the library's own text (which
can carry URLs with credentials).
"""

from __future__ import annotations

import dataclasses
import email.utils
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from django.core.exceptions import ImproperlyConfigured

from roan.backends.base import (
    FAILED,
    NOT_CACHED,
    OK,
    BaseBackend,
    PurgeRequest,
    PurgeResult,
    Timer,
    is_unreachable,
    not_sent,
    redact_url,
)

_RETRYABLE_4XX = {408, 425, 429}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def result_for_status(status: int, latency_ms: float, headers: Mapping[str, str]) -> PurgeResult:
    """Map a cache's HTTP answer onto a result (404 means there was nothing to purge)."""
    if 200 <= status < 300:
        return PurgeResult(OK, http_status=status, latency_ms=latency_ms)
    if status == 404:
        return PurgeResult(NOT_CACHED, http_status=status, latency_ms=latency_ms)
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status >= 500 or status in _RETRYABLE_4XX:
        return PurgeResult(
            FAILED,
            http_status=status,
            latency_ms=latency_ms,
            error=f"HTTP {status}",
            retry_after=retry_after,
        )
    hint = {
        401: "the cache wants credentials; check the backend's options",
        403: "the cache refused the purge; check its allow list",
        405: "the cache does not accept this method; check its purge configuration",
    }.get(status, "the cache rejected the request; check the backend's configuration")
    return PurgeResult(
        FAILED,
        http_status=status,
        latency_ms=latency_ms,
        error=f"HTTP {status}: {hint}",
        retryable=False,
    )


class HTTPTransport:
    """Thread-local sessions and error mapping for one backend."""

    def __init__(self, backend: BaseBackend) -> None:
        self.backend = backend
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxies from the environment for cache purges
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None
    ) -> PurgeResult:
        """Send one request; never raises for what the network or the cache does."""
        connect, read = self.backend.timeout
        with Timer() as timer:
            try:
                response = self.session().request(
                    method,
                    url,
                    headers=dict(headers or {}),
                    timeout=(connect, read),
                    allow_redirects=False,
                )
                response.close()
            except requests.exceptions.ConnectTimeout:
                error = f"timed out after {connect:g} s connecting"
            except requests.exceptions.ReadTimeout:
                error = f"read timed out after {read:g} s"
            except requests.exceptions.SSLError:
                error = "TLS error talking to the cache"
            except requests.exceptions.ConnectionError as exc:
                error = _connection_error(exc)
            except requests.exceptions.RequestException as exc:
                error = f"request failed ({type(exc).__name__})"
            else:
                error = ""
        if error:
            return PurgeResult(FAILED, latency_ms=timer.ms, error=error)
        return result_for_status(response.status_code, timer.ms, response.headers)

    def send_all(self, calls: Sequence[tuple[str, str, Mapping[str, str]]]) -> list[PurgeResult]:
        """Send ``(method, url, headers)`` calls in order, one result each.

        Once the node fails to answer (down, or slower than the timeout), the rest are
        not sent but failed at once: a dead node costs one timeout, not one per URL.
        """
        results: list[PurgeResult] = []
        for method, url, headers in calls:
            if results and is_unreachable(results[-1]):
                results.append(
                    dataclasses.replace(results[-1], latency_ms=None, error=not_sent(results[-1]))
                )
                continue
            results.append(self.send(method, url, headers=headers))
        return results

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()


def _connection_error(exc: Any) -> str:
    text = repr(exc)
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return "connection refused"
    if "Name or service not known" in text or "getaddrinfo" in text:
        return "host name not found"
    if "timed out" in text:
        return "timed out"
    if "reset" in text.lower():
        return "connection reset"
    return "connection failed"


def node_urls(backend: BaseBackend, options: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``LOCATION`` or ``NODES`` option: http(s) base URLs, without a trailing slash."""
    alias = backend.alias
    if "LOCATION" in options and "NODES" in options:
        raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}]: give LOCATION or NODES, not both.")
    if "LOCATION" in options:
        urls: Any = [options["LOCATION"]]
    elif "NODES" in options:
        urls = options["NODES"]
        if isinstance(urls, str) or not urls:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['NODES'] must be a non-empty list of URLs."
            )
    else:
        raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}] needs LOCATION or NODES.")
    cleaned = []
    for url in urls:
        parts = urlsplit(str(url))
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]: {redact_url(str(url))!r} is not an http(s) URL."
            )
        if parts.query or parts.fragment:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]: a node URL cannot have a query or fragment."
            )
        cleaned.append(str(url).rstrip("/"))
    if len(set(cleaned)) != len(cleaned):
        raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}]: the same node is listed twice.")
    return tuple(cleaned)


class HTTPNodesBackend(BaseBackend):
    """A backend that talks HTTP to each of its nodes (``LOCATION`` or ``NODES``)."""

    options_accepted: ClassVar[frozenset[str]] = frozenset({"LOCATION", "NODES"})

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        # Node names are shown and stored: never with credentials.
        self._by_name = {redact_url(url): url for url in node_urls(self, options)}
        self.transport = HTTPTransport(self)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def node_url(self, node: str) -> str:
        return self._by_name[node]

    def host_header(self, request: PurgeRequest) -> dict[str, str]:
        host = request.host or self.default_host()
        return {"Host": host} if host else {}

    def close(self) -> None:
        self.transport.close()
