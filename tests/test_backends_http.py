"""HTTPBackend and the shared HTTP transport, against a local HTTP server."""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import parse_retry_after
from roan.backends.base import PurgeRequest
from roan.backends.http import HTTPBackend

SECRET = "Bearer sk-live-do-not-leak"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.answer = (200, {})
        self.port = 0


@pytest.fixture
def api() -> Iterator[Recorder]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_any(self) -> None:
            recorder.calls.append((self.command, self.path, dict(self.headers)))
            code, headers = recorder.answer
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PURGE = do_DELETE = handle_any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()
    thread.join()


def make(api: Recorder, **options) -> HTTPBackend:
    return HTTPBackend(
        "cdn",
        {
            "URL": f"http://127.0.0.1:{api.port}/purge?url={{url}}",
            "METHOD": "POST",
            "HEADERS": {"Authorization": SECRET},
            "HOSTS": ["www.example.com"],
            **options,
        },
    )


def test_the_url_template_and_the_credentials_are_sent(api) -> None:
    backend = make(api)
    [result] = backend.purge(backend.nodes[0], [PurgeRequest("url", "/a b/?x=1")])
    assert result.status == "ok"
    method, path, headers = api.calls[0]
    assert method == "POST"
    assert path == "/purge?url=https%3A%2F%2Fwww.example.com%2Fa%20b%2F%3Fx%3D1"
    assert headers["Authorization"] == SECRET


def test_credentials_never_reach_errors_node_names_or_logs(api, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    api.answer = (401, {})
    backend = make(api)
    [result] = backend.purge(backend.nodes[0], [PurgeRequest("url", "/x")])
    assert (result.status, result.retryable) == ("failed", False)
    assert "credentials" in result.error
    for text in (result.error, *backend.nodes, caplog.text):
        assert "sk-live" not in text


def test_rate_limits_are_retried_after_what_the_cache_asks(api) -> None:
    api.answer = (429, {"Retry-After": "2"})
    backend = make(api)
    [result] = backend.purge(backend.nodes[0], [PurgeRequest("url", "/x")])
    assert (result.status, result.http_status, result.retryable) == ("failed", 429, True)
    assert result.retry_after == 2


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (parse_retry_after(when) or 0) <= 31
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_kinds_limit_what_is_sent(api) -> None:
    backend = make(api, KINDS=["url", "tag"])
    assert backend.refuse(PurgeRequest("tag", "t")) == ""
    assert "KINDS" in backend.refuse(PurgeRequest("prefix", "/x"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"URL": ""}, "'URL'] is required"),
        ({"URL": "http://api/{secret}"}, "{url}, {path}, {host} and {target} only"),
        ({"URL": "file:///etc/passwd"}, "must start with http(s)://"),
        ({"HEADERS": {"X": 1}}, "HEADERS"),
        ({"KINDS": ["everything"]}, "KINDS"),
    ],
)
def test_bad_options(options: dict, message: str) -> None:
    base = {"URL": "http://127.0.0.1:1/purge?u={url}"}
    with pytest.raises(ImproperlyConfigured) as info:
        HTTPBackend("cdn", {**base, **options})
    assert message in str(info.value)
