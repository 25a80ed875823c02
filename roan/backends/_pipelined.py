"""A lean HTTP/1.1 client for caches that take many small purges: nginx and Varnish.

``requests`` costs most of a millisecond per call in Python alone, which caps a sender at
about a thousand purges a second. A purge is a tiny request with a tiny answer, so
this transport writes the requests itself on a kept-alive socket and pipelines them
(RFC 9112, section 9.3: a server answers pipelined requests in order). It keeps the
contract of :class:`roan.backends._http.HTTPTransport`:

- a connect and a read timeout on every socket operation; redirects are never followed;
- one result per call, in order; a call is reported answered only with its own answer;
- a node that is down or silent costs one timeout: the calls after it fail unsent;
- every failure is a short message written here (no library text, URL or credential);
- user:password in a node URL is sent as Basic auth, and never logged or stored.

The first request on a new connection goes alone, so that a node that accepts connections
but never answers is found without sending it the rest. A connection the cache closes
(``keepalive_requests`` in nginx, ``Connection: close``, an idle timeout) is reopened and
the unanswered calls are sent again: a purge is idempotent. A server that closes after
every answer (no keep-alive) is served one request per connection.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import os
import re
import selectors
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from roan.backends.base import FAILED, PurgeResult, not_sent

if TYPE_CHECKING:
    from roan.backends._http import Call, HTTPNodesBackend, Interpreter

logger = logging.getLogger(__name__)

#: Requests written before their answers are read. Bounded so that neither side's socket
#: buffers fill up (that would deadlock two peers that both wait to write).
DEFAULT_DEPTH = 100
#: Idle connections kept per node, for the threads that send to it at the same time.
_IDLE_PER_NODE = 8
# Largest header block accepted, and most header lines: a cache's answer to a purge is
# small, so anything bigger is not a cache talking.
_MAX_HEAD = 65536
_MAX_HEADERS = 100
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_BAD_HEADER = re.compile(r"[\r\n\x00]")
# Characters left as they are in a request target; others (non-ASCII) are %-encoded.
_SAFE = "!#$%&'()*+,/:;=?@[]~"


class _Unanswered(Exception):
    """No (complete) answer on this connection; ``message`` says why, for the log."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.message = message
        #: True when a new connection may get the answer (the cache closed this one).
        self.retry = retry


class _Headers(dict[str, str]):
    """Response headers with case-insensitive ``get`` (keys are stored lower-case)."""

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


@dataclasses.dataclass(slots=True)
class _Answer:
    status: int
    headers: _Headers
    #: The server will close the connection after this answer.
    closes: bool


_INVALID = "the cache sent an invalid HTTP answer"
_CLOSED = "the cache closed the connection without answering"


