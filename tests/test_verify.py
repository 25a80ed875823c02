"""VERIFY: after a purge, roan fetches the page and records whether the cache still had it.

Against the real nginx of example/deploy/nginx.conf (which adds ``X-Cache-Status``), and
a copy of it whose purge location builds another cache key than the page's: the
misconfiguration where every purge answers 404 and no page is ever purged.
"""

from __future__ import annotations

import io
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from requests.structures import CaseInsensitiveDict

import roan
from roan import context
from roan.backends import build_backend
from roan.backends import options as backend_options
from roan.checks import check_backends, check_verify
from roan.models import PurgeAttempt
from roan.outbox import verify
from tests.support.caches import PURGE_MODULE, LoopbackServer, Nginx, Origin, _launch, require

HINT_START = "The purge did not reach the page&#x27;s cache entry"


def cache_status(url: str) -> str:
    return requests.get(url, timeout=5).headers["X-Cache-Status"]


def nginx_backend(nginx: Any, alias: str = "nginx", **verify_options: Any) -> dict[str, Any]:
    return {
        alias: {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx.url}/purge",
            "HOSTS": ["127.0.0.1"],
            "VERIFY": {"BASE_URL": nginx.url, **verify_options},
        }
    }


def finish() -> None:
    assert verify.verifier.drain(timeout=30)


class MiskeyedNginx(Nginx):
    """The example's nginx, but its purge location keys on https:// while pages are
    cached under http://: a purge answers 404 and the page stays cached."""

    name = "nginx-miskeyed"

    def configure(self) -> None:
        super().configure()
        path = self.dir / "nginx.conf"
        conf = path.read_text()
        good = 'proxy_cache_purge pages "$scheme://$host$purge_uri";'
        assert good in conf
        path.write_text(conf.replace(good, 'proxy_cache_purge pages "https://$host$purge_uri";'))


@pytest.fixture(scope="module")
def miskeyed_nginx(cache_origin: Origin) -> Iterator[Nginx]:
    if not shutil.which("nginx") or not PURGE_MODULE.exists():
        require("caches", "nginx with libnginx-mod-http-cache-purge is not installed")
    server = MiskeyedNginx(cache_origin.port)
    _launch(server)
    yield server
    server.close()


class HeldPage(LoopbackServer):
    """A site whose answers wait until the test releases them (and counts requests)."""

    def __init__(self, status: str = "MISS") -> None:
        self.release = threading.Event()
        self.paths: list[str] = []
        page = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:
                page.paths.append(self.path)
                page.release.wait(30)
                self.send_response(200)
                self.send_header("X-Cache-Status", status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)

    def close(self) -> None:
        self.release.set()
        super().close()


@pytest.fixture
def held_page() -> Iterator[HeldPage]:
    server = HeldPage()
    yield server
    server.close()


def test_a_purge_that_worked_is_recorded_verified(
    transactional_db: None, settings: Any, nginx_cache: Nginx
) -> None:
    settings.ROAN_BACKENDS = nginx_backend(nginx_cache)
    page = f"{nginx_cache.url}/verify/good"
    requests.get(page, timeout=5)
    assert cache_status(page) == "HIT"

    roan.purge_urls(["/verify/good"])
    finish()

    attempt = PurgeAttempt.objects.get(target="/verify/good")
    assert attempt.status == "ok"
    assert attempt.verification == "verified"
    assert "X-Cache-Status: MISS" in attempt.verification_detail
    # The probe refilled the page, as a reader would.
    assert cache_status(page) == "HIT"


def test_a_purge_that_missed_the_pages_key_is_recorded_still_cached_with_the_hint(
    transactional_db: None, settings: Any, miskeyed_nginx: Nginx, admin_client: Any
) -> None:
    settings.ROAN_BACKENDS = nginx_backend(miskeyed_nginx)
    page = f"{miskeyed_nginx.url}/verify/miskeyed"
    requests.get(page, timeout=5)
    assert cache_status(page) == "HIT"

    roan.purge_urls(["/verify/miskeyed"])
    finish()

    attempt = PurgeAttempt.objects.get(target="/verify/miskeyed")
    # nginx said there was nothing to purge, yet the page is still a hit.
    assert (attempt.status, attempt.http_status) == ("not_cached", 404)
    assert attempt.verification == "still_cached"
    assert "X-Cache-Status: HIT" in attempt.verification_detail

    detail = admin_client.get(f"/admin/roan/purgeattempt/{attempt.pk}/change/")
    assert detail.status_code == 200
    assert 'id="roan-verify-hint"' in detail.text
    assert HINT_START in detail.text

    dashboard = admin_client.get("/admin/roan/dashboard/")
    assert '<td class="roan-num" id="roan-still-cached"><a' in dashboard.text
    assert ">1</a>" in dashboard.text.split('id="roan-still-cached"')[1][:200]
    assert HINT_START in dashboard.text


