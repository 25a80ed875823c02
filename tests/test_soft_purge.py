"""SOFT on Varnish: a soft-purged page is served stale once, while one background fetch
gets the new copy, and fresh after; the attempt records that the purge was soft. And
nginx's refresh (``proxy_cache_bypass``), sent by HTTPBackend with ``SOFT``.

Against the real Varnish of example/deploy/varnish.vcl (``purge.soft(0s)`` for a URL,
``xkey.softpurge()`` for tags) in front of the counting origin of tests/support/caches.py,
whose body changes with every fetch ("/path N").
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

import roan
from roan.backends.base import PurgeRequest
from roan.backends.http import HTTPBackend
from roan.backends.nginx import NginxBackend
from roan.backends.varnish import VarnishBackend
from roan.models import PurgeAttempt
from roan.outbox import verify
from tests.support.caches import FakeCache, Nginx, Origin, Varnish, start_nginx


def get(url: str) -> tuple[str, str]:
    """(X-Cache, body) of a reader's request."""
    answer = requests.get(url, timeout=5)
    return answer.headers["X-Cache"], answer.text.strip()


def filled(varnish: Varnish, path: str) -> str:
    """Fetch ``path`` until Varnish serves it from its cache; its body."""
    get(varnish.url + path)
    state, body = get(varnish.url + path)
    assert state == "HIT"
    return body


def wait_for_fetches(origin: Origin, path: str, count: int) -> None:
    """Wait until the origin has served ``path`` ``count`` times (a background fetch)."""
    deadline = time.monotonic() + 5
    while origin.count(path) < count:
        assert time.monotonic() < deadline, f"the origin served {path} {origin.count(path)}x"
        time.sleep(0.02)
    time.sleep(0.1)  # Varnish stores the fetched copy right after it arrives


@pytest.fixture
def soft_backend(varnish_cache: Varnish) -> Any:
    backend = VarnishBackend("varnish", {"NODES": [varnish_cache.url], "SOFT": True})
    yield backend
    backend.close()


def test_a_soft_purged_url_is_served_stale_once_then_fresh(
    varnish_cache: Varnish, cache_origin: Origin, soft_backend: VarnishBackend
) -> None:
    assert filled(varnish_cache, "/soft/page") == "/soft/page 1"

    [result] = soft_backend.purge(soft_backend.nodes[0], [PurgeRequest("url", "/soft/page")])
    assert (result.status, result.http_status, result.soft) == ("ok", 200, True)

    # The first reader gets the old copy at once; Varnish fetches the new one behind it.
    assert get(varnish_cache.url + "/soft/page") == ("STALE", "/soft/page 1")
    wait_for_fetches(cache_origin, "/soft/page", 2)
    assert get(varnish_cache.url + "/soft/page") == ("HIT", "/soft/page 2")
    # One fetch for the stale read, however many readers came: the origin saw two in all.
    assert cache_origin.count("/soft/page") == 2


def test_a_soft_purged_tag_is_served_stale_once_then_fresh(
    varnish_cache: Varnish, cache_origin: Origin, soft_backend: VarnishBackend
) -> None:
    for path in ("/softtag/a", "/softtag/b"):
        filled(varnish_cache, path)
    untouched = filled(varnish_cache, "/softother/a")

    [result] = soft_backend.purge(soft_backend.nodes[0], [PurgeRequest("tag", "section-softtag")])
    assert (result.status, result.soft) == ("ok", True)

    for path in ("/softtag/a", "/softtag/b"):
        assert get(varnish_cache.url + path) == ("STALE", f"{path} 1")
        wait_for_fetches(cache_origin, path, 2)
        assert get(varnish_cache.url + path) == ("HIT", f"{path} 2")
    assert get(varnish_cache.url + "/softother/a") == ("HIT", untouched)


def test_a_hard_purge_still_removes_the_page(varnish_cache: Varnish, cache_origin: Origin) -> None:
    backend = VarnishBackend("varnish", {"NODES": [varnish_cache.url]})
    filled(varnish_cache, "/hard/page")
    try:
        [result] = backend.purge(backend.nodes[0], [PurgeRequest("url", "/hard/page")])
    finally:
        backend.close()
    assert (result.status, result.soft) == ("ok", False)
    assert get(varnish_cache.url + "/hard/page") == ("MISS", "/hard/page 2")


def test_the_attempt_records_a_soft_purge(
    transactional_db: None,
    settings: Any,
    varnish_cache: Varnish,
    cache_origin: Origin,
    admin_client: Any,
) -> None:
    base = {"BACKEND": "roan.backends.varnish.VarnishBackend", "NODES": [varnish_cache.url]}
    settings.ROAN_BACKENDS = {"soft": {**base, "SOFT": True}, "hard": base}
    filled(varnish_cache, "/softlog/1")

    roan.purge_urls(["/softlog/1"], backends=["soft"])
    roan.purge_urls(["/softlog/1"], backends=["hard"])

    rows = {a.backend: a for a in PurgeAttempt.objects.filter(target="/softlog/1")}
    assert (rows["soft"].status, rows["soft"].soft) == ("ok", True)
    assert rows["hard"].soft is False
    # The log says which purge was soft.
    page = admin_client.get(f"/admin/roan/purgeattempt/{rows['soft'].pk}/change/")
    assert 'class="roan-badge roan-purge-soft"' in page.text
    page = admin_client.get(f"/admin/roan/purgeattempt/{rows['hard'].pk}/change/")
    assert "roan-purge-soft" not in page.text


