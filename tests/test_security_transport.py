"""A hostile or broken cache server cannot hang, flood or crash roan's senders, lose the
outcomes of a batch, or make roan send what it must not (issue 7, transport side).

The servers here are raw sockets on loopback that send exactly the bytes under test.
"""

from __future__ import annotations

import datetime
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone

import roan
from roan import checks as roan_checks
from roan.backends import base
from roan.backends._http import parse_retry_after
from roan.backends.base import BaseBackend, PurgeRequest, PurgeResult, redact_url
from roan.backends.http import HTTPBackend
from roan.backends.nginx import NginxBackend
from roan.backends.varnish import VarnishBackend
from roan.models import PurgeAttempt
from roan.outbox.sender import send
from tests.support.caches import FakeCache
from tests.support.servers import ScriptedServer

Handler = Callable[["RawServer", socket.socket], None]


class RawServer:
    """Accepts connections on loopback; ``handler(server, conn)`` scripts each one.

    ``sent`` counts the body bytes handlers managed to write, ``connections`` the
    connections accepted.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sent = 0
        self.connections = 0
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)  # before start: the client may be done first
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            self.handler(self, conn)
        except OSError:
            pass  # the client hung up: what a hostile server gets
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for thread in self.threads:
            thread.join()
        self.listener.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(4096)
        if not more:
            raise ConnectionResetError
        data += more
    return data


@pytest.fixture
def raw() -> Iterator[Callable[[Handler], RawServer]]:
    servers: list[RawServer] = []

    def make(handler: Handler) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def nginx(url: str, **options: object) -> NginxBackend:
    return NginxBackend("nginx", {"LOCATION": f"{url}/purge", "TIMEOUT": (1, 1), **options})


def http_backend(url: str, **options: object) -> HTTPBackend:
    return HTTPBackend("api", {"URL": f"{url}/purge{{path}}", "TIMEOUT": (1, 1), **options})


def purge(backend: BaseBackend, *paths: str) -> list[PurgeResult]:
    try:
        return backend.purge(backend.nodes[0], [PurgeRequest("url", p) for p in paths])
    finally:
        backend.close()


# -- 1. Retry-After: capped, and one bad result cannot lose the batch ----------------------


def pending(node: str, target: str, backend: str = "nginx") -> int:
    [pk] = PurgeAttempt.objects.write(
        [{"backend": backend, "node": node, "target": target, "trigger": "command"}]
    )
    return pk


@pytest.mark.django_db
def test_a_huge_retry_after_is_capped_and_every_outcome_of_the_batch_is_recorded(
    settings,
) -> None:
    answers = {
        "/purge/ok": "200 OK",
        "/purge/overflow": "503 Busy\r\nRetry-After: 999999999999",
        "/purge/years": "503 Busy\r\nRetry-After: 999999999",
        "/purge/digits": "503 Busy\r\nRetry-After: " + "9" * 5000,
        "/purge/superscript": "503 Busy\r\nRetry-After: \u00b2",
    }

    def answer(conn: int, n: int, path: str) -> bytes:
        return f"HTTP/1.1 {answers[path]}\r\nContent-Length: 0\r\n\r\n".encode("latin-1")

    server = ScriptedServer(answer)
    try:
        settings.ROAN_BACKENDS = {
            "nginx": {
                "BACKEND": "roan.backends.nginx.NginxBackend",
                "LOCATION": f"{server.url}/purge",
            }
        }
        settings.ROAN_RETRY = {"MAX": 600.0}
        node = f"{server.url}/purge"
        ids = {
            path.removeprefix("/purge"): pending(node, path.removeprefix("/purge"))
            for path in answers
        }
        before = timezone.now()
        send(list(ids.values()))
    finally:
        server.close()
    rows = {row.target: row for row in PurgeAttempt.objects.filter(pk__in=ids.values())}
    assert rows["/ok"].status == "ok"
    for target in ("/overflow", "/years", "/digits", "/superscript"):
        row = rows[target]
        assert (row.status, row.tries, row.http_status) == ("failed", 1, 503)
        assert row.next_attempt_at is not None
    # A cache asking for 31 years (or for ever) gets ROAN_RETRY["MAX"] at most.
    for target in ("/overflow", "/years"):
        wait = rows[target].next_attempt_at - before
        assert datetime.timedelta(seconds=590) <= wait <= datetime.timedelta(seconds=601)
    # Nonsense is ignored: the ordinary backoff (5 s, jittered) applies.
    for target in ("/digits", "/superscript"):
        assert rows[target].next_attempt_at - before <= datetime.timedelta(seconds=10)


def test_retry_after_is_ascii_digits_or_an_http_date() -> None:
    assert parse_retry_after("\u00b2") is None
    assert parse_retry_after("\u0663") is None  # ARABIC-INDIC DIGIT THREE
    assert parse_retry_after("9" * 5000) is None
    assert parse_retry_after("Fri, 31 Dec 99999 23:59:59 GMT") is None
    assert parse_retry_after("999999999") == 999999999.0  # capped by the sender


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e300, -5.0])
def test_backoff_ignores_retry_after_that_is_not_a_finite_wait(settings, value: float) -> None:
    from roan.outbox.sender import backoff_seconds

    settings.ROAN_RETRY = {"BASE": 5.0, "MAX": 600.0}
    assert 0 < backoff_seconds(1, retry_after=value) <= 600.0
    assert backoff_seconds(2000) <= 600.0 * 1.25  # no OverflowError for many tries


class BuggyBackend(BaseBackend):
    """Answers every request, but with a result nobody can record for ``/bad``."""

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        results = []
        for request in requests:
            if request.target == "/bad":
                results.append(PurgeResult("ok", purge_id=None))  # type: ignore[arg-type]
            elif request.target == "/refused":  # the column's CHECK (>= 0) refuses it
                results.append(PurgeResult("ok", http_status=-1))
            else:
                results.append(PurgeResult("ok", http_status=200))
        return results


@pytest.mark.django_db
def test_one_result_that_cannot_be_recorded_does_not_lose_the_others(settings) -> None:
    settings.ROAN_BACKENDS = {"buggy": {"BACKEND": f"{__name__}.BuggyBackend"}}
    targets = ("/a", "/bad", "/refused", "/b")
    ids = [pending("default", target, backend="buggy") for target in targets]
    send(ids)
    rows = {row.target: row for row in PurgeAttempt.objects.filter(pk__in=ids)}
    assert (rows["/a"].status, rows["/b"].status) == ("ok", "ok")
    assert (rows["/a"].tries, rows["/a"].http_status) == (1, 200)
    # MySQL's strict mode refuses the value itself (out of range) before the CHECK.
    refused = "DataError" if connection.vendor == "mysql" else "IntegrityError"
    for target, why in (("/bad", "TypeError"), ("/refused", refused)):
        bad = rows[target]
        assert (bad.status, bad.tries, bad.http_status) == ("failed", 1, None)
        assert bad.error == f"roan could not record the outcome ({why})"
        assert bad.next_attempt_at is not None and bad.claimed_until is None


# -- 2. A deadline on every answer; bodies are never buffered ------------------------------


def dripping(start: bytes) -> Handler:
    """Sends ``start``, then one byte every 0.2 s for 8 s."""

    def drip(server: RawServer, conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(start)
        until = time.monotonic() + 8
        while time.monotonic() < until and not server.stop.is_set():
            conn.sendall(b"a")
            time.sleep(0.2)

    return drip


@pytest.mark.parametrize("make", [nginx, http_backend], ids=["pipelined", "requests"])
@pytest.mark.parametrize(
    "start",
    [b"HTTP/1.1 200 OK\r\nX-Pad: ", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"],
    ids=["headers", "body"],
)
def test_a_cache_dripping_its_answer_is_cut_off_at_the_deadline(raw, make, start) -> None:
    server = raw(dripping(start))
    started = time.monotonic()
    first, second = purge(make(server.url), "/a", "/b")
    elapsed = time.monotonic() - started
    assert first.status == "failed"
    assert first.error == (
        "no complete answer within the 1.0 s deadline (the cache sends too slowly)"
    )
    assert second.status == "failed"  # a node that slow is not asked again at once
    assert second.error.startswith("not sent: ")
    assert elapsed < 4.0  # the deadline is 1 s; a generous bound, not a benchmark


def test_the_deadline_is_per_answer_and_a_slow_but_steady_cache_is_served(raw) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def steady(server: RawServer, conn: socket.socket) -> None:
        read_request(conn)  # the first request goes alone
        conn.sendall(answer)
        data = b""
        while data.count(b"\r\n\r\n") < 2:  # the other two come pipelined
            data += conn.recv(4096)
        third = len(answer) // 3
        for start in range(0, len(answer), third):  # dripped over 0.8 s of its 2 s
            time.sleep(0.2)
            conn.sendall(answer[start : start + third])
        time.sleep(1.6)  # 2.4 s after the pipeline was written, 1.6 s after the last
        conn.sendall(answer)

    server = raw(steady)
    results = purge(nginx(server.url, TIMEOUT=(1, 2)), "/a", "/b", "/c")
    assert [(r.status, r.error) for r in results] == [("ok", "")] * 3
    assert server.connections == 1


def huge(server: RawServer, conn: socket.socket) -> None:
    """Announces a terabyte and sends zeros as fast as the client takes them."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n")
    chunk = b"\0" * 65536
    until = time.monotonic() + 10
    while server.sent < 256 << 20 and time.monotonic() < until:
        conn.sendall(chunk)
        server.sent += len(chunk)


