"""AkamaiBackend against a fake of Fast Purge (CCU v3) on loopback (tests/support/cdn_fakes.py),
which verifies the EdgeGrid signature with Akamai's own library.

What is proved here was checked against that fake only, never against Akamai.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.core import checks
from django.utils import timezone

import roan
from roan.backends import akamai
from roan.backends.akamai import AkamaiBackend
from roan.models import PurgeAttempt
from roan.outbox import completion
from tests.support.cdn_fakes import Answer, Bucket, FakeAkamai, fresh_buckets, rows  # noqa: F401 (autouse)

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT_TOKEN = "akab-client-token-x1"
CLIENT_SECRET = "akamai-Client-Secret-do-not-leak-9Q="
ACCESS_TOKEN = "akab-access-token-x1"


@pytest.fixture
def fake() -> Any:
    server = FakeAkamai(
        client_token=CLIENT_TOKEN,
        client_secret=CLIENT_SECRET,
        access_token=ACCESS_TOKEN,
        contract_hosts=("www.example.com", "media.example.com"),
    )
    yield server
    server.close()


def config(fake: FakeAkamai, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "roan.backends.akamai.AkamaiBackend",
        "HOST": "akab-test.purge.akamaiapis.net",
        "API_URL": fake.url,
        "CLIENT_TOKEN": CLIENT_TOKEN,
        "CLIENT_SECRET": CLIENT_SECRET,
        "ACCESS_TOKEN": ACCESS_TOKEN,
        "HOSTS": ["www.example.com", "media.example.com"],
        "CP_CODES": [12345],
        "TIMEOUT": (1.0, 2.0),
        **options,
    }


@pytest.fixture
def ak(settings: Any, fake: FakeAkamai) -> FakeAkamai:
    settings.ROAN_BACKENDS = {"akamai": config(fake)}
    return fake


def test_a_batch_is_split_at_50000_bytes_and_signed(ak: FakeAkamai, settings: Any) -> None:
    settings.ROAN_MAX_URLS_PER_EVENT = 2000
    # 500 URLs of about 140 bytes: more than 50,000 bytes of body in one dispatcher batch.
    paths = [f"/posts/{i:04d}/{'x' * 100}/" for i in range(500)]
    roan.purge_urls(paths)
    received = ak.purges()
    assert len(received) == 2
    assert all(len(json.dumps(r.body, separators=(",", ":"))) <= 50_000 for r in received)
    assert [r.path for r in received] == ["/ccu/v3/invalidate/url/production"] * 2
    sent = [url for r in received for url in r.body["objects"]]
    assert sent == [f"https://www.example.com{p}" for p in paths]
    assert received[0].headers["Authorization"] == "[checked]"  # the signature verified
    attempts = rows()
    assert {(a.status, a.http_status, a.completion) for a in attempts} == {
        ("ok", 201, "in_progress")
    }
    assert len({a.purge_id for a in attempts}) == 2


def test_estimated_seconds_then_completed(ak: FakeAkamai) -> None:
    ak.estimated_seconds = 240
    before = timezone.now()
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert attempt.completion == "in_progress"
    # The check is due when Akamai said the purge would be done, not before.
    assert attempt.completion_check_at - before >= datetime.timedelta(seconds=239)
    assert completion.check_due() == 0
    PurgeAttempt.objects.update(completion_check_at=timezone.now())
    assert completion.check_due() == 1
    attempt.refresh_from_db()
    assert (attempt.completion, attempt.completed_at is not None) == ("completed", True)


@pytest.mark.parametrize(
    ("estimated", "bound"),
    [(10**400, 86400), (-5, None), (True, None), ("60", None), (12.5, 12.5)],
    ids=["10**400", "negative", "bool", "string", "float"],
)
def test_an_estimate_of_any_size_is_bounded_and_the_purge_stays_ok(
    ak: FakeAkamai, estimated: Any, bound: float | None
) -> None:
    # A JSON integer is unbounded: float(10**400) raised OverflowError, and a purge
    # Akamai had accepted was recorded failed and sent again.
    ak.estimated_seconds = estimated
    before = timezone.now()
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert (attempt.status, attempt.http_status, attempt.completion) == ("ok", 201, "in_progress")
    assert len(ak.purges()) == 1
    due = (attempt.completion_check_at - before).total_seconds()
    if bound is None:
        assert 0 < due <= 601  # the default check time, not the provider's
    else:
        expected = min(bound, completion.MAX_CHECK_AFTER)
        assert expected - 1 <= due <= expected + 1


def test_provider_numbers_are_bounded_without_overflow() -> None:
    from roan.backends._api import MOST_SECONDS, provider_seconds

    assert provider_seconds(10**400) == MOST_SECONDS
    assert provider_seconds(float("inf")) == MOST_SECONDS
    assert provider_seconds(-(10**400)) is None
    assert provider_seconds(float("nan")) is None
    assert provider_seconds(False) is None
    assert provider_seconds("5") is None
    assert provider_seconds(5) == 5.0


def test_tags_cp_codes_delete_and_staging(ak: FakeAkamai, settings: Any) -> None:
    roan.purge_urls(["blog.post"], kind="tag")
    roan.purge_urls([], kind="all")
    settings.ROAN_BACKENDS = {"akamai": config(ak, ACTION="delete", NETWORK="staging")}
    roan.purge_urls(["https://media.example.com/a.png"])
    tag, codes, deleted = ak.purges()
    assert (tag.path, tag.body) == ("/ccu/v3/invalidate/tag/production", {"objects": ["blog.post"]})
    assert (codes.path, codes.body) == (
        "/ccu/v3/invalidate/cpcode/production",
        {"objects": [12345]},
    )
    assert (deleted.path, deleted.body) == (
        "/ccu/v3/delete/url/staging",
        {"objects": ["https://media.example.com/a.png"]},
    )
    # Invalidate is Akamai's soft purge; the log says which each attempt was.
    assert [a.soft for a in rows()] == [True, True, False]


def test_soft_is_invalidate_and_hard_is_delete(ak: FakeAkamai, settings: Any) -> None:
    settings.ROAN_BACKENDS = {"akamai": config(ak, SOFT=False)}
    roan.purge_urls(["/a"])
    settings.ROAN_BACKENDS = {"akamai": config(ak, SOFT=True, ACTION="invalidate")}
    roan.purge_urls(["/b"])
    assert [r.path for r in ak.purges()] == [
        "/ccu/v3/delete/url/production",
        "/ccu/v3/invalidate/url/production",
    ]
    assert [(a.target, a.soft) for a in rows()] == [("/a", False), ("/b", True)]


def test_without_cp_codes_everything_is_refused(ak: FakeAkamai, settings: Any) -> None:
    settings.ROAN_BACKENDS = {"akamai": config(ak, CP_CODES=[])}
    roan.purge_urls([], kind="all")
    assert ak.received == []
    assert rows()[0].status == "skipped"


def test_a_429_waits_for_the_refresh_time(ak: FakeAkamai) -> None:
    ak.objects["url"] = Bucket(1, 1 / 30)  # one URL token, the next in 30 s
    before = timezone.now()
    roan.purge_urls(["/a"])
    roan.purge_urls(["/b"])
    first, second = rows()
    assert first.status == "ok"
    assert (second.status, second.http_status) == ("failed", 429)
    assert (
        second.error
        == "HTTP 429: throttled by Akamai: URL Rate Limit exceeded: Not enough object tokens"
    )
    # No Retry-After: X-Ratelimit-Seconds-To-Refresh-Limit-Objects said 30 (backoff: 5 s).
    assert second.next_attempt_at - before >= datetime.timedelta(seconds=29)


def test_a_host_off_the_contract_is_given_up_with_akamais_message(
    ak: FakeAkamai, settings: Any
) -> None:
    ak.contract_hosts = ("www.example.com",)
    roan.purge_urls(["https://media.example.com/a.png"])
    [attempt] = rows()
    assert (attempt.status, attempt.http_status) == ("gave_up", 403)
    assert attempt.error.startswith("HTTP 403: unauthorized arl: Not on the contract")


def test_a_wrong_secret_is_given_up(ak: FakeAkamai, settings: Any) -> None:
    settings.ROAN_BACKENDS = {"akamai": config(ak, CLIENT_SECRET="not-the-secret=")}
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert (attempt.status, attempt.error) == (
        "gave_up",
        "HTTP 401: Not authorized: The signature does not match",
    )


def test_an_edgerc_section(ak: FakeAkamai, settings: Any, tmp_path: Any) -> None:
    edgerc = tmp_path / ".edgerc"
    edgerc.write_text(
        "[purge]\n"
        "host = akab-test.purge.akamaiapis.net\n"
        f"client_token = {CLIENT_TOKEN}\n"
        f"client_secret = {CLIENT_SECRET}\n"
        f"access_token = {ACCESS_TOKEN}\n"
    )
    options = config(ak, EDGERC=str(edgerc), SECTION="purge")
    for name in ("HOST", "CLIENT_TOKEN", "CLIENT_SECRET", "ACCESS_TOKEN"):
        del options[name]
    settings.ROAN_BACKENDS = {"akamai": options}
    roan.purge_urls(["/a"])
    assert rows()[0].status == "ok"


def test_without_edgegrid_the_check_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, ak: FakeAkamai, settings: Any
) -> None:
    monkeypatch.setattr(akamai, "EdgeGridAuthHeaders", None)
    errors = [m for m in checks.run_checks() if m.id == "roan.E002"]
    assert errors and "pip install 'roan[akamai]'" in errors[0].msg


def test_edge_cache_tag_is_declared() -> None:
    assert (AkamaiBackend.tag_header, AkamaiBackend.tag_separator) == ("Edge-Cache-Tag", ",")
