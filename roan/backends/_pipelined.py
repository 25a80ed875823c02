"""A lean HTTP/1.1 client for caches that take many small purges: nginx and Varnish.

``requests`` costs most of a millisecond per call in Python alone, which caps a sender at
about a thousand purges a second. A purge is a tiny request with a tiny answer, so
this transport writes the requests itself on a kept-alive socket and pipelines them
(RFC 9112, section 9.3: a server answers pipelined requests in order). It keeps the
contract of :class:`roan.backends._http.HTTPTransport`:

- a connect timeout, and a read timeout that bounds each whole answer (status line,
  headers and body), not each ``recv()``; redirects are never followed;
- answers are parsed strictly (RFC 9112): ASCII numbers only, no space before a colon,
  no Content-Length beside Transfer-Encoding, bare LF accepted as a line end; a
  malformed answer fails its call and drops the connection. Bodies are dropped unread
  past ``_MAX_BODY`` (the connection goes with them), never buffered;
- one result per call, in order; a call is reported answered only with its own answer;
- a node that is down or silent costs one timeout: the calls after it fail unsent;
- every failure is a short message written here (no library text, URL or credential);
- user:password in a node URL is sent as Basic auth, and never logged or stored.

The first request on a new connection goes alone, so that a node that accepts connections
but never answers is found without sending it the rest. A connection the cache closes
(``keepalive_requests`` in nginx, ``Connection: close``, an idle timeout) is reopened and
the unanswered calls are sent again: a purge is idempotent. A server that closes after
every answer (no keep-alive) is served one request per connection.

HTTP/1.1 matches answers to requests by their order alone, so a byte the cache sends
unasked (bytes on connect, a doubled answer, an answer arriving late) would shift every
later answer by one: a purge answered 503 would be read as another's 200. roan asks the
socket, without waiting, before the first request on a new connection, after each batch
of answers and before reusing a pooled connection: unsolicited bytes fail the batch
(retryable, so it goes again) and the connection, and they are never read as an answer.
The checks do not wait: bytes still on the wire when a batch's check is made are found by
the next check (the connection is dropped then), after that batch's results were given.
Cost, measured on loopback nginx: about 3 us per call of one purge (the poll() calls); in
batches of 100, within the noise.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import os
import re
import select
import selectors
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import (
    Call,
    Interpreter,
    bad_path,
    node_urls,
    result_for_status,
)
from roan.backends.base import (
    FAILED,
    PREFIX,
    URL,
    BaseBackend,
    PurgeRequest,
    PurgeResult,
    not_sent,
    redact_url,
)

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
# Body bytes read (and dropped) at most per answer: a purge answer's body is a short page
# nobody reads. A longer body is not read at all: the connection is dropped instead, so a
# cache announcing Content-Length: 10**12 costs nothing.
_MAX_BODY = 1 << 20
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_BAD_HEADER = re.compile(r"[\r\n\x00]")
# Characters left as they are in a request target; others (non-ASCII) are %-encoded.
_SAFE = "!#$%&'()*+,/:;=?@[]~"
# RFC 9112: an answer's parts, parsed strictly (ASCII only: str.isdigit() takes "²").
_STATUS_LINE = re.compile(r"HTTP/1\.([0-9]) ([0-9]{3})(?: [^\x00\r\n\x7f]*)?")
# One header line: a token, a colon right after it (no space before: RFC 9112, section
# 5.1), and a value without control characters (so no bare CR, no folded line).
_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_VALUE = r"[^\x00-\x08\x0a-\x1f\x7f]*"  # greedy, and it cannot run past a line end
_FIELD_LINE = re.compile(rf"({_NAME}):({_VALUE})(?:\r?\n|\Z)")
# A whole header block, checked in one pass before its lines are taken apart.
_FIELD_BLOCK = re.compile(rf"(?:{_NAME}:{_VALUE}(?:\r?\n|\Z))*")
_DIGITS = re.compile(r"[0-9]{1,18}")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
# A line ends with LF, with or without CR before it (RFC 9112, section 2.2, lets a
# recipient accept a bare LF); a header block ends with an empty line.
_LINE_END = re.compile(rb"\r?\n")


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


@dataclasses.dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: _Headers
    #: The server will close the connection after this answer.
    closes: bool


_CLOSED = "the cache closed the connection without answering"
_UNSOLICITED = "unsolicited bytes from the cache: answers could not be matched to purges"


def _invalid(why: str) -> _Unanswered:
    """A malformed answer: the connection cannot be trusted to frame the next one."""
    return _Unanswered(f"the cache sent an invalid HTTP answer ({why})", retry=False)


class _Connection:
    """One socket to one node, and the bytes read from it but not parsed yet.

    Answers to pipelined requests arrive many to a packet, so they are parsed from one
    buffer (a header block at a time) rather than line by line from a file object.

    ``read_timeout`` bounds each whole answer, not each ``recv()``: an answer must be
    complete (status line, headers and body) within ``read_timeout`` seconds of roan
    starting to wait for it, so a cache dripping a byte at a time cannot hold a sender.
    """

    __slots__ = (
        "buffer",
        "deadline",
        "last_answer",
        "last_head",
        "pid",
        "poller",
        "progress",
        "read_timeout",
        "served",
        "sock",
        "timeout",
    )

    def __init__(self, sock: socket.socket, read_timeout: float | None = None) -> None:
        self.sock = sock
        self.buffer = b""
        self.poller: Any = None
        # A forked child (a server that forks its workers after start-up) must not share
        # its parent's connections: both would read each other's answers.
        self.pid = os.getpid()
        #: Answers read on this connection so far.
        self.served = 0
        self.read_timeout = read_timeout or sock.gettimeout() or 5.0
        #: The socket's timeout as last set here.
        self.timeout = sock.gettimeout() or self.read_timeout
        self.deadline = 0.0
        #: Some byte of the answer being read has arrived.
        self.progress = False
        #: The last final answer's head as read, the answer it made and its body's
        #: length (see read_answer).
        self.last_head: str | None = None
        self.last_answer: tuple[_Answer, int] = (_Answer(0, _Headers(), False), 0)

    def stale(self) -> bool:
        """True if the cache has closed this idle connection or sent something unasked:
        either way it cannot carry the next request.

        Asked every time, however short the connection's rest (one ``poll()`` without
        waiting): an answer arriving late, read as the next purge's, would shift every
        answer after it by one.
        """
        return bool(self.buffer) or self.pid != os.getpid() or self._readable()

    def _readable(self) -> bool:
        """The socket has something to read (bytes or the end), asked without waiting."""
        try:
            if hasattr(select, "poll"):
                if self.poller is None:  # made once: asked after every batch
                    self.poller = select.poll()
                    self.poller.register(self.sock, select.POLLIN)
                return bool(self.poller.poll(0))
            with selectors.DefaultSelector() as selector:
                selector.register(self.sock, selectors.EVENT_READ)
                return bool(selector.select(0))
        except (OSError, ValueError):
            return True

    def unasked(self) -> str:
        """What the cache sent that no request asked for, read without waiting:
        ``""`` (nothing), ``"bytes"`` or ``"closed"`` (the end of the connection).

        Bytes in the buffer are unasked too (an answer read whole leaves none). A
        readable TLS socket may carry only TLS records (a session ticket): read, they
        give no bytes, and that is nothing.
        """
        if self.buffer:
            return "bytes"
        if not self._readable():
            return ""
        try:
            self._settimeout(0.0)
            data = self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return ""
        except OSError:
            return "closed"
        if not data:
            return "closed"
        self.buffer += data  # kept: the connection is dropped, never read again
        return "bytes"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _settimeout(self, seconds: float) -> None:
        self.sock.settimeout(seconds)  # a system call: made only when the value changes
        self.timeout = seconds

    def send(self, data: bytes) -> None:
        # sendall's timeout bounds the whole write (Python >= 3.5), not each chunk.
        if self.timeout != self.read_timeout:
            self._settimeout(self.read_timeout)
        self.sock.sendall(data)

    def _recv(self) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._late()
        # The socket's timeout follows what is left of the deadline, to 5 % of the read
        # timeout (never less than what is left): a fast answer costs no system call.
        if not remaining <= self.timeout <= remaining + self.read_timeout / 20:
            self._settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            if self.progress:
                raise self._late() from None
            raise  # nothing at all: an ordinary read timeout
        if not data:
            raise _Unanswered(_CLOSED, retry=True)
        self.progress = True
        return data

    def _late(self) -> _Unanswered:
        return _Unanswered(
            f"no complete answer within the {self.read_timeout:.1f} s deadline "
            "(the cache sends too slowly)",
            retry=False,
        )

    def _fill(self) -> None:
        self.buffer += self._recv()

    def _skip(self, size: int) -> None:
        """Drop the next ``size`` bytes without keeping them."""
        if len(self.buffer) >= size:
            self.buffer = self.buffer[size:]
            return
        size -= len(self.buffer)
        self.buffer = b""
        while size > 0:
            data = self._recv()
            if len(data) > size:
                self.buffer = data[size:]
            size -= len(data)

    def _line(self) -> bytes:
        """The next line (chunk sizes), without its line end."""
        while (match := _LINE_END.search(self.buffer)) is None:
            if len(self.buffer) > _MAX_HEAD:
                raise _invalid("a line too long")
            self._fill()
        line = self.buffer[: match.start()]
        self.buffer = self.buffer[match.end() :]
        return line

    def _head(self, *, trailer: bool = False) -> str:
        """The next status line and header lines, or a chunked body's trailer lines."""
        while True:
            buffer = self.buffer
            if trailer and buffer[:1] in (b"\n", b"\r") and (empty := _LINE_END.match(buffer)):
                self.buffer = buffer[empty.end() :]
                return ""  # no trailer field: the section is its empty line alone
            # The block ends at the first LF followed by an empty line (CRLF or bare LF).
            # bytes.find is many times faster than a regex search over a pipelined buffer.
            end, size = buffer.find(b"\n\r\n"), 3
            bare = buffer.find(b"\n\n", 0, end if end >= 0 else len(buffer))
            if bare >= 0:
                end, size = bare, 2
            if end >= 0:
                break
            if len(buffer) > _MAX_HEAD:
                raise _invalid("headers too long")
            self._fill()
        self.buffer = buffer[end + size :]
        return buffer[:end].removesuffix(b"\r").decode("latin-1")

    def read_answer(self) -> _Answer:
        """Read one complete answer (a body is read and dropped; see ``_MAX_BODY``)."""
        self.deadline = time.monotonic() + self.read_timeout
        self.progress = bool(self.buffer)
        head = self._head()
        if head == self.last_head:
            # The same head as the last answer (a cache answers a run of purges alike,
            # down to the second in its Date field): the same answer, and its body of
            # the same length, once more.
            answer, size = self.last_answer
            if size:
                self._skip(size)
            self.served += 1
            return answer
        for _ in range(10):
            first, _, fields = head.partition("\n")
            status_line = _STATUS_LINE.fullmatch(first.removesuffix("\r"))
            if status_line is None:
                raise _invalid("a bad status line")
            minor, status = int(status_line[1]), int(status_line[2])
            if status < 100:
                raise _invalid("a bad status code")
            if not 100 <= status < 200 or status == 101:
                found = self._fields(fields)
                break
            # An interim answer (100 Continue): the real one follows.
            head = self._head()
        else:
            raise _invalid("too many interim answers")
        connection = found.get("connection", "").lower()
        closes = "close" in connection or (minor == 0 and "keep-alive" not in connection)
        body = True
        sized: int | None = None
        if status in (204, 304) or 100 <= status < 200:
            body = False
        elif "transfer-encoding" in found:
            # RFC 9112, section 6.3: both framings at once is how responses are split.
            if "content-length" in found:
                raise _invalid("both Transfer-Encoding and Content-Length")
            codings = [c.strip().lower() for c in found["transfer-encoding"].split(",")]
            if codings[-1] == "chunked":
                closes = self._chunked() or closes
            else:
                # Not chunked last: the body runs to the end of the connection.
                self._until_close()
                closes = True
        elif "content-length" in found:
            # "5, 5" (a repeated field) is one length; differing lengths are an error.
            length = found["content-length"]
            if not _DIGITS.fullmatch(length):
                lengths = {v.strip() for v in length.split(",")}
                if len(lengths) != 1 or not _DIGITS.fullmatch(length := lengths.pop()):
                    raise _invalid("a bad Content-Length")
            if int(length) > _MAX_BODY:
                closes = True  # not read: the connection goes instead
            else:
                sized = int(length)
                self._skip(sized)
        if body and "transfer-encoding" not in found and "content-length" not in found:
            # No length: the body runs to the end of the connection (HTTP/1.0 style).
            self._until_close()
            closes = True
        self.served += 1
        answer = _Answer(status, _Headers(found), closes)
        # Kept for the next answer only when its head alone frames it (no body, or a
        # length) and the connection goes on: then the same head means the same answer.
        if not closes and (not body or sized is not None):
            self.last_head, self.last_answer = head, (answer, sized or 0)
        return answer

    @staticmethod
    def _fields(block: str) -> dict[str, str]:
        # Such a header is a smuggling attempt or a broken cache: never guess.
        if not _FIELD_BLOCK.fullmatch(block):
            raise _invalid("a malformed header line")
        pairs = _FIELD_LINE.findall(block)
        if len(pairs) >= _MAX_HEADERS:
            raise _invalid("too many headers")
        found: dict[str, str] = {}
        for name, raw in pairs:
            key, value = name.lower(), raw.strip(" \t")
            found[key] = f"{found[key]}, {value}" if key in found else value
        return found

    def _chunked(self) -> bool:
        """Drop a chunked body; True when it was too long and the connection must go."""
        dropped = 0
        for _ in range(10000):  # bounded: a purge answer has a handful of chunks
            match = _CHUNK_LINE.fullmatch(self._line())
            if match is None:
                raise _invalid("a bad chunk size")
            size = int(match[1], 16)
            if size == 0:
                self._fields(self._head(trailer=True))  # the trailer section, checked like headers
                return False
            dropped += size
            if dropped > _MAX_BODY:
                return True
            self._skip(size)
            if self._line():  # the chunk's own line end
                raise _invalid("a chunk longer than its size")
        return True

    def _until_close(self) -> None:
        dropped = len(self.buffer)
        self.buffer = b""
        while dropped <= _MAX_BODY:
            try:
                dropped += len(self._recv())
            except _Unanswered as exc:
                if exc.message == _CLOSED:
                    return
                raise


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
        return _Connection(sock, read)

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
        unsolicited = False  # the calls after the failed batch were not sent
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
                # Bytes before any request (a banner, a stale answer) would be read as the
                # first purge's answer.
                if conn.unasked() == "bytes":
                    conn.close()
                    conn = None
                    failure = PurgeResult(FAILED, error=_UNSOLICITED)
                    break
            # A connection carries one request until it has answered once, so that a
            # node that accepts but never answers gets one request, not a pipeline.
            batch = todo[position : position + (self.depth if conn.served else 1)]
            answered_before = conn.served
            closes = False
            problem: _Unanswered | None = None
            started = time.perf_counter()
            try:
                conn.send(b"".join([wire[i] or b"" for i in batch]))
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
            except Exception as exc:  # e.g. interpret() on a strange answer: never raise
                problem = _Unanswered(
                    f"the cache's answer could not be read ({type(exc).__name__})", retry=False
                )
            if problem is None and not closes:
                extra = conn.unasked()
                if not extra:
                    continue
                if extra == "bytes":
                    # More answers than requests: which answer is whose cannot be told,
                    # so no call of the batch is answered (ok or not): all go again.
                    latency = (time.perf_counter() - started) * 1000
                    for index in batch:
                        results[index] = PurgeResult(FAILED, latency_ms=latency, error=_UNSOLICITED)
                    conn.close()
                    conn = None
                    if position < len(todo):
                        failure = PurgeResult(FAILED, error=_UNSOLICITED)
                        unsolicited = True
                    break
                # "closed": the cache closed after its last answer; the answers stand,
                # and the calls left go on a new connection.
                conn.close()
                conn = None
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
        if unsolicited:
            for offset in range(position, len(todo)):
                results[todo[offset]] = dataclasses.replace(failure, error=not_sent(failure))
            return
        results[todo[position]] = failure
        for offset in range(position + 1, len(todo)):
            # Pipelined calls were written but not answered; the rest never left.
            error = not_sent(failure)
            if offset < written:
                error = error.replace("not sent", "not answered", 1)
            results[todo[offset]] = dataclasses.replace(failure, latency_ms=None, error=error)