def varnish_backend(varnish: Any, hosts: list[str], **verify_options: Any) -> dict[str, Any]:
    return {
        "varnish": {
            "BACKEND": "roan.backends.varnish.VarnishBackend",
            "LOCATION": varnish.url,
            "HOSTS": hosts,
            "VERIFY": {"BASE_URL": varnish.url, **verify_options},
        }
    }


def test_a_varnish_purge_that_worked_is_verified_by_its_age(
    transactional_db: None, settings: Any, varnish_cache: Any
) -> None:
    # Varnish keys pages on the Host header with its port, so HOSTS names host:port.
    settings.ROAN_BACKENDS = varnish_backend(
        varnish_cache, [f"127.0.0.1:{varnish_cache.port}"], HEADER=None
    )
    page = f"{varnish_cache.url}/verify/varnish-good"
    requests.get(page, timeout=5)
    assert requests.get(page, timeout=5).headers["X-Cache"] == "HIT"

    roan.purge_urls(["/verify/varnish-good"])
    finish()

    attempt = PurgeAttempt.objects.get(target="/verify/varnish-good")
    assert (attempt.status, attempt.verification) == ("ok", "verified")
    assert "Age: 0" in attempt.verification_detail


def test_a_varnish_purge_sent_for_another_host_is_still_cached(
    transactional_db: None, settings: Any, varnish_cache: Any
) -> None:
    # The purge goes out with Host "127.0.0.1" (the first of HOSTS); the page was cached
    # under "127.0.0.1:<port>": another cache key.
    settings.ROAN_BACKENDS = varnish_backend(
        varnish_cache, ["127.0.0.1", f"127.0.0.1:{varnish_cache.port}"], HEADER="X-Cache"
    )
    page = f"{varnish_cache.url}/verify/varnish-host"
    requests.get(page, timeout=5)

    roan.purge_urls(["/verify/varnish-host"])
    finish()

    attempt = PurgeAttempt.objects.get(target="/verify/varnish-host")
    assert (attempt.status, attempt.http_status) == ("not_cached", 404)
    assert attempt.verification == "still_cached"
    assert "X-Cache: HIT" in attempt.verification_detail


def test_the_dashboard_counts_verified_and_unverified_purges_of_the_last_day(
    db: None, admin_client: Any
) -> None:
    for verdict, n in (("verified", 3), ("still_cached", 0), ("unverifiable", 2)):
        for i in range(n):
            PurgeAttempt.objects.create(
                backend="b", target=f"/{verdict}/{i}", trigger="api", status="ok",
                verification=verdict,
            )  # fmt: skip
    PurgeAttempt.objects.create(backend="b", target="/plain/", trigger="api", status="ok")

    html = admin_client.get("/admin/roan/dashboard/").text

    assert '<td class="roan-num" id="roan-verified">3</td>' in html
    assert '<td class="roan-num" id="roan-still-cached">0</td>' in html
    assert 'id="roan-unverified"><a href="/admin/roan/purgeattempt/?verification__exact=' in html
    assert 'id="roan-verify-hint"' not in html


def test_without_verify_the_dashboard_shows_no_verification_box(
    db: None, admin_client: Any
) -> None:
    PurgeAttempt.objects.create(backend="b", target="/plain/", trigger="api", status="ok")
    assert 'id="roan-verification"' not in admin_client.get("/admin/roan/dashboard/").text


@pytest.mark.parametrize(
    ("hosts", "base_url", "problem"),
    [
        (["www.example.com"], "http://169.254.169.254", "not in the backend's HOSTS"),
        ([], "http://www.example.com", "needs the backend's HOSTS"),
        (["www.example.com"], "http://www.example.com/admin/", "scheme://host[:port] only"),
        (["www.example.com"], "http://user:pw@www.example.com", "scheme://host[:port] only"),
        (["www.example.com"], "file:///etc/passwd", "must be an http(s) URL"),
    ],
)
def test_verify_only_fetches_from_a_host_in_hosts(
    settings: Any, hosts: list[str], base_url: str, problem: str
) -> None:
    config = {
        "BACKEND": "roan.backends.locmem.LocMemBackend",
        "HOSTS": hosts,
        "VERIFY": {"BASE_URL": base_url},
    }
    with pytest.raises(ImproperlyConfigured, match=re.escape(problem)):
        build_backend("site", config)

    settings.ROAN_BACKENDS = {"site": config}
    [error] = check_verify()
    assert error.id == "roan.E110"
    assert problem in error.msg
    # Reported once, under its own id, not again as a backend that cannot be built.
    assert not [m for m in check_backends() if m.id == "roan.E002"]


