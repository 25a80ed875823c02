"""HTTPBackend and the shared HTTP transport (roan/backends/_http.py), against local servers."""

from __future__ import annotations

import email.utils
import logging
import socket
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import parse_retry_after
from roan.backends.base import PurgeRequest, PurgeResult
from roan.backends.http import HTTPBackend
from tests.support.caches import FakeCache, free_port

SECRET = "sk-live-do-not-leak"


def make(fake: FakeCache, **options) -> HTTPBackend:
    return HTTPBackend(
        "cdn",
        {
            "URL": f"{fake.url}/purge?url={{url}}",
            "METHOD": "POST",
            "HEADERS": {"Authorization": f"Bearer {SECRET}"},
            "HOSTS": ["www.example.com"],
            **options,
        },
    )


def purge_one(backend: HTTPBackend, target: str = "/x", host: str = "") -> PurgeResult:
    [result] = backend.purge(backend.nodes[0], [PurgeRequest("url", target, host)])
    backend.close()
    return result


def test_the_url_template_and_the_credentials_are_sent(fake_cache: FakeCache) -> None:
    result = purge_one(make(fake_cache), "/a%20b/caf%C3%A9?x=1")
    assert (result.status, result.http_status) == ("ok", 200)
    [(method, path, headers)] = fake_cache.calls
    assert method == "POST"
    # {url} is one query value: decoding it once gives the page's URL back.
    assert path == "/purge?url=https%3A%2F%2Fwww.example.com%2Fa%2520b%2Fcaf%25C3%25A9%3Fx%3D1"
    assert headers["Authorization"] == f"Bearer {SECRET}"


def test_every_placeholder(fake_cache: FakeCache) -> None:
    backend = make(
        fake_cache,
        URL=f"{fake_cache.url}/p{{path}}?h={{host}}&t={{target}}",
        METHOD="purge",
        HOSTS=["a.example:8000"],
        SCHEME="http",
    )
    purge_one(backend, "/posts/1?x=2")
    [(method, path, _)] = fake_cache.calls
    assert method == "PURGE"
    assert path == "/p/posts/1%3Fx%3D2?h=a.example%3A8000&t=%2Fposts%2F1%3Fx%3D2"


def test_header_credentials_never_reach_errors_node_names_or_logs(
    fake_cache: FakeCache, caplog
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's too
    fake_cache.status = 401
    backend = make(fake_cache)
    failed = purge_one(backend)
    assert (failed.status, failed.retryable) == ("failed", False)
    assert "credentials" in failed.error
    fake_cache.status = 200
    assert purge_one(backend).status == "ok"
    assert "cdn: POST /x" in caplog.text  # it did log, at debug level only
    assert {r.levelno for r in caplog.records if r.name.startswith("roan")} == {logging.DEBUG}
    for text in (failed.error, *backend.nodes, caplog.text):
        assert SECRET not in text


def test_url_credentials_stay_out_of_roans_errors_node_names_and_logs(
    fake_cache: FakeCache, caplog
) -> None:
    # Only roan's own log lines: urllib3 logs each request line (path and query) at
    # DEBUG, so a token belongs in HEADERS, not in the URL.
    caplog.set_level(logging.DEBUG, logger="roan")
    fake_cache.status = 403
    url = (
        f"http://user:{SECRET}@127.0.0.1:{fake_cache.port}/hooks/{SECRET}?token={SECRET}&u={{url}}"
    )
    backend = make(fake_cache, URL=url, HEADERS={})
    failed = purge_one(backend)
    assert failed.status == "failed"
    assert fake_cache.calls[0][2]["Authorization"].startswith("Basic ")  # user info was used
    assert backend.nodes == (f"http://127.0.0.1:{fake_cache.port}",)
    roan_lines = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("roan"))
    assert roan_lines
    for text in (failed.error, *backend.nodes, roan_lines):
        assert SECRET not in text