class HTTPNodesBackend(BaseBackend):
    """A backend that talks HTTP to each of its nodes (``LOCATION`` or ``NODES``).

    Caches take purges by the thousand, so these backends send them pipelined on
    kept-alive connections (:mod:`roan.backends._pipelined`) rather than with requests.
    """

    options_accepted: ClassVar[frozenset[str]] = frozenset({"LOCATION", "NODES", "PIPELINE"})

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        # Node names are shown and stored: never with credentials.
        self._by_name = {redact_url(url): url for url in node_urls(self, options)}
        depth = options.get("PIPELINE", DEFAULT_DEPTH)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 1000:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['PIPELINE'] must be a whole number from 1 (no "
                f"pipelining) to 1000, not {depth!r}."
            )
        self.transport = PipelinedTransport(self, self.interpret, depth=depth)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind in (URL, PREFIX) and (why := bad_path(request.target)):
            return why
        return super().refuse(request)

    def interpret(self, status: int, latency_ms: float, headers: Mapping[str, str]) -> PurgeResult:
        """Turn the cache's answer into a result; override for a cache's own signals."""
        return result_for_status(status, latency_ms, headers)

    def node_url(self, node: str) -> str:
        return self._by_name[node]

    def probe_origin(self, node: str) -> str | None:
        # nginx and Varnish serve the pages they cache where they take the purges.
        parts = urlsplit(node)
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None

    def host_header(self, request: PurgeRequest) -> dict[str, str]:
        """The page's ``Host``: the request's, else the first of ``HOSTS``, else none
        (then the transport sends the node's own host and port)."""
        host = request.host or self.default_host()
        return {"Host": host} if host else {}

    def close(self) -> None:
        self.transport.close()
