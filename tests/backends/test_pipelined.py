"""The pipelined transport of the nginx and Varnish backends (roan/backends/_pipelined.py),
against real nginx and Varnish and against small scripted servers for the failures."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from roan.backends._pipelined import PipelinedTransport, _Connection
from roan.backends.base import PurgeRequest
from roan.backends.nginx import NginxBackend
from roan.backends.varnish import VarnishBackend
from tests.support.caches import PURGE_MODULE, FakeCache, Nginx, Origin, require
from tests.support.servers import ScriptedServer

KEEPALIVE_REQUESTS = 25


class LoggingNginx(Nginx):
    """example/deploy/nginx.conf with a short keep-alive limit and a log that shows, per
    request, whether it was pipelined ($pipe) and on which connection."""

    def configure(self) -> None:
        super().configure()
        path = self.dir / "nginx.conf"
        conf = path.read_text()
        extra = (
            "http {\n"
            "    log_format roan '$request_method $request_uri $pipe $connection $status';\n"
            f"    keepalive_requests {KEEPALIVE_REQUESTS};\n"
        )
        conf = conf.replace("http {\n", extra, 1)
        conf = conf.replace("access_log logs/access.log;", "access_log logs/access.log roan;")
        path.write_text(conf)

    def purges_logged(self, containing: str = "/purge/", expect: int = 0) -> list[list[str]]:
        """Purge lines of the access log that contain ``containing``. nginx writes a
        line only after the answer went out, so wait (5 s at most) for ``expect`` lines."""
        deadline = time.monotonic() + 5
        while True:
            lines = (self.dir / "logs" / "access.log").read_text().splitlines()
            found = [
                line.split()
                for line in lines
                if line.startswith("GET /purge/") and containing in line.split()[1]
            ]
            if len(found) >= expect or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture(scope="module")
def logging_nginx(cache_origin: Origin) -> Iterator[LoggingNginx]:
    if not shutil.which("nginx") or not PURGE_MODULE.exists():
        require("caches", "nginx with libnginx-mod-http-cache-purge is not installed")
    server = LoggingNginx(cache_origin.port)
    try:
        server.configure()
        server.start()
        yield server
    finally:
        server.close()


def pipelined(host: str, port: int, raw: list[bytes]) -> list[int]:
    """Write ``raw`` requests in one go on one connection; the statuses, in order."""
    with socket.create_connection((host, port), timeout=5) as sock:
        conn = _Connection(sock)
        sock.sendall(b"".join(raw))
        statuses = [conn.read_answer().status for _ in raw]
    return statuses


def test_nginx_and_varnish_answer_pipelined_purges_in_order(nginx_cache, varnish_cache) -> None:
    for server, method, prefix in ((nginx_cache, "GET", "/purge"), (varnish_cache, "PURGE", "")):
        paths = [f"/pipe/{server.name}/{i}" for i in range(12)]
        for path in paths[::3]:  # cache every third page
            requests.get(server.url + path, timeout=5)
        host = f"127.0.0.1:{server.port}"  # as the pages were cached under
        raw = [f"{method} {prefix}{p} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for p in paths]
        statuses = pipelined("127.0.0.1", server.port, raw)
        assert statuses == [200, 404, 404] * 4, server.name


def test_many_purges_in_one_call_are_pipelined_and_survive_the_keepalive_limit(
    logging_nginx,
) -> None:
    paths = [f"/n/many/{i}" for i in range(80)]
    for path in paths[::4]:
        requests.get(logging_nginx.url + path, timeout=5)
    backend = NginxBackend("nginx", {"LOCATION": f"{logging_nginx.url}/purge"})

    results = backend.purge(backend.nodes[0], [PurgeRequest("url", p) for p in paths])
    backend.close()

    # One result per request, in order: the cached ones were purged, the others were not
    # cached, and each answer belongs to its own request.
    assert [r.status for r in results] == ["ok", "not_cached", "not_cached", "not_cached"] * 20
    assert all(r.latency_ms is not None and r.latency_ms >= 0 for r in results)
    for path in paths[::4]:
        cached = requests.get(logging_nginx.url + path, timeout=5).headers["X-Cache-Status"]
        assert cached == "MISS"
    logged = logging_nginx.purges_logged("/many/", expect=len(paths))
    assert {line[1] for line in logged} == {f"/purge{p}" for p in paths}
    assert any(line[2] == "p" for line in logged)  # nginx saw pipelined requests
    # nginx closed each connection after 25 requests; roan reopened and went on.
    connections = {line[3] for line in logged}
    assert len(connections) >= len(paths) // KEEPALIVE_REQUESTS


def test_pipeline_1_sends_one_request_at_a_time(logging_nginx) -> None:
    backend = NginxBackend("nginx", {"LOCATION": f"{logging_nginx.url}/purge", "PIPELINE": 1})
    paths = [f"/n/single/{i}" for i in range(10)]
    results = backend.purge(backend.nodes[0], [PurgeRequest("url", p) for p in paths])
    backend.close()
    assert [r.status for r in results] == ["not_cached"] * 10
    logged = logging_nginx.purges_logged("/single/", expect=len(paths))
    assert [line[1] for line in logged] == [f"/purge{p}" for p in paths]
    assert {line[2] for line in logged} == {"."}  # none pipelined
    assert len({line[3] for line in logged}) == 1  # but all on one kept-alive connection


def varnish_sessions(varnish) -> int:
    """Connections Varnish has accepted so far. Its threads add to the shared counters
    when idle, so read until the figure holds still."""
    last = -1
    for _ in range(25):
        out = subprocess.run(
            ["varnishstat", "-n", str(varnish.dir / "work"), "-1", "-f", "MAIN.sess_conn"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout  # fmt: skip
        now = int(out.split()[1])
        if now == last:
            return now
        last = now
        time.sleep(0.2)
    return last


def test_varnish_takes_urls_bans_and_tags_on_one_connection_in_order(varnish_cache) -> None:
    paths = [f"/vp/{i}" for i in range(40)]
    for path in paths[::2]:
        requests.get(varnish_cache.url + path, timeout=5)
    backend = VarnishBackend("varnish", {"NODES": [varnish_cache.url]})
    batch = [PurgeRequest("url", p) for p in paths]
    batch += [PurgeRequest("prefix", "/nothing-here/"), PurgeRequest("tag", "section-none")]
    before = varnish_sessions(varnish_cache)

    results = backend.purge(backend.nodes[0], batch)
    backend.close()

    assert varnish_sessions(varnish_cache) == before + 1
    assert [r.status for r in results[:40]] == ["ok", "not_cached"] * 20
    assert [(r.status, r.http_status) for r in results[40:]] == [("ok", 200), ("not_cached", 200)]


# -- scripted servers for what real caches rarely do ---------------------------------------


def ok(extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{extra}\r\nok".encode()


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(answer: Callable[[int, int, str], bytes | None]) -> ScriptedServer:
        servers.append(ScriptedServer(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def purge_paths(url: str, paths: list[str], **options) -> list:
    backend = NginxBackend("nginx", {"LOCATION": f"{url}/purge", "TIMEOUT": (1, 1), **options})
    try:
        return backend.purge(backend.nodes[0], [PurgeRequest("url", p) for p in paths])
    finally:
        backend.close()


def test_a_cache_dropping_connections_mid_pipeline_gets_the_rest_again(scripted) -> None:
    # Three answers per connection, then the connection is dropped without a word.
    server = scripted(lambda conn, n, path: ok() if n < 3 else None)
    paths = [f"/drop/{i}" for i in range(20)]
    results = purge_paths(server.url, paths)
    assert [r.status for r in results] == ["ok"] * 20
    # Every request was answered once by the server: no result without its own answer.
    assert sorted(server.answered) == sorted(f"/purge{p}" for p in paths)
    assert server.connections >= 7


def test_a_server_without_keep_alive_gets_one_request_per_connection(scripted) -> None:
    server = scripted(lambda conn, n, path: ok("Connection: close\r\n"))
    paths = [f"/close/{i}" for i in range(5)]
    results = purge_paths(server.url, paths)
    assert [r.status for r in results] == ["ok"] * 5
    assert server.answered == [f"/purge{p}" for p in paths]
    assert server.connections == 5


def test_chunked_and_unsized_answers_are_read_whole(scripted) -> None:
    chunked = (
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    plain = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n"
    unsized = "HTTP/1.0 200 OK\r\n\r\nthe body runs to the end of the connection"

    def answer(conn: int, n: int, path: str) -> bytes:
        if path.endswith("/unsized"):
            return b"!" + unsized.encode()
        return (chunked if path.endswith("/chunked") else plain).encode()

    server = scripted(answer)
    paths = ["/chunked", "/plain", "/chunked", "/unsized", "/plain"]
    results = purge_paths(server.url, paths)
    assert [(r.status, r.http_status) for r in results] == [
        ("ok", 200),
        ("not_cached", 404),
        ("ok", 200),
        ("ok", 200),
        ("not_cached", 404),
    ]
    assert server.connections == 2  # the unsized answer ended its connection


def test_a_run_of_like_answers_is_framed_answer_by_answer(scripted) -> None:
    # The same head again (a run of purges answered alike) is taken as the same answer,
    # its body skipped by its length; a different head between them is read anew.
    sized = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n"
    empty = "HTTP/1.1 204 No Content\r\n\r\n"
    gone = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-Purged-Count: 1\r\n\r\npurged /gone"

    def answer(conn: int, n: int, path: str) -> bytes:
        name = path.rsplit("/", 1)[-1].rstrip("0123456789")
        return {"sized": sized, "empty": empty, "gone": gone}[name].encode()

    server = scripted(answer)
    names = ["sized1", "sized2", "sized3", "empty1", "empty2", "sized4", "gone1", "gone2"]
    results = purge_paths(server.url, [f"/{name}" for name in names])
    assert [(r.status, r.http_status) for r in results] == [
        *[("not_cached", 404)] * 3,
        *[("ok", 204)] * 2,
        ("not_cached", 404),
        *[("ok", 200)] * 2,
    ]
    assert server.connections == 1


def test_a_cache_that_closes_without_answering_is_never_ok(scripted) -> None:
    server = scripted(lambda conn, n, path: None)
    results = purge_paths(server.url, ["/a", "/b", "/c"])
    assert results[0].status == "failed"
    assert results[0].error == "the cache closed the connection without answering"
    assert [r.error for r in results[1:]] == [
        "not sent: the cache closed the connection without answering"
    ] * 2
    assert server.connections == 1  # a node that does not answer is not asked again


def test_a_cache_that_stalls_mid_pipeline_costs_one_timeout(scripted) -> None:
    server = scripted(lambda conn, n, path: ok() if n == 0 else b"hang")
    started = time.monotonic()
    results = purge_paths(server.url, ["/a", "/b", "/c", "/d"])
    elapsed = time.monotonic() - started
    assert results[0].status == "ok"
    assert (results[1].status, results[1].error) == ("failed", "read timed out after 1.0 s")
    # /c and /d were written in the pipeline with /b, but never answered.
    assert [r.error for r in results[2:]] == ["not answered: read timed out after 1.0 s"] * 2
    assert all(r.retryable for r in results[1:])
    # One timeout in all: no new connection for the rest, and well under the three
    # timeouts that asking for /b, /c and /d one by one would cost.
    assert server.connections == 1
    assert elapsed < 2.9


def test_a_cache_closing_silently_after_each_answer_still_answers_everything(scripted) -> None:
    # Like an idle timeout racing the next request: the connection looks reusable, the
    # next request goes out on it and meets a closed socket; roan sends it again.
    server = scripted(lambda conn, n, path: b"!" + ok())
    results = purge_paths(server.url, ["/a", "/b", "/c"])
    assert [r.status for r in results] == ["ok"] * 3
    assert server.answered == ["/purge/a", "/purge/b", "/purge/c"]
    assert server.connections == 3


def test_a_pooled_connection_the_cache_closed_is_replaced_however_soon_it_is_reused(
    scripted,
) -> None:
    # Each connection answers two purges, the second with a silent close: the pooled
    # connection is dead when the next call takes it, at once (reused without asking the
    # socket, so the calls go out on it and are sent again) or after a pause (asked).
    server = scripted(lambda conn, n, path: ok() if n == 0 else b"!" + ok())
    backend = NginxBackend("nginx", {"LOCATION": f"{server.url}/purge", "TIMEOUT": (1, 1)})
    try:
        calls = [["/a", "/b"], ["/c", "/d"], ["/e", "/f"]]
        results = []
        for number, paths in enumerate(calls):
            if number == 2:
                time.sleep(0.7)
            results += backend.purge(backend.nodes[0], [PurgeRequest("url", p) for p in paths])
    finally:
        backend.close()
    assert [r.status for r in results] == ["ok"] * 6
    assert server.answered == [f"/purge/{p}" for p in "abcdef"]
    assert server.connections == 3


UNSOLICITED = "unsolicited bytes from the cache: answers could not be matched to purges"


def status(code: int, reason: str) -> bytes:
    return f"HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n".encode()


def test_a_doubled_answer_in_a_batch_fails_the_batch_instead_of_shifting_answers(
    scripted,
) -> None:
    # /a goes alone (a new connection), then /b and /c pipelined. The cache answers /b
    # twice (200, 200) and /c 503, all in one write: read in order, /c would be 200.
    def answer(conn: int, n: int, path: str) -> bytes:
        if path == "/purge/b":
            return b""  # /b's answers go out with /c's, in one write
        if path == "/purge/c":
            return ok() + ok() + status(503, "Service Unavailable")
        return ok()

    server = scripted(answer)
    results = purge_paths(server.url, ["/a", "/b", "/c"])
    assert results[0].status == "ok"
    # Neither /b nor /c is ok: their answers cannot be told apart; both go again.
    assert [(r.status, r.error, r.retryable) for r in results[1:]] == [
        ("failed", UNSOLICITED, True)
    ] * 2


def test_a_doubled_answer_fails_the_batch_and_the_calls_after_it_are_not_sent(
    scripted,
) -> None:
    server = scripted(lambda conn, n, path: ok() + ok() if path == "/purge/b" else ok())
    results = purge_paths(server.url, ["/a", "/b", "/c", "/d"], PIPELINE=1)
    assert [r.status for r in results] == ["ok", "failed", "failed", "failed"]
    assert results[1].error == UNSOLICITED
    assert [r.error for r in results[2:]] == [f"not sent: {UNSOLICITED}"] * 2
    assert server.answered == ["/purge/a", "/purge/b"]


def test_bytes_written_on_connect_are_never_read_as_an_answer(scripted, monkeypatch) -> None:
    # The cache writes a whole 200 answer as soon as it accepts, and answers 503 to each
    # purge: read in order, the first purge would be ok with the cache's 503 unread.
    server = ScriptedServer(lambda conn, n, path: status(503, "Service Unavailable"), greeting=ok())
    opened = PipelinedTransport._open

    def slow_open(self: PipelinedTransport, node: object) -> object:
        conn = opened(self, node)  # type: ignore[arg-type]
        time.sleep(0.1)  # the greeting is in before the request is written
        return conn

    monkeypatch.setattr(PipelinedTransport, "_open", slow_open)
    try:
        results = purge_paths(server.url, ["/a", "/b"])
    finally:
        server.close()
    assert [r.status for r in results] == ["failed", "failed"]
    assert [r.error for r in results] == [UNSOLICITED, f"not sent: {UNSOLICITED}"]
    assert server.answered == []  # nothing was sent on a connection that spoke first


def test_an_answer_arriving_after_the_connection_went_back_to_the_pool_is_not_read(
    scripted,
) -> None:
    # /a is answered, then a second 200 arrives 0.1 s later, while the connection rests
    # in the pool. /b, sent 0.3 s after /a, is answered 503: it must not read that 200.
    def answer(conn: int, n: int, path: str) -> list[bytes | float] | bytes:
        if path == "/purge/a":
            return [ok(), 0.1, ok()]
        return status(503, "Service Unavailable")

    server = scripted(answer)
    backend = NginxBackend("nginx", {"LOCATION": f"{server.url}/purge", "TIMEOUT": (1, 1)})
    try:
        [first] = backend.purge(backend.nodes[0], [PurgeRequest("url", "/a")])
        time.sleep(0.3)
        [second] = backend.purge(backend.nodes[0], [PurgeRequest("url", "/b")])
    finally:
        backend.close()
    assert first.status == "ok"
    assert (second.status, second.http_status) == ("failed", 503)
    assert server.connections == 2  # the pooled connection that spoke unasked was dropped


def test_credentials_in_the_node_url_go_as_basic_auth_and_nowhere_else(
    fake_cache: FakeCache,
) -> None:
    fake_cache.status = 401
    location = f"http://roan:s%3Acret@127.0.0.1:{fake_cache.port}/purge"
    backend = NginxBackend("nginx", {"LOCATION": location})
    [result] = backend.purge(backend.nodes[0], [PurgeRequest("url", "/x")])
    backend.close()
    [(method, path, headers)] = fake_cache.calls
    assert (method, path) == ("GET", "/purge/x")
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"roan:s:cret").decode()
    assert headers["Host"] == f"127.0.0.1:{fake_cache.port}"
    assert (result.status, result.http_status, result.retryable) == ("failed", 401, False)
    assert "credentials" in result.error
    assert "cret" not in result.error and "cret" not in backend.nodes[0]


def test_retry_after_and_redirects(fake_cache: FakeCache) -> None:
    fake_cache.status = 429
    fake_cache.headers = {"retry-after": "7"}
    [busy] = purge_paths(fake_cache.url, ["/busy"])
    assert (busy.status, busy.http_status, busy.retry_after) == ("failed", 429, 7.0)
    assert busy.retryable is True

    fake_cache.status = 301
    fake_cache.headers = {"Location": f"{fake_cache.url}/elsewhere"}
    [moved] = purge_paths(fake_cache.url, ["/moved"])
    assert (moved.status, moved.retryable) == ("failed", False)
    assert "redirect" in moved.error
    assert [path for _, path, _ in fake_cache.calls] == ["/purge/busy", "/purge/moved"]


def test_a_non_ascii_path_is_percent_encoded(fake_cache: FakeCache) -> None:
    [result] = purge_paths(fake_cache.url, ["/café/"])
    assert result.status == "ok"
    assert [path for _, path, _ in fake_cache.calls] == ["/purge/caf%C3%A9/"]


@pytest.mark.parametrize("value", [0, 1001, True, "10"])
def test_pipeline_option_is_checked(value: object) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        NginxBackend("edge", {"LOCATION": "http://a/purge", "PIPELINE": value})
    assert "['PIPELINE'] must be a whole number" in str(info.value)


@pytest.fixture
def tls_cache(tmp_path) -> Iterator[tuple[str, str]]:
    """A local HTTPS server answering 200, and the file of its self-signed certificate."""
    import http.server
    import ssl

    if not shutil.which("openssl"):
        require("openssl", "openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", str(cert)
    server.shutdown()
    server.server_close()
    thread.join()


def test_https_nodes_are_verified(tls_cache, monkeypatch) -> None:
    url, cert = tls_cache
    # A certificate nobody vouches for is refused, with roan's own short message.
    [refused] = purge_paths(url, ["/x"])
    assert (refused.status, refused.error) == ("failed", "TLS error talking to the cache")
    # Trusted (here through OpenSSL's SSL_CERT_FILE), the purge goes through.
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    results = purge_paths(url, ["/x", "/y", "/z"])
    assert [(r.status, r.http_status) for r in results] == [("ok", 200)] * 3


def test_a_header_with_a_line_break_is_never_sent(fake_cache: FakeCache) -> None:
    from roan.backends._http import Call

    backend = NginxBackend("nginx", {"LOCATION": f"{fake_cache.url}/purge"})
    base = f"{fake_cache.url}/purge"
    smuggled, fine = backend.transport.send_all(
        backend.nodes[0],
        [
            Call("GET", f"{base}/a", {"Host": "a.example\r\nX-Evil: 1"}, "/a"),
            Call("GET", f"{base}/b", {"Host": "a.example"}, "/b"),
        ],
    )
    backend.close()
    assert (smuggled.status, smuggled.retryable) == ("failed", False)
    assert smuggled.error == "invalid header value (control characters?)"
    assert fine.status == "ok"  # the request after it is not held back
    assert [(path, headers["Host"]) for _, path, headers in fake_cache.calls] == [
        ("/purge/b", "a.example")
    ]
