"""The sampled verification every probe-able backend with HOSTS gets without a VERIFY
option: against a real nginx (example/deploy/nginx.conf, and a copy whose purge location
keys pages another way: every purge answers 404, "not cached", and no page is ever
purged) and a real Varnish with xkey (a tag purge, probed through the tag index).

Each test names its own backend alias: the sampled rate (one probe a second) is kept
per alias in ROAN_CACHE, and a test must not spend another's token.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
import requests
from django.utils import timezone

import roan
from roan.backends import build_backend
from roan.models import PurgeAttempt, TaggedURL
from roan.outbox import verify
from roan.tags import index as tag_index
from tests.support.caches import Nginx
from tests.test_verify import miskeyed_nginx  # noqa: F401 -- a fixture

HINT_START = "The purge did not reach the page&#x27;s cache entry"


def finish() -> None:
    assert verify.verifier.drain(timeout=30)


def nginx(server: Nginx, alias: str, **options: Any) -> dict[str, Any]:
    return {
        alias: {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{server.url}/purge",
            "HOSTS": ["127.0.0.1"],
            **options,
        }
    }


def cached_twice(url: str, header: str = "X-Cache-Status") -> None:
    requests.get(url, timeout=5)
    assert requests.get(url, timeout=5).headers[header] == "HIT"


def test_a_sampled_purge_that_worked_is_recorded_verified_fresh(
    transactional_db: None, settings: Any, nginx_cache: Nginx
) -> None:
    settings.ROAN_VERIFY_SAMPLE = 1  # every purge drawn: the test is about one
    settings.ROAN_BACKENDS = nginx(nginx_cache, "sampled-good")
    page = f"{nginx_cache.url}/sampled/good"
    cached_twice(page)

    roan.purge_urls(["/sampled/good"])
    finish()

    attempt = PurgeAttempt.objects.get(target="/sampled/good")
    assert (attempt.status, attempt.verification) == ("ok", "verified")
    # Fetched from the node the purge went to, with the page's host: nginx's MISS.
    assert "X-Cache-Status: MISS" in attempt.verification_detail


def test_a_sampled_purge_that_missed_the_page_is_recorded_still_cached_and_shown(
    transactional_db: None,
    settings: Any,
    miskeyed_nginx: Nginx,  # noqa: F811
    admin_client: Any,
) -> None:
    settings.ROAN_VERIFY_SAMPLE = 1
    settings.ROAN_BACKENDS = nginx(miskeyed_nginx, "sampled-miskeyed")
    page = f"{miskeyed_nginx.url}/sampled/miskeyed"
    cached_twice(page)

    roan.purge_urls(["/sampled/miskeyed"])
    finish()

    attempt = PurgeAttempt.objects.get(target="/sampled/miskeyed")
    # Without verification this is a success ("not cached"): the page is still served.
    assert (attempt.status, attempt.http_status) == ("not_cached", 404)
    assert attempt.verification == "still_cached"
    assert "X-Cache-Status: HIT" in attempt.verification_detail
    assert requests.get(page, timeout=5).headers["X-Cache-Status"] == "HIT"

    html = admin_client.get("/admin/roan/dashboard/").text
    row = html.split('id="roan-verify-sampled-miskeyed"')[1].split("</tr>")[0]
    assert '<td class="roan-num">0%</td>' in row  # verified fresh
    assert '<td class="roan-num roan-bad">100%</td>' in row  # still cached
    assert HINT_START in html


def test_verify_false_turns_the_sample_off(
    transactional_db: None, settings: Any, nginx_cache: Nginx
) -> None:
    settings.ROAN_VERIFY_SAMPLE = 1
    settings.ROAN_BACKENDS = nginx(nginx_cache, "sampled-off", VERIFY=False)
    cached_twice(f"{nginx_cache.url}/sampled/off")

    roan.purge_urls(["/sampled/off"])
    finish()

    attempt = PurgeAttempt.objects.get(target="/sampled/off")
    assert (attempt.status, attempt.verification) == ("ok", "")
    # Nobody fetched the page since the purge: the next reader is the first.
    assert (
        requests.get(f"{nginx_cache.url}/sampled/off", timeout=5).headers["X-Cache-Status"]
        == "MISS"
    )


def test_without_hosts_nothing_is_probed(settings: Any, nginx_cache: Nginx) -> None:
    settings.ROAN_VERIFY_SAMPLE = 1
    config = nginx(nginx_cache, "no-hosts")
    del config["no-hosts"]["HOSTS"]
    settings.ROAN_BACKENDS = config
    assert verify.options_for("no-hosts") is None
    settings.ROAN_BACKENDS = nginx(nginx_cache, "hosts")
    options = verify.options_for("hosts")
    assert options is not None and options.sampled and options.sample == 1


def test_the_default_sample_is_a_tenth_at_one_probe_a_second(
    settings: Any, nginx_cache: Nginx
) -> None:
    del settings.ROAN_VERIFY_SAMPLE  # the suite's settings turn it off (tests/settings.py)
    settings.ROAN_BACKENDS = nginx(nginx_cache, "default")
    options = verify.options_for("default")
    assert options is not None
    assert (options.sample, options.rate, options.header) == (0.1, 1.0, "X-Cache-Status")
    settings.ROAN_VERIFY_SAMPLE = 0
    assert verify.options_for("default") is None


def test_a_backend_whose_purges_go_to_an_api_is_not_probed_without_base_url(
    settings: Any,
) -> None:
    webhook = {
        "BACKEND": "roan.backends.http.HTTPBackend",
        "URL": "https://api.example.com/purge?url={url}",
        "HOSTS": ["www.example.com"],
    }
    cache = {**webhook, "URL": "http://127.0.0.1:9/purge{path}"}
    del settings.ROAN_VERIFY_SAMPLE  # the default, which the suite's settings turn off
    settings.ROAN_BACKENDS = {"webhook": webhook, "cache": cache}
    assert verify.options_for("webhook") is None
    assert verify.options_for("cache") is not None
    with pytest.raises(Exception, match="needs a BASE_URL"):
        build_backend("webhook", {**webhook, "VERIFY": True})
    build_backend("cache", {**cache, "VERIFY": True}).close()


def test_the_first_purge_is_always_proved_and_the_draw_leaves_the_others_unverified(
    transactional_db: None, settings: Any, nginx_cache: Nginx
) -> None:
    settings.ROAN_VERIFY_SAMPLE = 0.000001
    alias = f"sampled-first-{time.time()}"  # new to this process, like a new deploy's
    settings.ROAN_BACKENDS = nginx(nginx_cache, alias)
    cached_twice(f"{nginx_cache.url}/sampled/first")

    roan.purge_urls(["/sampled/first"])
    finish()
    first = PurgeAttempt.objects.get(target="/sampled/first")
    assert (first.status, first.verification) == ("ok", "verified")

    time.sleep(1.05)  # past the one-probe-a-second rate: only the draw decides now
    roan.purge_urls([f"/sampled/none/{i}" for i in range(20)])
    finish()
    later = PurgeAttempt.objects.filter(target__startswith="/sampled/none/")
    assert set(later.values_list("verification", flat=True)) == {""}


def index(tag: str, host: str, *paths: str) -> None:
    expires = timezone.now() + datetime.timedelta(minutes=5)
    TaggedURL.objects.bulk_create(
        TaggedURL(
            tag=tag, host=host, path=p, url_key=tag_index.url_key(host, p), expires_at=expires
        )
        for p in paths
    )


def varnish(server: Any, alias: str) -> dict[str, Any]:
    return {
        alias: {
            "BACKEND": "roan.backends.varnish.VarnishBackend",
            "LOCATION": server.url,
            # Varnish keys pages on the Host header with its port.
            "HOSTS": [f"127.0.0.1:{server.port}"],
        }
    }


def purge_indexed_tag(
    settings: Any, server: Any, alias: str, tag: str, *paths: str
) -> PurgeAttempt:
    """Cache ``paths`` in Varnish, index them under ``tag``, purge the tag on a sampled
    backend ``alias`` (every purge drawn) and return its attempt once probed."""
    settings.ROAN_VERIFY_SAMPLE = 1
    settings.ROAN_BACKENDS = varnish(server, alias)
    for path in paths:
        cached_twice(server.url + path, "X-Cache")
    index(tag, f"127.0.0.1:{server.port}", *paths)
    roan.purge_tags([tag], backends=[alias])
    finish()
    return PurgeAttempt.objects.get(kind="tag", target=tag)


def test_a_tag_purge_is_verified_by_probing_pages_of_the_tag_index(
    transactional_db: None, settings: Any, varnish_cache: Any
) -> None:
    # The origin tags /vtaga/<n> with xkey "section-vtaga".
    attempt = purge_indexed_tag(
        settings, varnish_cache, "sampled-xkey", "section-vtaga", "/vtaga/1", "/vtaga/2"
    )
    assert (attempt.status, attempt.verification) == ("ok", "verified")
    assert attempt.verification_detail.startswith("2 of 2 tagged page(s)")


def test_a_tag_purge_that_left_an_indexed_page_cached_is_still_cached(
    transactional_db: None, settings: Any, varnish_cache: Any
) -> None:
    # The index says /vtagc/1 carries "section-vtagb" (Django rendered it with the tag),
    # but Varnish's copy carries "section-vtagc" only: the header the cache stores is not
    # the one roan's middleware wrote (a proxy between them rewrote it). The purge
    # succeeds, for /vtagb/1; /vtagc/1 stays.
    attempt = purge_indexed_tag(
        settings, varnish_cache, "sampled-xkey-miss", "section-vtagb", "/vtagb/1", "/vtagc/1"
    )
    assert (attempt.status, attempt.verification) == ("ok", "still_cached")
    assert attempt.verification_detail.startswith("1 of 2 tagged page(s); /vtagc/1:")
    assert "X-Cache: HIT" in attempt.verification_detail
    assert requests.get(varnish_cache.url + "/vtagc/1", timeout=5).headers["X-Cache"] == "HIT"


def test_the_sampled_rate_bounds_the_probes_per_backend(
    transactional_db: None, settings: Any, nginx_cache: Nginx
) -> None:
    settings.ROAN_VERIFY_SAMPLE = 1
    settings.ROAN_BACKENDS = nginx(nginx_cache, f"sampled-rate-{time.time()}")
    roan.purge_urls([f"/sampled/rate/{i}" for i in range(10)])
    finish()
    verdicts = list(PurgeAttempt.objects.values_list("verification", flat=True))
    # One token a second (a burst of one): one probe; the rest stay "not verified".
    assert verdicts.count("") == 9
    assert len(verdicts) == 10


@pytest.mark.parametrize("value", ["0.1", -1, 2, True, float("nan")])
def test_a_sample_that_is_not_a_fraction_is_a_check_error(settings: Any, value: Any) -> None:
    from roan.checks import check_verify

    settings.ROAN_VERIFY_SAMPLE = value
    assert [m.id for m in check_verify()] == ["roan.E110"]
