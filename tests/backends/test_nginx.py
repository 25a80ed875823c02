"""NginxBackend against a real nginx (example/deploy/nginx.conf, Debian's purge module)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from roan.backends.base import PurgeRequest, PurgeResult
from roan.backends.nginx import NginxBackend
from tests.support.caches import FakeCache, Nginx, Origin, start_nginx


def get(url: str, host: str | None = None) -> requests.Response:
    return requests.get(url, headers={"Host": host} if host else {}, timeout=5)


def cache_status(url: str, host: str | None = None) -> str:
    return get(url, host).headers["X-Cache-Status"]


def make(nginx: Nginx, **options) -> NginxBackend:
    return NginxBackend("nginx", {"LOCATION": f"{nginx.url}/purge", **options})


def purge_one(backend: NginxBackend, request: PurgeRequest) -> PurgeResult:
    [result] = backend.purge(backend.nodes[0], [request])
    return result


def test_a_cached_page_is_purged_and_the_next_get_is_fresh(nginx_cache, cache_origin) -> None:
    page = f"{nginx_cache.url}/n/one"
    assert cache_status(page) == "MISS"
    hit = get(page)
    assert hit.headers["X-Cache-Status"] == "HIT"
    assert cache_origin.count("/n/one") == 1

    result = purge_one(make(nginx_cache), PurgeRequest("url", "/n/one"))

    assert (result.status, result.http_status, result.error) == ("ok", 200, "")
    assert result.latency_ms is not None and result.latency_ms > 0
    fresh = get(page)
    assert fresh.headers["X-Cache-Status"] == "MISS"
    assert fresh.headers["X-Origin-Count"] == "2"
    assert cache_origin.count("/n/one") == 2


def test_purging_a_page_that_is_not_cached_is_not_a_failure(nginx_cache) -> None:
    result = purge_one(make(nginx_cache), PurgeRequest("url", "/n/never-fetched"))
    assert (result.status, result.http_status) == ("not_cached", 404)


def test_query_strings_are_part_of_the_key(nginx_cache) -> None:
    get(f"{nginx_cache.url}/n/list?page=2")
    get(f"{nginx_cache.url}/n/list")
    result = purge_one(make(nginx_cache), PurgeRequest("url", "/n/list?page=2"))
    assert result.status == "ok"
    assert cache_status(f"{nginx_cache.url}/n/list?page=2") == "MISS"
    assert cache_status(f"{nginx_cache.url}/n/list") == "HIT"


@pytest.mark.parametrize("method", ["GET", "PURGE"])
@pytest.mark.parametrize("path", ["/n/caf%C3%A9/", "/n/a%20b?q=%C3%A9", "/n//double"])
def test_encoded_paths_are_purged_under_the_key_they_were_cached_with(
    nginx_cache, method: str, path: str
) -> None:
    # The purge location takes the URI from $request_uri, as the cache key does: a
    # location's $1 is decoded, so a non-ASCII slug could never be purged with it.
    page = f"{nginx_cache.url}{path}"
    get(page)
    assert cache_status(page) == "HIT"
    base = f"{nginx_cache.url}/purge" if method == "GET" else nginx_cache.url
    backend = NginxBackend("nginx", {"LOCATION": base, "METHOD": method})
    assert purge_one(backend, PurgeRequest("url", path)).status == "ok"
    assert cache_status(page) == "MISS"


def test_the_page_host_goes_in_the_host_header(nginx_cache) -> None:
    page = f"{nginx_cache.url}/n/hosted"
    get(page, host="a.example")
    assert cache_status(page, host="a.example") == "HIT"
    backend = make(nginx_cache, HOSTS=["a.example", "b.example"])
    # Under another host the key differs: nothing is purged, and a.example stays cached.
    assert purge_one(backend, PurgeRequest("url", "/n/hosted", "b.example")).status == (
        "not_cached"
    )
    assert cache_status(page, host="a.example") == "HIT"
    assert purge_one(backend, PurgeRequest("url", "/n/hosted", "a.example")).status == "ok"
    assert cache_status(page, host="a.example") == "MISS"


def test_without_a_host_the_first_of_hosts_is_used(nginx_cache) -> None:
    page = f"{nginx_cache.url}/n/default-host"
    get(page, host="www.example.com")
    backend = make(nginx_cache, HOSTS=["www.example.com"])
    assert purge_one(backend, PurgeRequest("url", "/n/default-host")).status == "ok"
    assert cache_status(page, host="www.example.com") == "MISS"


def test_hosts_outside_the_allow_list_are_refused() -> None:
    backend = NginxBackend(
        "nginx", {"LOCATION": "http://127.0.0.1:1/purge", "HOSTS": ["a.example"]}
    )
    assert backend.refuse(PurgeRequest("url", "/", "a.example")) == ""
    assert "not in this backend's HOSTS" in backend.refuse(PurgeRequest("url", "/", "evil.test"))
    assert "cannot purge by prefix" in backend.refuse(PurgeRequest("prefix", "/"))
    assert "must start with /" in backend.refuse(PurgeRequest("url", "posts", "a.example"))
    assert "control characters" in backend.refuse(PurgeRequest("url", "/a\r\nX: y", "a.example"))


def test_a_purge_location_that_refuses_us_is_a_configuration_error(cache_origin) -> None:
    locked = start_nginx(cache_origin.port, purge_allow="127.0.0.2")
    try:
        result = purge_one(make(locked), PurgeRequest("url", "/x"))
        assert (result.status, result.http_status, result.retryable) == ("failed", 403, False)
        assert "allow list" in result.error
    finally:
        locked.close()


@pytest.fixture(scope="module")
def pair(cache_origin: Origin) -> Iterator[list[Nginx]]:
    """Two nginx servers in front of the same origin: two nodes of one backend."""
    nodes = [start_nginx(cache_origin.port)]
    try:
        nodes.append(start_nginx(cache_origin.port))
        yield nodes
    finally:
        for node in nodes:
            node.close()


def test_every_node_is_purged_and_a_stopped_one_fails_alone(pair) -> None:
    backend = NginxBackend("nginx", {"NODES": [f"{n.url}/purge" for n in pair]})
    assert backend.nodes == tuple(f"{n.url}/purge" for n in pair)
    for node in pair:
        get(f"{node.url}/n/fan-out")
    for name in backend.nodes:
        assert purge_one_on(backend, name, "/n/fan-out").status == "ok"
    assert [cache_status(f"{n.url}/n/fan-out") for n in pair] == ["MISS", "MISS"]

    pair[1].stop()
    try:
        up, down = (purge_one_on(backend, name, "/n/fan-out") for name in backend.nodes)
        assert (up.status, up.http_status) == ("ok", 200)
        assert (down.status, down.http_status, down.error) == ("failed", None, "connection refused")
        assert down.retryable is True
        assert down.latency_ms is not None and down.latency_ms < 1000
    finally:
        pair[1].start()  # back on the same port
    again = purge_one_on(backend, backend.nodes[1], "/n/fan-out")
    assert again.status in {"ok", "not_cached"}  # answered: the node is back


def purge_one_on(backend: NginxBackend, node: str, path: str) -> PurgeResult:
    [result] = backend.purge(node, [PurgeRequest("url", path)])
    return result


def test_a_slow_purge_endpoint_times_out_within_the_timeout(fake_cache: FakeCache) -> None:
    fake_cache.delay = 5
    backend = NginxBackend("nginx", {"LOCATION": f"{fake_cache.url}/purge", "TIMEOUT": (1, 0.5)})
    started = time.perf_counter()
    first, second = backend.purge(
        backend.nodes[0], [PurgeRequest("url", "/a"), PurgeRequest("url", "/b")]
    )
    elapsed = time.perf_counter() - started
    backend.close()
    assert (first.status, first.error, first.retryable) == (
        "failed",
        "read timed out after 0.5 s",
        True,
    )
    assert first.latency_ms is not None and 400 < first.latency_ms < 1500
    # The node did not answer, so the rest of the batch is not sent: one timeout in all.
    assert (second.status, second.error) == ("failed", "not sent: read timed out after 0.5 s")
    assert elapsed < 0.5 + 1.0
    assert [path for _, path, _ in fake_cache.calls] == ["/purge/a"]


def test_roan_0_1_urls_and_headers_on_the_wire(fake_cache: FakeCache) -> None:
    # ROAN_PURGE_URL = "http://localhost/purge": purge("/posts") was GET .../purge/posts.
    backend = NginxBackend("nginx", {"LOCATION": f"{fake_cache.url}/purge/"})
    backend.purge(backend.nodes[0], [PurgeRequest("url", "/posts?page=2")])
    backend.close()
    [(method, path, headers)] = fake_cache.calls
    assert (method, path) == ("GET", "/purge/posts?page=2")
    assert headers["Host"] == f"127.0.0.1:{fake_cache.port}"  # requests' default


def test_node_names_and_errors_never_carry_credentials() -> None:
    backend = NginxBackend("nginx", {"LOCATION": "http://user:s3cret@cache.internal:8080/purge"})
    assert backend.nodes == ("http://cache.internal:8080/purge",)
    with pytest.raises(ImproperlyConfigured) as info:
        NginxBackend("nginx", {"LOCATION": "ftp://user:s3cret@cache.internal/purge"})
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"NODES": []}, "['NODES'] must be a non-empty list"),
        ({"NODES": "http://a/purge"}, "['NODES'] must be a non-empty list"),
        ({"NODES": ["http://a/purge", "http://a/purge"]}, "listed twice"),
        ({"LOCATION": "http://a/purge", "TIMEOUT": 0}, "['TIMEOUT'] must be positive"),
        ({"LOCATION": "http://a/purge", "TIMEOUT": "fast"}, "['TIMEOUT'] must be seconds"),
        ({"LOCATION": "http://a/purge", "HOSTS": 3}, "['HOSTS'] must be a list"),
        ({"LOCATION": "http://a/purge", "LOCATIONS": "x"}, "unknown option(s) LOCATIONS"),
    ],
)
def test_bad_options_are_reported_clearly(options: dict, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        NginxBackend("edge", options)
    assert message in str(info.value)
    assert "'edge'" in str(info.value)


def test_capabilities_and_batch_size() -> None:
    backend = NginxBackend("nginx", {"LOCATION": "http://localhost/purge"})
    assert backend.capabilities == {"url"}
    assert backend.batch_size >= 1
    assert backend.timeout == (2.0, 5.0)