def test_what_goes_on_the_wire(fake_cache: FakeCache) -> None:
    backend = VarnishBackend("v", {"LOCATION": fake_cache.url, "SOFT": True})
    results = backend.purge(
        backend.nodes[0],
        [
            PurgeRequest("url", "/p"),
            PurgeRequest("tag", "t1"),
            PurgeRequest("prefix", "/a/"),
            PurgeRequest("tag", "t2"),
        ],
    )
    backend.close()
    # A ban has no soft form: the prefix is purged hard, and its result says so.
    assert [r.soft for r in results] == [True, True, False, True]
    sent = [
        (m, p, h.get("X-Soft-Purge"), h.get("xkey-softpurge"), h.get("xkey-purge"))
        for m, p, h in fake_cache.calls
    ]
    assert sent == [
        ("PURGE", "/p", "1", None, None),
        ("BAN", "/", None, None, None),
        ("PURGE", "/", None, "t1 t2", None),
    ]


def test_soft_must_be_a_boolean() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"\['SOFT'\] must be True or False"):
        VarnishBackend("v", {"NODES": ["http://127.0.0.1:9"], "SOFT": "yes"})


def test_nginx_soft_refreshes_the_page_in_place(cache_origin: Origin) -> None:
    nginx: Nginx = start_nginx(cache_origin.port)
    refresh = NginxBackend(
        "nginx", {"NODES": [nginx.url], "METHOD": "PURGE", "HOSTS": ["127.0.0.1"], "SOFT": True}
    )
    try:
        requests.get(f"{nginx.url}/refresh/a", timeout=5)
        answer = requests.get(f"{nginx.url}/refresh/a", timeout=5)
        assert (answer.headers["X-Cache-Status"], answer.text.strip()) == ("HIT", "/refresh/a 1")

        [result] = refresh.purge(refresh.nodes[0], [PurgeRequest("url", "/refresh/a")])
        assert (result.status, result.http_status, result.soft) == ("ok", 200, True)

        # The page was never absent: the next reader gets the new copy from the cache.
        answer = requests.get(f"{nginx.url}/refresh/a", timeout=5)
        assert (answer.headers["X-Cache-Status"], answer.text.strip()) == ("HIT", "/refresh/a 2")
        assert cache_origin.count("/refresh/a") == 2
    finally:
        refresh.close()
        nginx.close()


def test_nginx_soft_needs_the_caches_root() -> None:
    with pytest.raises(ImproperlyConfigured, match="needs METHOD 'PURGE'"):
        NginxBackend("nginx", {"LOCATION": "http://127.0.0.1:9/purge", "SOFT": True})


def test_http_backend_soft_is_recorded(fake_cache: FakeCache) -> None:
    backend = HTTPBackend("hook", {"URL": f"{fake_cache.url}/soft?u={{path}}", "SOFT": True})
    try:
        [result] = backend.purge(backend.nodes[0], [PurgeRequest("url", "/p")])
    finally:
        backend.close()
    assert (result.status, result.soft) == ("ok", True)


def test_a_visitors_refresh_header_is_ignored(cache_origin: Origin) -> None:
    nginx = start_nginx(cache_origin.port, purge_allow="127.0.0.2")
    try:
        requests.get(f"{nginx.url}/refresh/b", timeout=5)
        answer = requests.get(f"{nginx.url}/refresh/b", headers={"X-Roan-Refresh": "1"}, timeout=5)
        assert (answer.headers["X-Cache-Status"], answer.text.strip()) == ("HIT", "/refresh/b 1")
    finally:
        nginx.close()


def test_verify_counts_a_stale_answer_after_a_soft_purge_as_verified(
    transactional_db: None, settings: Any, varnish_cache: Varnish, cache_origin: Origin
) -> None:
    settings.ROAN_BACKENDS = {
        "varnish": {
            "BACKEND": "roan.backends.varnish.VarnishBackend",
            "NODES": [varnish_cache.url],
            # A reader's Host has the port, and Varnish's hash is Host + URL.
            "HOSTS": [f"127.0.0.1:{varnish_cache.port}"],
            "SOFT": True,
            "VERIFY": {"BASE_URL": varnish_cache.url, "HEADER": "X-Cache", "METHOD": "GET"},
        }
    }
    filled(varnish_cache, "/softverify/1")

    roan.purge_urls(["/softverify/1"])
    assert verify.verifier.drain(timeout=30)

    attempt = PurgeAttempt.objects.get(target="/softverify/1")
    assert (attempt.status, attempt.soft, attempt.verification) == ("ok", True, "verified")
    assert "marked stale by the soft purge (X-Cache: STALE)" in attempt.verification_detail