def test_credentials_never_reach_connection_errors(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens there
    backend = HTTPBackend(
        "cdn",
        {"URL": f"http://u:{SECRET}@127.0.0.1:{port}/purge/{SECRET}?p={{path}}", "TIMEOUT": 1},
    )
    result = purge_one(backend)
    assert (result.status, result.error, result.http_status) == (
        "failed",
        "connection refused",
        None,
    )
    assert result.latency_ms is not None
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("status", "outcome", "retryable", "error"),
    [
        (200, "ok", True, ""),
        (204, "ok", True, ""),
        (404, "not_cached", True, ""),
        (500, "failed", True, "HTTP 500"),
        (503, "failed", True, "HTTP 503"),
        (408, "failed", True, "HTTP 408"),
        (403, "failed", False, "HTTP 403: the cache refused the purge; check its allow list"),
        (405, "failed", False, "HTTP 405: the cache does not accept this method"),
        (400, "failed", False, "HTTP 400: the cache did not understand the purge"),
        (301, "failed", False, "HTTP 301: the cache answered with a redirect"),
    ],
)
def test_answers_map_onto_results(
    fake_cache: FakeCache, status: int, outcome: str, retryable: bool, error: str
) -> None:
    fake_cache.status = status
    fake_cache.headers = {"Location": f"{fake_cache.url}/elsewhere"} if status == 301 else {}
    result = purge_one(make(fake_cache))
    assert (result.status, result.http_status, result.retryable) == (outcome, status, retryable)
    assert result.error.startswith(error) and bool(result.error) == bool(error)
    assert result.latency_ms is not None and result.latency_ms > 0
    assert len(fake_cache.calls) == 1  # a redirect is not followed


def test_rate_limits_carry_retry_after_in_seconds(fake_cache: FakeCache) -> None:
    fake_cache.status = 429
    fake_cache.headers = {"Retry-After": "2"}
    result = purge_one(make(fake_cache))
    assert (result.status, result.http_status, result.retryable) == ("failed", 429, True)
    assert result.retry_after == 2


def test_retry_after_as_an_http_date(fake_cache: FakeCache) -> None:
    fake_cache.status = 503
    fake_cache.headers = {"Retry-After": email.utils.formatdate(time.time() + 30, usegmt=True)}
    result = purge_one(make(fake_cache))
    assert result.retry_after is not None and 28 <= result.retry_after <= 31


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after(None) is None


def test_a_slow_api_times_out_within_the_timeout(fake_cache: FakeCache) -> None:
    fake_cache.delay = 5
    backend = make(fake_cache, TIMEOUT=(1, 0.3))
    started = time.perf_counter()
    result = purge_one(backend)
    elapsed = time.perf_counter() - started
    assert (result.status, result.error, result.http_status) == (
        "failed",
        "read timed out after 0.3 s",
        None,
    )
    assert elapsed < 0.3 + 1.0


def test_a_cache_that_hangs_up_without_answering() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def hang_up() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)

        thread = threading.Thread(target=hang_up)
        thread.start()
        port = listener.getsockname()[1]
        result = purge_one(HTTPBackend("cdn", {"URL": f"http://127.0.0.1:{port}/p{{path}}"}))
        thread.join()
    assert (result.status, result.retryable) == ("failed", True)
    assert result.error == "the cache closed the connection without answering"


def test_one_session_per_node_and_thread(fake_cache: FakeCache) -> None:
    backend = make(fake_cache)
    transport = backend.transport
    mine = transport.session("a")
    assert transport.session("a") is mine
    assert transport.session("b") is not mine
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(transport.session("a")))
    thread.start()
    thread.join()
    assert other[0] is not mine
    backend.close()
    assert transport.session("a") is not mine  # closed sessions are not reused


def test_kinds_are_the_capabilities(fake_cache: FakeCache) -> None:
    assert make(fake_cache).capabilities == {"url"}
    backend = make(fake_cache, KINDS=["url", "tag"])
    assert backend.capabilities == {"url", "tag"}
    assert backend.refuse(PurgeRequest("tag", "t")) == ""
    assert "cannot purge by prefix" in backend.refuse(PurgeRequest("prefix", "/x"))
    assert "not in this backend's HOSTS" in backend.refuse(PurgeRequest("url", "/", "evil.test"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"URL": ""}, "['URL'] is required"),
        ({"URL": "http://api/{url"}, "unbalanced braces"),
        ({"URL": "file:///etc/passwd"}, "must start with http(s)://host/"),
        ({"URL": "https://{host}/purge"}, "placeholders cannot be in the host"),
        ({"URL": "https://api.{host}/purge"}, "placeholders cannot be in the host"),
        ({"HEADERS": {"X": 1}}, "['HEADERS'] must map"),
        ({"KINDS": ["everything"]}, "['KINDS'] must list"),
        ({"SCHEME": "ftp"}, "['SCHEME'] must be"),
    ],
)
def test_bad_options(options: dict, message: str) -> None:
    base = {"URL": f"http://127.0.0.1:1/purge?u={{url}}&k={SECRET}", "HOSTS": ["a.example"]}
    with pytest.raises(ImproperlyConfigured) as info:
        HTTPBackend("cdn", {**base, **options})
    assert message in str(info.value)
    assert "'cdn'" in str(info.value)
    assert SECRET not in str(info.value)
