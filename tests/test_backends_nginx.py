"""NginxBackend against a real nginx with Debian's cache purge module."""

from __future__ import annotations

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from roan.backends.base import PurgeRequest
from roan.backends.nginx import NginxBackend
from tests.caches import start_nginx


def get(url: str, host: str | None = None) -> requests.Response:
    return requests.get(url, headers={"Host": host} if host else {}, timeout=5)


def status(response: requests.Response) -> str:
    return response.headers["X-Cache-Status"]


def backend(nginx, **options) -> NginxBackend:
    return NginxBackend("nginx", {"LOCATION": f"{nginx.url}/purge", **options})


def test_a_cached_page_is_purged_and_the_next_get_is_a_miss(nginx) -> None:
    page = f"{nginx.url}/n/one"
    first = get(page)
    assert status(first) == "MISS"
    assert status(get(page)) == "HIT"
    nodes = backend(nginx).nodes
    [result] = backend(nginx).purge(nodes[0], [PurgeRequest("url", "/n/one")])
    assert (result.status, result.http_status) == ("ok", 200)
    assert result.latency_ms is not None and result.latency_ms > 0
    again = get(page)
    assert status(again) == "MISS"
    assert again.text != first.text  # the origin rendered it again


def test_purging_a_page_that_is_not_cached_is_not_a_failure(nginx) -> None:
    b = backend(nginx)
    [result] = b.purge(b.nodes[0], [PurgeRequest("url", "/n/never-fetched")])
    assert (result.status, result.http_status) == ("not_cached", 404)


def test_query_strings_are_part_of_the_key(nginx) -> None:
    get(f"{nginx.url}/n/list?page=2")
    get(f"{nginx.url}/n/list")
    b = backend(nginx)
    [result] = b.purge(b.nodes[0], [PurgeRequest("url", "/n/list?page=2")])
    assert result.status == "ok"
    assert status(get(f"{nginx.url}/n/list?page=2")) == "MISS"
    assert status(get(f"{nginx.url}/n/list")) == "HIT"


def test_the_page_host_goes_in_the_host_header(nginx) -> None:
    get(f"{nginx.url}/n/hosted", host="www.example.com")
    assert status(get(f"{nginx.url}/n/hosted", host="www.example.com")) == "HIT"
    b = backend(nginx, HOSTS=["www.example.com"])
    node = b.nodes[0]
    other = NginxBackend("plain", {"LOCATION": f"{nginx.url}/purge"})
    # Without the Host the key differs: nothing is purged.
    [missed] = other.purge(other.nodes[0], [PurgeRequest("url", "/n/hosted", "127.0.0.1")])
    assert missed.status == "not_cached"
    [result] = b.purge(node, [PurgeRequest("url", "/n/hosted", "www.example.com")])
    assert result.status == "ok"
    assert status(get(f"{nginx.url}/n/hosted", host="www.example.com")) == "MISS"


def test_hosts_outside_the_allow_list_are_refused() -> None:
    b = NginxBackend("nginx", {"LOCATION": "http://127.0.0.1:1/purge", "HOSTS": ["a.example"]})
    assert b.refuse(PurgeRequest("url", "/", "a.example")) == ""
    assert "not in this backend's HOSTS" in b.refuse(PurgeRequest("url", "/", "evil.example"))
    assert "cannot purge by prefix" in b.refuse(PurgeRequest("prefix", "/"))


def test_the_purge_method_variant(nginx) -> None:
    get(f"{nginx.url}/n/method")
    b = NginxBackend("nginx", {"LOCATION": nginx.url, "METHOD": "PURGE"})
    [result] = b.purge(b.nodes[0], [PurgeRequest("url", "/n/method")])
    assert (result.status, result.http_status) == ("ok", 200)
    assert status(get(f"{nginx.url}/n/method")) == "MISS"


def test_a_purge_location_that_refuses_us_is_a_configuration_error(origin) -> None:
    locked = start_nginx(origin.port, allow="127.0.0.2")
    try:
        b = NginxBackend("nginx", {"LOCATION": f"{locked.url}/purge"})
        [result] = b.purge(b.nodes[0], [PurgeRequest("url", "/x")])
        assert (result.status, result.http_status, result.retryable) == ("failed", 403, False)
        assert "allow list" in result.error
    finally:
        locked.close()


def test_node_names_never_carry_credentials() -> None:
    b = NginxBackend("nginx", {"LOCATION": "http://user:s3cret@cache.internal:8080/purge"})
    assert b.nodes == ("http://cache.internal:8080/purge",)
    with pytest.raises(ImproperlyConfigured) as info:
        NginxBackend("nginx", {"LOCATION": "ftp://user:s3cret@cache.internal/purge"})
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs LOCATION or NODES"),
        ({"LOCATION": "ftp://x/purge"}, "is not an http(s) URL"),
        ({"LOCATION": "http://a/purge", "NODES": ["http://b/purge"]}, "not both"),
        ({"NODES": []}, "non-empty list"),
        ({"NODES": ["http://a/purge", "http://a/purge"]}, "listed twice"),
        ({"LOCATION": "http://a/purge", "METHOD": "DELETE"}, "['METHOD'] must be"),
        ({"LOCATION": "http://a/purge", "TIMEOUT": 0}, "must be positive"),
        ({"LOCATION": "http://a/purge", "TIMEOUT": "fast"}, "seconds or a (connect, read) pair"),
        ({"LOCATION": "http://a/purge", "LOCATIONS": "x"}, "unknown option(s) LOCATIONS"),
    ],
)
def test_bad_options_are_reported_clearly(options: dict, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        NginxBackend("edge", options)
    assert message in str(info.value)
    assert "edge" in str(info.value)
