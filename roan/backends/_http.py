"""What backends that speak HTTP share: answer mapping, node URLs, and the requests
transport used by ``HTTPBackend`` (nginx and Varnish use ``_pipelined`` instead).

One ``requests.Session`` per node and thread keeps connections alive; every call has a
connect and a read timeout; redirects are never followed; and every exception becomes a
``failed`` result with a short message written here, never the library's own text (which
can carry URLs with credentials). Nothing here logs a URL or a header: log lines name the
backend, the node and the purge target only.
"""

from __future__ import annotations

import contextvars
import dataclasses
import email.utils
import http.client
import io
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
from django.core.exceptions import ImproperlyConfigured

from roan.backends.base import (
    FAILED,
    NOT_CACHED,
    OK,
    BaseBackend,
    PurgeResult,
    Timer,
    is_unreachable,
    not_sent,
    redact_url,
)

logger = logging.getLogger(__name__)

#: 4xx answers that mean "later", not "never".
_RETRYABLE_4XX = frozenset({408, 425, 429})

# 1 to 15 digits: beyond that a number of seconds means "never", and int() of thousands
# of digits is slow (Python caps it at 4300).
_DELTA_SECONDS = re.compile(r"[0-9]{1,15}")

_HINTS = {
    400: "the cache did not understand the purge; check its purge configuration",
    401: "the cache wants credentials; check the backend's options",
    403: "the cache refused the purge; check its allow list",
    405: "the cache does not accept this method; check its purge configuration",
}


class Call(NamedTuple):
    """One HTTP request to send; ``target`` is what log lines show instead of the URL."""

    method: str
    url: str
    headers: Mapping[str, str]
    target: str
    #: The request body (a CDN API's JSON), or ``None`` for none.
    body: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """What came back for one :class:`Call`: an HTTP answer, or why there was none.

    ``status`` is ``None`` when nothing usable came back (``error`` says why); ``body``
    holds at most ``MAX_BODY`` bytes of the answer's body.
    """

    status: int | None
    headers: Mapping[str, str]
    body: bytes
    latency_ms: float
    error: str = ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Delta-seconds are ASCII digits only (RFC 9110, section 10.2.3; ``str.isdigit()``
    also takes "²"). A value too long to mean anything, or unparseable, is ignored; a
    long wait is capped by the sender (``ROAN_RETRY["MAX"]``), not here.
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are always GMT
            return None
        seconds = when.timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, round(seconds, 3)) if math.isfinite(seconds) else None


def result_for_status(status: int, latency_ms: float, headers: Mapping[str, str]) -> PurgeResult:
    """Map a cache's HTTP answer onto a result (404 means there was nothing to purge)."""
    if 200 <= status < 300:
        return PurgeResult(OK, http_status=status, latency_ms=latency_ms)
    if status == 404:
        # nginx's cache purge module and Varnish answer 404 for a key they do not hold:
        # the page is not stale, so this is not a failure.
        return PurgeResult(NOT_CACHED, http_status=status, latency_ms=latency_ms)
    if status >= 500 or status in _RETRYABLE_4XX:
        return PurgeResult(
            FAILED,
            http_status=status,
            latency_ms=latency_ms,
            error=f"HTTP {status}",
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    if 300 <= status < 400:
        hint = "the cache answered with a redirect, which roan does not follow; check the URL"
    else:
        hint = _HINTS.get(status, "the cache rejected the purge; check the backend's options")
    return PurgeResult(
        FAILED,
        http_status=status,
        latency_ms=latency_ms,
        error=f"HTTP {status}: {hint}",
        retryable=False,
    )


#: Turns an HTTP answer (status, latency in ms, headers) into a result.
Interpreter = Callable[[int, float, Mapping[str, str]], PurgeResult]


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (requests -> urllib3 -> socket), without cycles."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        nested.extend(current.args)
        todo.extend(e for e in nested if isinstance(e, BaseException))


def describe_connection_error(exc: BaseException, read_timeout: float) -> str:
    """A short, credential-free description of why a connection failed."""
    for cause in _causes(exc):
        if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
            # requests raises this as a ConnectionError when the body is slow to come.
            return f"read timed out after {read_timeout:.1f} s"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, http.client.RemoteDisconnected):  # before its base class
            return "the cache closed the connection without answering"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the cache"
        if isinstance(cause, TimeoutError):
            return "timed out"
    return "connection failed"


#: Body bytes ``HTTPTransport`` reads at most per answer; more and the connection is
#: dropped. No purge answer is needed beyond its status and headers.
MAX_BODY = 65536


class _Budget:
    """The answer being read on this thread: its deadline, and how reading it went."""

    __slots__ = ("deadline", "late", "progress", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        #: Some byte of the answer arrived (a timeout then means "too slow", not "silent").
        self.progress = False
        #: The deadline passed while the answer was still coming.
        self.late = False


#: Set while this thread sends one of roan's requests; read by the answer's reader (its
#: deadline) and by the urllib3 log filter (the request is roan's).
_current: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "roan_http_call", default=None
)