@pytest.mark.parametrize("make", [nginx, http_backend], ids=["pipelined", "requests"])
def test_a_huge_answer_body_is_not_read(raw, make) -> None:
    server = raw(huge)
    started = time.monotonic()
    [result] = purge(make(server.url), "/a")
    elapsed = time.monotonic() - started
    # The status answers the purge; the body is dropped with the connection, unread.
    assert (result.status, result.http_status) == ("ok", 200)
    deadline = time.monotonic() + 5
    while server.threads[0].is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.threads[0].is_alive()  # the client hung up
    # What the server got out before that: socket buffers and at most a MiB, not 256 MiB.
    assert server.sent < 32 << 20
    assert elapsed < 4.0


def test_a_short_body_still_leaves_the_connection_reusable(raw) -> None:
    def short(server: RawServer, conn: socket.socket) -> None:
        for _ in range(3):
            read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    server = raw(short)
    backend = http_backend(server.url)
    results = purge(backend, "/0", "/1", "/2")
    assert [r.status for r in results] == ["ok"] * 3
    assert server.connections == 1


# -- 3. Strict HTTP parsing in the pipelined client ----------------------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\nok", "a bad Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            "a bad Content-Length",
        ),
        (
            CHUNKED + b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
            "a bad chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n",
            "both Transfer-Encoding and Content-Length",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", "a malformed header line"),
        (
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok",
            "a malformed header line",
        ),
        (b"HTTP/1.1 2\xc2\xb200 OK\r\nContent-Length: 2\r\n\r\nok", "a bad status line"),
    ],
    ids=[
        "cl-superscript",
        "cl-differ",
        "chunk-underscore",
        "cl-and-te",
        "space-colon",
        "obs-fold",
        "status",
    ],
)
def test_a_malformed_answer_fails_that_attempt_and_drops_the_connection(
    answer: bytes, why: str
) -> None:
    server = ScriptedServer(lambda conn, n, path: answer if path == "/purge/bad" else OK)
    try:
        backend = nginx(server.url)
        bad, after = purge(backend, "/bad", "/next")
        [fine] = purge(backend, "/fine")
    finally:
        server.close()
    assert (bad.status, bad.http_status) == ("failed", None)
    assert bad.error == f"the cache sent an invalid HTTP answer ({why})"
    assert after.error == f"not sent: {bad.error}"
    # The connection that carried the bad answer was dropped: the next call opens one.
    assert fine.status == "ok"
    assert server.connections == 2