class _Connection:
    """One socket to one node, and the bytes read from it but not parsed yet.

    Answers to pipelined requests arrive many to a packet, so they are parsed from one
    buffer (a header block at a time) rather than line by line from a file object.
    """

    __slots__ = ("buffer", "pid", "served", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        # A forked child (a server that forks its workers after start-up) must not share
        # its parent's connections: both would read each other's answers.
        self.pid = os.getpid()
        #: Answers read on this connection so far.
        self.served = 0

    def stale(self) -> bool:
        """True if the cache has closed this idle connection (or sent something unasked:
        either way it cannot carry the next request)."""
        if self.buffer or self.pid != os.getpid():
            return True
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.sock, selectors.EVENT_READ)
                return bool(selector.select(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise _Unanswered(_CLOSED, retry=True)
        self.buffer += data

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _head(self) -> list[str]:
        """The next status line and header lines."""
        end = self.buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(self.buffer) > _MAX_HEAD:
                raise _Unanswered(_INVALID, retry=False)
            self._fill()
            end = self.buffer.find(b"\r\n\r\n")
        head = self.buffer[:end]
        self.buffer = self.buffer[end + 4 :]
        return head.decode("latin-1").split("\r\n")

    def read_answer(self) -> _Answer:
        """Read one complete answer (its body is read and dropped)."""
        for _ in range(10):
            lines = self._head()
            parts = lines[0].split(None, 2)
            try:
                version, status = parts[0], int(parts[1])
            except (IndexError, ValueError):
                raise _Unanswered(_INVALID, retry=False) from None
            if not version.startswith("HTTP/1.") or not 100 <= status <= 999:
                raise _Unanswered(_INVALID, retry=False)
            if not 100 <= status < 200 or status == 101:
                break
            # An interim answer (100 Continue): the real one follows.
        else:
            raise _Unanswered(_INVALID, retry=False)
        if len(lines) > _MAX_HEADERS:
            raise _Unanswered(_INVALID, retry=False)
        found: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise _Unanswered(_INVALID, retry=False)
            key = name.strip().lower()
            value = value.strip()
            found[key] = f"{found[key]}, {value}" if key in found else value
        connection = found.get("connection", "").lower()
        closes = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        if status in (204, 304) or 100 <= status < 200:
            pass
        elif "chunked" in found.get("transfer-encoding", "").lower():
            self._chunked()
        elif (length := found.get("content-length")) is not None:
            if not length.isdigit():
                raise _Unanswered(_INVALID, retry=False)
            self._take(int(length))
        else:
            # No length: the body runs to the end of the connection (HTTP/1.0 style).
            self._until_close()
            closes = True
        self.served += 1
        return _Answer(status, _Headers(found), closes)

    def _chunked(self) -> None:
        for _ in range(10000):  # bounded: a purge answer has a handful of chunks
            end = self.buffer.find(b"\r\n")
            while end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    raise _Unanswered(_INVALID, retry=False)
                self._fill()
                end = self.buffer.find(b"\r\n")
            line = self.buffer[:end].split(b";", 1)[0].strip()
            self.buffer = self.buffer[end + 2 :]
            try:
                size = int(line, 16)
            except ValueError:
                raise _Unanswered(_INVALID, retry=False) from None
            if size == 0:
                # Trailers, if any, end with an empty line like a header block.
                if self._take(2) != b"\r\n":
                    self.buffer = b"\r\n" + self.buffer
                    self._head()
                return
            self._take(size + 2)  # the chunk and its CRLF
        raise _Unanswered(_INVALID, retry=False)

    def _until_close(self) -> None:
        for _ in range(10000):
            try:
                self._fill()
            except _Unanswered:
                self.buffer = b""
                return
            self.buffer = b""
        raise _Unanswered(_INVALID, retry=False)


@dataclasses.dataclass(frozen=True, slots=True)
class _Node:
    """Where a node is and how to talk to it, worked out once from its URL."""

    scheme: str
    host: str
    port: int
    #: ``scheme://netloc`` as written: calls' URLs start with it (credentials included).
    origin: str
    #: Host header when a call has none: host[:port], as requests and browsers send it.
    default_host: str
    #: ``Authorization: Basic ...\r\n`` from the URL's user:password, or ``""``.
    auth_line: str


def _parse_node(url: str) -> _Node:
    parts = urlsplit(url)
    host = parts.hostname or ""
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    shown = f"[{host}]" if ":" in host else host
    auth = ""
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        try:
            raw = pair.encode("latin-1")  # as requests encodes it
        except UnicodeEncodeError:
            raw = pair.encode()
        auth = f"Authorization: Basic {base64.b64encode(raw).decode()}\r\n"
    return _Node(
        scheme=parts.scheme,
        host=host,
        port=port,
        origin=f"{parts.scheme}://{parts.netloc}",
        default_host=shown if port == default_port else f"{shown}:{port}",
        auth_line=auth,
    )


def _connect_error(exc: BaseException, connect: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"connect timed out after {connect:.1f} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "TLS error talking to the cache"
    return "connection failed"


def _io_error(exc: BaseException, read: float) -> _Unanswered:
    if isinstance(exc, TimeoutError):
        return _Unanswered(f"read timed out after {read:.1f} s", retry=False)
    if isinstance(exc, ssl.SSLError):
        return _Unanswered("TLS error talking to the cache", retry=False)
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return _Unanswered("connection reset by the cache", retry=True)
    return _Unanswered("connection failed", retry=True)


def _close_idle(idle: dict[str, list[_Connection]], lock: threading.Lock) -> None:
    with lock:
        conns = [conn for node in idle.values() for conn in node]
        idle.clear()
    for conn in conns:
        conn.close()


class PipelinedTransport:
    """Kept-alive, pipelined HTTP/1.1 to a backend's nodes; safe to share between threads.

    Idle connections are pooled per node, so the threads of one dispatch take turns on
    them instead of each opening its own.
    """

    def __init__(
        self, backend: HTTPNodesBackend, interpret: Interpreter, *, depth: int = DEFAULT_DEPTH
    ) -> None:
        self.backend = backend
        self.interpret = interpret
        self.depth = max(1, depth)
        self._idle: dict[str, list[_Connection]] = {}
        self._lock = threading.Lock()
        # Backends built in passing (tests, shells) are never closed: close their sockets
        # when the transport goes, as urllib3's pools do, rather than leak them.
        weakref.finalize(self, _close_idle, self._idle, self._lock)
        self._nodes: dict[str, _Node] = {}
        self._tls: ssl.SSLContext | None = None

    # -- connections -------------------------------------------------------------------

    def _node(self, url: str) -> _Node:
        node = self._nodes.get(url)
        if node is None:
            node = self._nodes[url] = _parse_node(url)
        return node

    def _checkout(self, url: str) -> _Connection | None:
        with self._lock:
            idle = self._idle.get(url)
            while idle:
                conn = idle.pop()
                if not conn.stale():
                    return conn
                conn.close()
        return None

    def _checkin(self, url: str, conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(url, [])
            if len(idle) < _IDLE_PER_NODE:
                idle.append(conn)
                return
        conn.close()

    def _open(self, node: _Node) -> _Connection:
        connect, read = self.backend.timeout
        sock = socket.create_connection((node.host, node.port), timeout=connect)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if node.scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                sock = self._tls.wrap_socket(sock, server_hostname=node.host)
            sock.settimeout(read)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def close(self) -> None:
        _close_idle(self._idle, self._lock)

    # -- requests ----------------------------------------------------------------------

    def _encode(self, node: _Node, call: Call) -> bytes | str:
        """The request's bytes, or why it cannot be sent."""
        if not call.url.startswith(node.origin):
            return "the request is not for this node"
        target = call.url[len(node.origin) :] or "/"
        if not target.isascii():
            target = quote(target, safe=_SAFE)
        if target[:1] != "/" or _BAD_TARGET.search(target):
            return "invalid request target (spaces or control characters?)"
        host = call.headers.get("Host") or node.default_host
        # A CR or LF inside a header would let a value smuggle in a header or a request.
        if _BAD_HEADER.search(host):
            return "invalid header value (control characters?)"
        lines = [f"{call.method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
        for name, value in call.headers.items():
            if name == "Host":
                continue
            if _BAD_HEADER.search(name) or _BAD_HEADER.search(value):
                return "invalid header value (control characters?)"
            lines.append(f"{name}: {value}\r\n")
        if node.auth_line:
            lines.append(node.auth_line)
        if call.method not in ("GET", "HEAD"):
            lines.append("Content-Length: 0\r\n")
        lines.append("User-Agent: roan\r\n\r\n")
        try:
            return "".join(lines).encode("latin-1")
        except UnicodeEncodeError:
            return "invalid header value (not Latin-1)"

    def send_all(self, node: str, calls: Sequence[Call]) -> list[PurgeResult]:
        """Send ``calls`` to ``node``: one result each, in order. Never raises for what
        the network or the cache does."""
        url = self.backend.node_url(node)
        where = self._node(url)
        results: list[PurgeResult | None] = [None] * len(calls)
        wire: list[bytes | None] = []
        for index, call in enumerate(calls):
            encoded = self._encode(where, call)
            if isinstance(encoded, str):
                results[index] = PurgeResult(FAILED, error=encoded, retryable=False)
                wire.append(None)
            else:
                wire.append(encoded)
        todo = [i for i, data in enumerate(wire) if data is not None]
        if todo:
            self._exchange(url, where, wire, todo, results)
        out = [r or PurgeResult(FAILED, error="no result") for r in results]
        if logger.isEnabledFor(logging.DEBUG):
            for call, result in zip(calls, out, strict=True):
                logger.debug(
                    "%s: %s %s on %s -> %s %s (%s ms)",
                    self.backend.alias,
                    call.method,
                    call.target,
                    node,
                    result.status,
                    result.http_status or result.error,
                    result.latency_ms,
                )
        return out

    def _exchange(
        self,
        url: str,
        where: _Node,
        wire: list[bytes | None],
        todo: list[int],
        results: list[PurgeResult | None],
    ) -> None:
        """Fill ``results[i]`` for every ``i`` in ``todo`` (indexes into ``wire``)."""
        connect, read = self.backend.timeout
        conn = self._checkout(url)
        position = 0  # todo[position] is the first call without an answer
        written = 0  # todo[:written] went out on some connection
        failure: PurgeResult | None = None
        while position < len(todo):
            if conn is None:
                started = time.perf_counter()
                try:
                    conn = self._open(where)
                except OSError as exc:
                    failure = PurgeResult(
                        FAILED,
                        latency_ms=(time.perf_counter() - started) * 1000,
                        error=_connect_error(exc, connect),
                    )
                    break
            # A connection carries one request until it has answered once, so that a
            # node that accepts but never answers gets one request, not a pipeline.
            batch = todo[position : position + (self.depth if conn.served else 1)]
            answered_before = conn.served
            closes = False
            problem: _Unanswered | None = None
            started = time.perf_counter()
            try:
                conn.sock.sendall(b"".join([wire[i] or b"" for i in batch]))
                written = max(written, position + len(batch))
                for index in batch:
                    answer = conn.read_answer()
                    latency = (time.perf_counter() - started) * 1000
                    results[index] = self.interpret(answer.status, latency, answer.headers)
                    position += 1
                    if answer.closes:
                        closes = True
                        break
            except _Unanswered as exc:
                problem = exc
            except OSError as exc:
                problem = _io_error(exc, read)
            if problem is None and not closes:
                continue
            conn.close()
            conn = None
            # Reopen when the cache closed, politely or not, a connection that had
            # answered before (its keep-alive limit, an idle timeout): the unanswered
            # calls go again. A timeout, or a new connection that got no answer, means the
            # node is down or too slow: stop there. Every reopening follows an answer, so
            # this loop ends.
            if problem is None or (problem.retry and answered_before):
                continue
            failure = PurgeResult(
                FAILED, latency_ms=(time.perf_counter() - started) * 1000, error=problem.message
            )
            break
        if conn is not None:
            self._checkin(url, conn)
        if failure is None:
            return
        results[todo[position]] = failure
        for offset in range(position + 1, len(todo)):
            # Pipelined calls were written but not answered; the rest never left.
            error = not_sent(failure)
            if offset < written:
                error = error.replace("not sent", "not answered", 1)
            results[todo[offset]] = dataclasses.replace(failure, latency_ms=None, error=error)