class _DeadlineReader(io.RawIOBase):
    """Reads a socket so that an answer as a whole, not each ``recv()``, has a deadline:
    http.client and urllib3 only time out a read that gets no byte at all."""

    def __init__(self, sock: socket.socket, budget: _Budget) -> None:
        super().__init__()
        self.sock = sock
        self.budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        budget = self.budget
        remaining = budget.deadline - time.monotonic()
        if remaining <= 0:
            budget.late = budget.progress
            raise TimeoutError("the answer's deadline passed")
        timeout = self.sock.gettimeout()
        self.sock.settimeout(remaining if timeout is None else min(timeout, remaining))
        try:
            count = self.sock.recv_into(buffer)
        except TimeoutError:
            budget.late = budget.progress
            raise
        finally:
            self.sock.settimeout(timeout)
        budget.progress = budget.progress or count > 0
        return count


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, reading through a :class:`_DeadlineReader` when roan sends."""

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        budget = _current.get()
        if budget is not None and hasattr(sock, "recv_into"):
            # The deadline counts from here: the request has been written.
            budget.deadline = time.monotonic() + budget.seconds
            self.fp.close()
            self.fp = io.BufferedReader(_DeadlineReader(sock, budget))


class _DeadlineConnection(urllib3.connection.HTTPConnection):
    response_class = _DeadlineResponse


class _DeadlineTLSConnection(urllib3.connection.HTTPSConnection):
    response_class = _DeadlineResponse


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _DeadlineTLSConnection


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections whose answers have a deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        # PoolManager picks a pool class per scheme from this (urllib3's documented
        # extension point); the pools build _Deadline*Connection.
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}


# A path and query in a log line ("POST /purge?token=... HTTP/1.1", "url='/x?y'"), not
# the "//" of "http://host".
_LOGGED_PATH = re.compile(r"""(?<![\w/:.-])/[^\s"']*""")


class _RedactRoanRequests(logging.Filter):
    """On urllib3's loggers: a record written while this thread sends a roan request
    loses every URL path and query, which may hold a token (webhook URLs often do).

    Thread-safe without a lock: the context variable is this thread's own, and each
    record is built for one log call. Other requests, in other threads or outside
    roan's calls, are logged as urllib3 writes them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _current.get() is not None:
            record.msg = _LOGGED_PATH.sub("/[path hidden by roan]", record.getMessage())
            record.args = None
        return True


_LOG_FILTER = _RedactRoanRequests()
# urllib3's modules that log request URLs: connectionpool (one DEBUG line per request),
# connection (header parsing warnings) and util.retry (retry lines).
_URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry")
_log_filter_lock = threading.Lock()


def _install_log_filter() -> None:
    with _log_filter_lock:
        for name in _URLLIB3_LOGGERS:
            log = logging.getLogger(name)
            if _LOG_FILTER not in log.filters:
                log.addFilter(_LOG_FILTER)


class HTTPTransport:
    """Thread-local sessions (one per node) and error mapping for one backend.

    Every answer has a deadline: status line, headers and the first ``MAX_BODY`` bytes
    of body must arrive within the read timeout of the request being written (the
    timeout of requests and urllib3 alone holds per ``recv()``, so a cache sending a
    byte at a time could hold a sender for ever). Bodies are streamed, never buffered:
    past ``MAX_BODY`` bytes the connection is dropped.
    """

    def __init__(self, backend: BaseBackend, interpret: Interpreter = result_for_status) -> None:
        self.backend = backend
        self.interpret = interpret
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        _install_log_filter()

    def session(self, node: str) -> requests.Session:
        """This thread's session for ``node`` (sessions are not thread-safe)."""
        sessions: dict[str, requests.Session] | None = getattr(self._local, "sessions", None)
        if sessions is None:
            sessions = self._local.sessions = {}
        session = sessions.get(node)
        if session is None:
            session = requests.Session()
            # No proxies or .netrc credentials from the environment for cache purges.
            session.trust_env = False
            session.mount("http://", _Adapter())
            session.mount("https://", _Adapter())
            sessions[node] = session
            with self._lock:
                self._sessions.append(session)
        return session

    def exchange(self, node: str, call: Call) -> Reply:
        """Send one request and keep its answer's status, headers and (bounded) body.

        Never raises for what the network or the server does.
        """
        connect, read = self.backend.timeout
        response: requests.Response | None = None
        body = b""
        error = ""
        budget = _Budget(read)
        token = _current.set(budget)
        with Timer() as timer:
            try:
                response = self.session(node).request(
                    call.method,
                    call.url,
                    headers=dict(call.headers),
                    data=call.body,
                    timeout=(connect, read),
                    allow_redirects=False,
                    stream=True,
                )
                try:
                    # Read what a purge answer may hold; a longer body is left unread,
                    # and close() then drops the connection instead of reading on.
                    body = response.raw.read(MAX_BODY, decode_content=False) or b""
                finally:
                    response.close()
            except requests.exceptions.ConnectTimeout:
                error = f"connect timed out after {connect:.1f} s"
            except requests.exceptions.ReadTimeout:
                error = f"read timed out after {read:.1f} s"
            except requests.exceptions.SSLError:
                error = "TLS error talking to the cache"
            except (requests.exceptions.ConnectionError, urllib3.exceptions.HTTPError) as exc:
                error = describe_connection_error(exc, read)
            except requests.exceptions.InvalidHeader:
                error = "invalid header value (control characters?)"
            except Exception as exc:  # e.g. http.client.InvalidURL: a failure, not a crash
                error = f"request failed ({type(exc).__name__})"
            finally:
                _current.reset(token)
        if budget.late:
            error = (
                f"no complete answer within the {read:.1f} s deadline (the cache sends too slowly)"
            )
        if error or response is None:
            return Reply(None, {}, b"", timer.ms, error or "no answer")
        return Reply(response.status_code, response.headers, body, timer.ms)

    def log(self, node: str, call: Call, result: PurgeResult) -> None:
        """One debug line per request: backend, method, target, node, outcome; never the
        URL, a header or a body (any of them may carry a credential)."""
        logger.debug(
            "%s: %s %s on %s -> %s %s (%.1f ms)",
            self.backend.alias,
            call.method,
            call.target,
            node,
            result.status,
            result.http_status or result.error,
            result.latency_ms or 0.0,
        )

    def send(self, node: str, call: Call) -> PurgeResult:
        """Send one request; never raises for what the network or the cache does."""
        reply = self.exchange(node, call)
        if reply.status is None:
            result = PurgeResult(FAILED, latency_ms=reply.latency_ms, error=reply.error)
        else:
            result = self.interpret(reply.status, reply.latency_ms, reply.headers)
        self.log(node, call, result)
        return result

    def send_all(self, node: str, calls: Sequence[Call]) -> list[PurgeResult]:
        """Send ``calls`` to ``node`` in order, one result each.

        Once the node fails to answer (down, or slower than the timeout), the rest are
        not sent but failed at once: a dead node costs one timeout, not one per URL.
        """
        results: list[PurgeResult] = []
        for call in calls:
            if results and is_unreachable(results[-1]):
                results.append(
                    dataclasses.replace(results[-1], latency_ms=None, error=not_sent(results[-1]))
                )
                continue
            results.append(self.send(node, call))
        return results

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()


