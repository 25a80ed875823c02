"""VarnishBackend against a real Varnish (example/deploy/varnish.vcl, varnish-modules' xkey)."""

from __future__ import annotations

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from roan.backends.base import PurgeRequest, PurgeResult
from roan.backends.varnish import VarnishBackend
from tests.support.caches import FakeCache, start_varnish


def cached(url: str, host: str | None = None) -> str:
    headers = {"Host": host} if host else {}
    return requests.get(url, headers=headers, timeout=5).headers["X-Cache"]


def warm(url: str, host: str | None = None) -> None:
    cached(url, host)
    assert cached(url, host) == "HIT"


@pytest.fixture
def backend(varnish_cache) -> VarnishBackend:
    backend = VarnishBackend("varnish", {"NODES": [varnish_cache.url]})
    yield backend
    backend.close()


def purge(backend: VarnishBackend, *requests_: PurgeRequest) -> list[PurgeResult]:
    return backend.purge(backend.nodes[0], list(requests_))


def test_url_purge(varnish_cache, cache_origin, backend) -> None:
    warm(f"{varnish_cache.url}/v/one")
    [result] = purge(backend, PurgeRequest("url", "/v/one"))
    assert (result.status, result.http_status) == ("ok", 200)
    assert result.latency_ms is not None and result.latency_ms > 0
    assert cached(f"{varnish_cache.url}/v/one") == "MISS"
    assert cache_origin.count("/v/one") == 2
    [missing] = purge(backend, PurgeRequest("url", "/v/never"))
    assert (missing.status, missing.http_status) == ("not_cached", 404)


def test_query_strings_and_encoded_paths(varnish_cache, backend) -> None:
    for path in ("/v/list?page=2", "/v/list", "/v/caf%C3%A9/"):
        warm(varnish_cache.url + path)
    results = purge(
        backend, PurgeRequest("url", "/v/list?page=2"), PurgeRequest("url", "/v/caf%C3%A9/")
    )
    assert [r.status for r in results] == ["ok", "ok"]
    assert cached(f"{varnish_cache.url}/v/list?page=2") == "MISS"
    assert cached(f"{varnish_cache.url}/v/caf%C3%A9/") == "MISS"
    assert cached(f"{varnish_cache.url}/v/list") == "HIT"


def test_the_page_host_goes_in_the_host_header(varnish_cache) -> None:
    warm(f"{varnish_cache.url}/v/hosted", host="a.example")
    backend = VarnishBackend(
        "varnish", {"NODES": [varnish_cache.url], "HOSTS": ["a.example", "b.example"]}
    )
    [other] = purge(backend, PurgeRequest("url", "/v/hosted", "b.example"))
    assert other.status == "not_cached"
    assert cached(f"{varnish_cache.url}/v/hosted", host="a.example") == "HIT"
    [result] = purge(backend, PurgeRequest("url", "/v/hosted", "a.example"))
    assert result.status == "ok"
    assert cached(f"{varnish_cache.url}/v/hosted", host="a.example") == "MISS"
    assert "not in this backend's HOSTS" in backend.refuse(PurgeRequest("url", "/", "c.example"))
    backend.close()


def test_prefix_purge_bans_the_section_only(varnish_cache, backend) -> None:
    for path in ("/posts/1", "/posts/2", "/pages/1"):
        warm(varnish_cache.url + path)
    [result] = purge(backend, PurgeRequest("prefix", "/posts/"))
    assert (result.status, result.http_status) == ("ok", 200)
    assert cached(f"{varnish_cache.url}/posts/1") == "MISS"
    assert cached(f"{varnish_cache.url}/posts/2") == "MISS"
    assert cached(f"{varnish_cache.url}/pages/1") == "HIT"


def test_a_prefix_is_matched_literally_not_as_a_regex(varnish_cache, backend) -> None:
    warm(f"{varnish_cache.url}/a.b/x")
    warm(f"{varnish_cache.url}/aXb/x")
    purge(backend, PurgeRequest("prefix", "/a.b/"))
    assert cached(f"{varnish_cache.url}/a.b/x") == "MISS"
    assert cached(f"{varnish_cache.url}/aXb/x") == "HIT"


def test_tag_purge_with_xkey(varnish_cache, backend) -> None:
    for path in ("/tagged/1", "/tagged/2", "/labelled/1", "/other/1"):
        warm(varnish_cache.url + path)
    results = purge(
        backend, PurgeRequest("tag", "section-tagged"), PurgeRequest("tag", "section-labelled")
    )
    assert [(r.status, r.http_status) for r in results] == [("ok", 200), ("ok", 200)]
    assert cached(f"{varnish_cache.url}/tagged/1") == "MISS"
    assert cached(f"{varnish_cache.url}/tagged/2") == "MISS"
    assert cached(f"{varnish_cache.url}/labelled/1") == "MISS"
    assert cached(f"{varnish_cache.url}/other/1") == "HIT"