def test_a_valid_verify_passes_the_checks_and_builds(settings: Any) -> None:
    config = {
        "BACKEND": "roan.backends.locmem.LocMemBackend",
        "HOSTS": ["www.example.com"],
        "VERIFY": {"BASE_URL": "https://www.example.com", "RATE": 1, "TIMEOUT": 1},
    }
    settings.ROAN_BACKENDS = {"site": config}
    assert check_verify() == []
    build_backend("site", config).close()


def test_the_probe_runs_after_the_admin_request_has_answered(
    transactional_db: None, settings: Any, admin_client: Any, held_page: HeldPage, make_rule: Any
) -> None:
    from tests.testapp.models import Post

    settings.ROAN_BACKENDS = {
        "site": {
            "BACKEND": "roan.backends.locmem.LocMemBackend",
            "HOSTS": ["127.0.0.1"],
            "VERIFY": {"BASE_URL": held_page.url},
        }
    }
    post = Post.objects.create(title="Old", slug="held")
    make_rule("post pages", "/posts/{slug}/")

    response = admin_client.post(
        f"/admin/testapp/post/{post.pk}/change/", {"title": "New", "slug": "held", "views": 0}
    )

    # The admin answered while the probe was still held by the page: it did not wait.
    assert response.status_code == 302
    attempt = PurgeAttempt.objects.get(target="/posts/held/")
    assert (attempt.status, attempt.verification) == ("ok", "pending")
    assert not held_page.release.is_set()

    held_page.release.set()
    finish()
    attempt.refresh_from_db()
    assert attempt.verification == "verified"
    assert held_page.paths == ["/posts/held/"]


def test_the_rate_bounds_the_number_of_probes(
    transactional_db: None, settings: Any, held_page: HeldPage
) -> None:
    held_page.release.set()
    settings.ROAN_BACKENDS = {
        "rate-bound": {
            "BACKEND": "roan.backends.locmem.LocMemBackend",
            "HOSTS": ["127.0.0.1"],
            "VERIFY": {"BASE_URL": held_page.url, "RATE": 2},
        }
    }

    roan.purge_urls([f"/many/{i}/" for i in range(10)])
    finish()

    assert len(held_page.paths) == 2
    rows = PurgeAttempt.objects.order_by("id")
    assert [r.verification for r in rows].count("verified") == 2
    over = [r for r in rows if r.verification == "unverifiable"]
    assert len(over) == 8
    assert all("over VERIFY's RATE" in r.verification_detail for r in over)


def test_a_probe_that_gets_no_answer_in_time_is_unverifiable(
    transactional_db: None, settings: Any, held_page: HeldPage
) -> None:
    settings.ROAN_BACKENDS = {
        "slow": {
            "BACKEND": "roan.backends.locmem.LocMemBackend",
            "HOSTS": ["127.0.0.1"],
            "VERIFY": {"BASE_URL": held_page.url, "TIMEOUT": 0.5},
        }
    }

    roan.purge_urls(["/slow-page/"])
    finish()

    attempt = PurgeAttempt.objects.get()
    assert attempt.verification == "unverifiable"
    assert "the probe failed" in attempt.verification_detail


def test_only_url_purges_that_succeeded_are_probed(
    transactional_db: None, settings: Any, held_page: HeldPage
) -> None:
    held_page.release.set()
    settings.ROAN_BACKENDS = {
        "site": {
            "BACKEND": "roan.backends.locmem.LocMemBackend",
            "HOSTS": ["127.0.0.1"],
            "VERIFY": {"BASE_URL": held_page.url},
        }
    }
    roan.purge_urls(["/section/"], kind="prefix")
    finish()
    assert PurgeAttempt.objects.get().verification == ""
    assert held_page.paths == []


def _options(**overrides: Any) -> backend_options.VerifyOptions:
    config = {"HOSTS": ["127.0.0.1"], "VERIFY": {"BASE_URL": "http://127.0.0.1:9", **overrides}}
    options = backend_options.parse_verify("x", config)
    assert options is not None
    return options