def node_urls(backend: BaseBackend, options: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``LOCATION`` or ``NODES`` option: http(s) base URLs, without a trailing slash."""
    where = f"ROAN_BACKENDS[{backend.alias!r}]"
    if "LOCATION" in options and "NODES" in options:
        raise ImproperlyConfigured(f"{where}: give LOCATION or NODES, not both.")
    if "LOCATION" in options:
        if not isinstance(options["LOCATION"], str):
            raise ImproperlyConfigured(f"{where}['LOCATION'] must be a URL string.")
        urls: Any = [options["LOCATION"]]
    elif "NODES" in options:
        urls = options["NODES"]
        if isinstance(urls, str) or not isinstance(urls, list | tuple) or not urls:
            raise ImproperlyConfigured(f"{where}['NODES'] must be a non-empty list of URLs.")
    else:
        raise ImproperlyConfigured(f"{where} needs LOCATION or NODES (the cache's URL).")
    cleaned = []
    for url in urls:
        # Never echo the URL itself, nor a parser's message about it: either may carry
        # user:password.
        if problem := _bad_node_url(str(url)):
            raise ImproperlyConfigured(f"{where}: {redact_url(str(url))!r} {problem}.")
        cleaned.append(str(url).rstrip("/"))
    if len(set(cleaned)) != len(cleaned):
        raise ImproperlyConfigured(f"{where}: the same node is listed twice.")
    if len({redact_url(url) for url in cleaned}) != len(cleaned):
        raise ImproperlyConfigured(f"{where}: two nodes differ only in their credentials.")
    return tuple(cleaned)


def _bad_node_url(url: str) -> str:
    """Why ``url`` cannot be a node URL (``""`` when it can); never quotes the URL."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError when the port is not a number
    except ValueError:
        hostname = None
        parts = None
    if parts is None or "@" in parts.path:
        # The usual cause: a "/", "?" or "#" in the password ends the user info early.
        return (
            "is not a valid URL; percent-encode any '/', '?', '#' or '@' in its user name "
            "or password (%2F, %3F, %23, %40)"
        )
    if parts.scheme not in {"http", "https"} or not hostname:
        return "is not an http(s) URL"
    if parts.query or parts.fragment:
        return "cannot have a query or fragment (a node URL is a base URL)"
    return ""


def bad_path(target: str) -> str:
    """Why ``target`` cannot be sent as a path (``""`` when it can)."""
    if not target.startswith("/"):
        return f"{target[:50]!r} is not a path (it must start with /)"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return "the path contains spaces or control characters; percent-encode it"
    return ""