def test_a_tag_nothing_carries_is_not_cached(backend) -> None:
    [result] = purge(backend, PurgeRequest("tag", "section-nobody-uses"))
    assert (result.status, result.http_status) == ("not_cached", 200)


def test_purge_everything(varnish_cache, backend) -> None:
    for path in ("/all/1", "/all/2"):
        warm(varnish_cache.url + path)
    [result] = purge(backend, PurgeRequest("all", ""))
    assert result.status == "ok"
    assert cached(f"{varnish_cache.url}/all/1") == "MISS"
    assert cached(f"{varnish_cache.url}/all/2") == "MISS"


def test_what_goes_on_the_wire(fake_cache: FakeCache) -> None:
    backend = VarnishBackend("v", {"LOCATION": fake_cache.url, "HOSTS": ["www.example.com"]})
    tags = [PurgeRequest("tag", f"t{i}") for i in range(3)]
    results = backend.purge(
        backend.nodes[0],
        [PurgeRequest("url", "/p?x=1"), tags[0], PurgeRequest("prefix", "/a.b/"), *tags[1:],
         PurgeRequest("all", "")],
    )  # fmt: skip
    backend.close()
    assert len(results) == 6 and {r.status for r in results} == {"ok"}
    sent = [
        (m, p, h.get("Host"), h.get("X-Ban-Url"), h.get("xkey-purge"))
        for m, p, h in fake_cache.calls
    ]
    assert sent == [
        ("PURGE", "/p?x=1", "www.example.com", None, None),
        ("BAN", "/", "www.example.com", r"^/a\.b/", None),
        ("BAN", "/", "www.example.com", ".", None),
        ("PURGE", "/", "www.example.com", None, "t0 t1 t2"),  # three tags, one request
    ]


def test_header_names_are_options(fake_cache: FakeCache) -> None:
    backend = VarnishBackend(
        "v", {"LOCATION": fake_cache.url, "BAN_URL_HEADER": "X-Ban", "XKEY_HEADER": "xkey"}
    )
    backend.purge(backend.nodes[0], [PurgeRequest("prefix", "/x"), PurgeRequest("tag", "t")])
    backend.close()
    assert fake_cache.calls[0][2]["X-Ban"] == "^/x"
    assert fake_cache.calls[1][2]["xkey"] == "t"


def test_many_tags_are_split_to_keep_headers_short(fake_cache: FakeCache) -> None:
    backend = VarnishBackend("v", {"LOCATION": fake_cache.url})
    tags = [PurgeRequest("tag", f"{i:040d}") for i in range(400)]  # 41 bytes each
    results = backend.purge(backend.nodes[0], tags)
    backend.close()
    assert len(results) == 400
    assert len(fake_cache.calls) == 3
    assert all(len(headers["xkey-purge"]) <= 7500 for _, _, headers in fake_cache.calls)


def test_unsafe_targets_are_refused(backend) -> None:
    assert "tag cannot" in backend.refuse(PurgeRequest("tag", "a b"))
    assert "tag cannot" in backend.refuse(PurgeRequest("tag", "a,b"))
    assert "tag cannot" in backend.refuse(PurgeRequest("tag", ""))
    assert "percent-encoded" in backend.refuse(PurgeRequest("prefix", '/a" || true'))
    assert "must start with /" in backend.refuse(PurgeRequest("prefix", "posts"))
    assert backend.refuse(PurgeRequest("prefix", "/posts/caf%C3%A9")) == ""


def test_a_stopped_node_fails_fast_and_the_rest_are_not_sent(cache_origin) -> None:
    node = start_varnish(cache_origin.port)
    backend = VarnishBackend("varnish", {"NODES": [node.url], "TIMEOUT": (1, 1)})
    node.stop()
    try:
        results = purge(backend, PurgeRequest("url", "/a"), PurgeRequest("tag", "t"))
        assert [r.status for r in results] == ["failed", "failed"]
        assert results[0].error == "connection refused"
        assert results[1].error == "not sent: connection refused"
        node.start()  # the same port again
        assert [r.status for r in purge(backend, PurgeRequest("url", "/a"))] == ["not_cached"]
    finally:
        backend.close()
        node.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"NODES": ["http://a"], "XKEY_HEADER": ""}, "['XKEY_HEADER'] must be an HTTP header"),
    ],
)
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        VarnishBackend("v", options)
    assert message in str(info.value)
    assert "'v'" in str(info.value)