def test_a_retry_after_in_superscript_digits_does_not_escape_purge(fake_cache: FakeCache) -> None:
    fake_cache.status = 503
    fake_cache.headers = {"Retry-After": "\u00b2"}
    for backend in (nginx(fake_cache.url), http_backend(fake_cache.url)):
        [result] = purge(backend, "/x")
        assert (result.status, result.http_status, result.retry_after) == ("failed", 503, None)


def test_answers_with_bare_lf_and_repeated_equal_lengths_are_read() -> None:
    answers = [
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2, 2\r\n\r\nno",
        b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n",
    ]
    server = ScriptedServer(lambda conn, n, path: answers[int(path[-1]) % 3])
    try:
        results = purge(nginx(server.url), *[f"/{i}" for i in range(9)])
    finally:
        server.close()
    assert [(r.status, r.http_status) for r in results] == [
        ("ok", 200),
        ("not_cached", 404),
        ("ok", 200),
    ] * 3
    assert server.connections == 1


def test_each_answer_of_a_run_of_alike_answers_is_read_for_itself() -> None:
    # The client keeps the last head it parsed: a run of equal answers is parsed once,
    # and an answer that differs in any byte (a status, a Retry-After) is parsed anew.
    busy = b"HTTP/1.1 503 Busy\r\nRetry-After: %d\r\nContent-Length: 2\r\n\r\nno"
    answers = [OK, OK, busy % 7, OK, busy % 9, busy % 9, OK]
    server = ScriptedServer(lambda conn, n, path: answers[int(path.rsplit("/", 1)[1])])
    try:
        results = purge(nginx(server.url), *[f"/{i}" for i in range(len(answers))])
    finally:
        server.close()
    assert [(r.status, r.http_status, r.retry_after) for r in results] == [
        ("ok", 200, None),
        ("ok", 200, None),
        ("failed", 503, 7.0),
        ("ok", 200, None),
        ("failed", 503, 9.0),
        ("failed", 503, 9.0),
        ("ok", 200, None),
    ]


