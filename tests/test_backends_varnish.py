"""VarnishBackend against a real Varnish with varnish-modules (xkey)."""

from __future__ import annotations

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from roan.backends.base import PurgeRequest
from roan.backends.varnish import VarnishBackend


def cached(url: str) -> str:
    return requests.get(url, timeout=5).headers["X-Cache"]


@pytest.fixture
def backend(varnish) -> VarnishBackend:
    return VarnishBackend("varnish", {"NODES": [varnish.url]})


def purge(backend: VarnishBackend, *requests_: PurgeRequest):
    return backend.purge(backend.nodes[0], list(requests_))


def test_url_purge(varnish, backend) -> None:
    cached(f"{varnish.url}/v/one")
    assert cached(f"{varnish.url}/v/one") == "HIT"
    [result] = purge(backend, PurgeRequest("url", "/v/one"))
    assert (result.status, result.http_status) == ("ok", 200)
    assert result.latency_ms is not None and result.latency_ms > 0
    assert cached(f"{varnish.url}/v/one") == "MISS"
    [missing] = purge(backend, PurgeRequest("url", "/v/never"))
    assert (missing.status, missing.http_status) == ("not_cached", 404)


def test_prefix_purge_bans_the_section_only(varnish, backend) -> None:
    for path in ("/posts/1", "/posts/2", "/pages/1"):
        cached(varnish.url + path)
        assert cached(varnish.url + path) == "HIT"
    [result] = purge(backend, PurgeRequest("prefix", "/posts/"))
    assert result.status == "ok"
    assert cached(f"{varnish.url}/posts/1") == "MISS"
    assert cached(f"{varnish.url}/posts/2") == "MISS"
    assert cached(f"{varnish.url}/pages/1") == "HIT"


def test_a_prefix_is_matched_literally_not_as_a_regex(varnish, backend) -> None:
    cached(f"{varnish.url}/a.b/x")
    cached(f"{varnish.url}/aXb/x")
    purge(backend, PurgeRequest("prefix", "/a.b/"))
    assert cached(f"{varnish.url}/a.b/x") == "MISS"
    assert cached(f"{varnish.url}/aXb/x") == "HIT"


def test_tag_purge_with_xkey(varnish, backend) -> None:
    for path in ("/tagged/1", "/tagged/2", "/other/1"):
        cached(varnish.url + path)
    [result] = purge(backend, PurgeRequest("tag", "section-tagged"))
    assert result.status == "ok"
    assert cached(f"{varnish.url}/tagged/1") == "MISS"
    assert cached(f"{varnish.url}/tagged/2") == "MISS"
    assert cached(f"{varnish.url}/other/1") == "HIT"


def test_purge_everything(varnish, backend) -> None:
    for path in ("/all/1", "/all/2"):
        cached(varnish.url + path)
    [result] = purge(backend, PurgeRequest("all", ""))
    assert result.status == "ok"
    assert cached(f"{varnish.url}/all/1") == "MISS"
    assert cached(f"{varnish.url}/all/2") == "MISS"


def test_a_stopped_node_fails_fast_and_the_rest_are_not_sent(origin) -> None:
    from tests.caches import start_varnish

    node = start_varnish(origin.port)
    backend = VarnishBackend("varnish", {"NODES": [node.url], "TIMEOUT": (1, 1)})
    node.stop()
    try:
        results = purge(backend, PurgeRequest("url", "/a"), PurgeRequest("url", "/b"))
        assert [r.status for r in results] == ["failed", "failed"]
        assert results[0].error == "connection refused"
        assert results[1].error == "not sent: connection refused"
    finally:
        node.close()


def test_bad_options() -> None:
    with pytest.raises(ImproperlyConfigured, match="needs LOCATION or NODES"):
        VarnishBackend("v", {})
    with pytest.raises(ImproperlyConfigured, match="unknown option"):
        VarnishBackend("v", {"NODES": ["http://a"], "XKEY": "x"})