@pytest.mark.parametrize(
    ("headers", "since", "verdict"),
    [
        ({"X-Cache-Status": "MISS"}, 0.1, "verified"),
        # A hit within the purge's second is the old copy, whatever its Age.
        ({"X-Cache": "HIT", "Age": "0"}, 0.3, "still_cached"),
        ({"X-Cache-Status": "HIT"}, 0.1, "still_cached"),
        ({"X-Cache-Status": "STALE"}, 0.1, "still_cached"),
        ({"x-cache-status": "hit"}, 0.1, "still_cached"),
        # Varnish: Age > 0 right after the purge is the old copy; Age 0 is fresh.
        ({"Age": "120"}, 0.2, "still_cached"),
        ({"Age": "0"}, 0.2, "verified"),
        # A reader refilled the page 3 s after a purge 5 s ago: fresh, though a hit.
        ({"X-Cache": "HIT", "Age": "2"}, 5.0, "verified"),
        ({"Content-Type": "text/html"}, 0.1, "unverifiable"),
    ],
)
def test_the_answer_is_read_from_the_status_header_or_age(
    headers: dict[str, str], since: float, verdict: str
) -> None:
    header = "X-Cache" if "X-Cache" in headers else "X-Cache-Status"
    answer = CaseInsensitiveDict(headers)
    assert verify.classify(_options(HEADER=header), answer, since)[0] == verdict


def test_a_page_on_another_host_or_with_dot_segments_is_not_fetched(held_page: HeldPage) -> None:
    held_page.release.set()
    options = _options()
    assert verify.probe("x", options, "/a/../admin/", "", 0)[0] == "unverifiable"
    assert verify.probe("x", options, "/a/", "other.example", 0)[0] == "unverifiable"
    assert held_page.paths == []


def test_an_editor_sees_the_still_cached_attempt_and_the_hint_in_the_browser(
    admin_page: Any, settings: Any, miskeyed_nginx: Nginx, nginx_cache: Nginx
) -> None:
    backends = {
        **nginx_backend(nginx_cache, "nginx"),
        **nginx_backend(miskeyed_nginx, "miskeyed"),
    }
    settings.ROAN_BACKENDS = backends
    for server, path in ((nginx_cache, "/verify/seen-ok"), (miskeyed_nginx, "/verify/seen")):
        requests.get(f"{server.url}{path}", timeout=5)
        roan.purge_urls([path], backends=["miskeyed" if server is miskeyed_nginx else "nginx"])
        # One purge at a time: on SQLite the first probe's write and the second claim
        # would race for the file's lock, and the loser's rows wait for roan_dispatch.
        finish()
    still = PurgeAttempt.objects.get(target="/verify/seen")
    assert still.verification == "still_cached"

    admin_page.open("/admin/roan/dashboard/")
    box = admin_page.page.locator("#roan-verification")
    assert box.locator("#roan-verified").inner_text() == "1"
    assert box.locator("#roan-still-cached").inner_text() == "1"
    assert "did not reach the page's cache entry" in box.locator("#roan-verify-hint").inner_text()
    admin_page.screenshot("verify-dashboard")

    admin_page.open(f"/admin/roan/purgeattempt/{still.pk}/change/")
    hint = admin_page.page.locator("#roan-verify-hint")
    assert "X-Cache-Status: HIT" in hint.inner_text()
    assert "check the cache key" in hint.inner_text()
    admin_page.screenshot("verify-attempt")

    admin_page.open("/admin/roan/purgeattempt/")
    assert admin_page.page.locator(".roan-verify-still_cached").count() == 1
    admin_page.screenshot("verify-log", full_page=False)


def test_roan_dispatch_waits_for_its_probes_and_closes_orphaned_ones(
    transactional_db: None, settings: Any, held_page: HeldPage
) -> None:
    import datetime

    from django.core.management import call_command
    from django.utils import timezone

    held_page.release.set()
    settings.ROAN_BACKENDS = {
        "site": {
            "BACKEND": "roan.backends.locmem.LocMemBackend",
            "HOSTS": ["127.0.0.1"],
            "VERIFY": {"BASE_URL": held_page.url},
        }
    }
    # A probe some process never ran (it stopped after recording the purge).
    orphan = PurgeAttempt.objects.create(
        backend="site", target="/orphan/", trigger="api", status="ok", verification="pending",
        finished_at=timezone.now() - datetime.timedelta(hours=1),
    )  # fmt: skip
    with context.hold_dispatch():
        roan.purge_urls(["/queued/"])
    assert PurgeAttempt.objects.get(target="/queued/").status == "pending"

    call_command("roan_dispatch", stdout=io.StringIO())

    # No drain here: the command did not exit before its probe was recorded.
    assert PurgeAttempt.objects.get(target="/queued/").verification == "verified"
    orphan.refresh_from_db()
    assert orphan.verification == "unverifiable"
    assert "ended first" in orphan.verification_detail
    assert held_page.paths == ["/queued/"]