# -- 4. One bad xkey tag is refused alone --------------------------------------------------


def test_a_non_latin1_tag_is_skipped_and_the_other_tags_are_sent(fake_cache: FakeCache) -> None:
    backend = VarnishBackend("varnish", {"LOCATION": fake_cache.url})
    tags = [PurgeRequest("tag", t) for t in ("news", "\u65e5\u672c", "sport")]
    assert "Latin-1" in backend.refuse(tags[1])
    assert backend.refuse(tags[0]) == ""
    results = backend.purge(backend.nodes[0], tags)
    backend.close()
    assert [r.status for r in results] == ["ok", "skipped", "ok"]
    assert "Latin-1" in results[1].error
    [(method, _, headers)] = fake_cache.calls
    assert (method, headers["xkey-purge"]) == ("PURGE", "news sport")


# -- 5. A target too long for the log is refused, never shortened --------------------------


@pytest.mark.django_db
def test_a_url_longer_than_the_log_holds_is_skipped_not_truncated(
    settings, fake_cache: FakeCache, django_capture_on_commit_callbacks
) -> None:
    from roan.outbox.pipeline import submit
    from roan.purges import Cause, Purge

    settings.ROAN_BACKENDS = {
        "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": fake_cache.url}
    }
    long_url = "/" + "a" * 3000
    assert PurgeAttempt._meta.get_field("target").max_length == base.MAX_TARGET_LENGTH
    with django_capture_on_commit_callbacks(execute=True):
        submit([Purge("nginx", PurgeRequest("url", long_url), Cause("api"))])
    [row] = PurgeAttempt.objects.all()
    assert row.status == "skipped"
    assert "3,001 characters long" in row.error and "never shortens" in row.error
    assert row.target == long_url[: base.MAX_TARGET_LENGTH]  # a readable excerpt, marked skipped
    assert fake_cache.calls == []


# -- 6. Credentials in a node URL never reach an exception or a log ------------------------

BROKEN = "http://roan:s3cr/t@cache.example/purge"  # an unencoded "/" in the password
MISREAD = "http://roan:12345/x@cache.example/purge"  # parses, with the password as port


def chain(exc: BaseException) -> str:
    """Every message in ``exc``'s chain of causes and contexts."""
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts.append(repr(current))
        current = current.__cause__ or current.__context__
    return " ".join(texts)


@pytest.mark.parametrize(("url", "secret"), [(BROKEN, "s3cr"), (MISREAD, "12345/x")])
def test_a_node_url_with_a_misplaced_password_is_refused_without_the_password(
    url: str, secret: str
) -> None:
    assert secret not in redact_url(url)
    with pytest.raises(ImproperlyConfigured) as info:
        NginxBackend("nginx", {"LOCATION": url})
    assert "percent-encode" in str(info.value)
    assert secret not in chain(info.value)


@pytest.mark.parametrize(("url", "secret"), [(BROKEN, "s3cr"), (MISREAD, "12345/x")])
def test_an_http_backend_url_with_a_misplaced_password_is_refused_without_it(
    url: str, secret: str
) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        HTTPBackend("api", {"URL": url + "{path}"})
    assert "percent-encode" in str(info.value)
    assert secret not in chain(info.value)


class ExplodingBackend(BaseBackend):
    """A custom backend whose validation raises something else than ImproperlyConfigured."""

    def __init__(self, alias: str, options: dict[str, object]) -> None:
        raise ValueError(f"cannot parse {options['LOCATION']}")


def test_a_backend_raising_while_built_is_a_check_error_without_its_message(settings) -> None:
    settings.ROAN_BACKENDS = {
        "odd": {"BACKEND": f"{__name__}.ExplodingBackend", "LOCATION": BROKEN}
    }
    [error] = roan_checks.check_backends()
    assert error.id == "roan.E002" and "ValueError" in error.msg and "s3cr" not in error.msg
    assert roan_checks.check_timeouts() == []  # E002 reports it; no crash here either


@pytest.mark.django_db
def test_a_broken_node_url_neither_crashes_checks_nor_purges(
    settings, django_capture_on_commit_callbacks
) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": BROKEN}
    }
    [error] = roan_checks.check_backends()
    assert error.id == "roan.E002" and "s3cr" not in error.msg
    with django_capture_on_commit_callbacks(execute=True):
        roan.purge_urls("/x")
    [row] = PurgeAttempt.objects.all()
    assert row.status == "skipped"
    assert "not a valid URL" in row.error and "s3cr" not in row.error


@pytest.mark.parametrize(
    "url",
    ["http://[::1/x", "http://a:b:c@host/", "http://roan:pa/ss@host:99999/", "", "\x00://x"],
)
def test_redact_url_never_raises(url: str) -> None:
    shown = redact_url(url)
    assert "pa/ss" not in shown and "b:c" not in shown


# -- 7. Tokens in an HTTPBackend URL: a check, and never in urllib3's log ------------------


def test_a_credential_in_the_url_query_is_a_check_error(settings) -> None:
    settings.ROAN_BACKENDS = {
        "cdn": {
            "BACKEND": "roan.backends.http.HTTPBackend",
            "URL": "https://api.example.com/purge?url={url}&api_key=K3Y-VALUE&keys={target}",
            "HOSTS": ["www.example.com"],
        },
        "fine": {
            "BACKEND": "roan.backends.http.HTTPBackend",
            "URL": "https://api.example.com/purge?keys={target}",
            "HEADERS": {"Authorization": "Bearer x"},
        },
    }
    [error] = roan_checks.check_http_url_credentials()
    assert error.id == "roan.E040"
    assert "'cdn'" in error.msg and "api_key" in error.msg and "keys" not in error.msg
    assert "K3Y-VALUE" not in error.msg
    assert "HEADERS" in (error.hint or "")


def test_urllib3_never_logs_the_path_or_query_of_roans_requests(
    fake_cache: FakeCache, caplog
) -> None:
    secret = "T0KEN-in-the-path"
    backend = HTTPBackend(
        "hook", {"URL": f"{fake_cache.url}/hooks/{secret}/purge?u={{url}}", "HOSTS": ["a.example"]}
    )
    with caplog.at_level(logging.DEBUG):
        [result] = purge(backend, "/x")
        requests.get(f"{fake_cache.url}/not-roan?q=1", timeout=5).close()
    assert result.status == "ok"
    assert fake_cache.calls[0][1].startswith(f"/hooks/{secret}/purge")
    assert secret not in caplog.text
    urllib3_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("PURGE /[path hidden by roan]" in line for line in urllib3_lines)
    # Requests that are not roan's are logged as urllib3 writes them.
    assert any("GET /not-roan?q=1" in line for line in urllib3_lines)


# -- 8. HTTPBackend's final URL stays under its base ---------------------------------------


@pytest.mark.parametrize(
    "target",
    ["/../../../OTHERZONE/settings/x", "/a/./b", "/%2e%2e/%2e%2e/OTHERZONE/x", "/%2E%2e/x", "/.."],
)
def test_a_rendered_url_leaving_the_base_is_skipped(fake_cache: FakeCache, target: str) -> None:
    backend = HTTPBackend(
        "api", {"URL": f"{fake_cache.url}/v1/zones/ZONE/purge{{path}}", "KINDS": ["url", "prefix"]}
    )
    request = PurgeRequest("url", target)
    assert "'..'" in backend.refuse(request)
    [result] = backend.purge(backend.nodes[0], [request])
    backend.close()
    assert (result.status, result.retryable) == ("skipped", False)
    assert "'..' segment" in result.error
    assert fake_cache.calls == []


def test_a_target_placeholder_cannot_smuggle_dot_segments_either(fake_cache: FakeCache) -> None:
    backend = HTTPBackend("api", {"URL": f"{fake_cache.url}/v1/tags/{{target}}", "KINDS": ["tag"]})
    assert backend.refuse(PurgeRequest("tag", "../../admin")) != ""
    fine = PurgeRequest("tag", "section.news")
    assert backend.refuse(fine) == ""
    assert [r.status for r in backend.purge(backend.nodes[0], [fine])] == ["ok"]
    backend.close()
    assert [path for _, path, _ in fake_cache.calls] == ["/v1/tags/section.news"]
