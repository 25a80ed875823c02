"""AzureFrontDoorBackend against a fake of ARM's Front Door purge on loopback
(tests/support/cdn_fakes.py).

What is proved here was checked against that fake only, never against Azure.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core import checks
from django.utils import timezone

import roan
from roan.backends import azure
from roan.backends.base import PurgeRequest
from roan.outbox import pipeline
from roan.purges import Cause, Purge
from tests.support.cdn_fakes import (  # noqa: F401 (autouse)
    Answer,
    Bucket,
    FakeAzureFrontDoor,
    check_later,
    fresh_buckets,
    rows,
)

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "eyJ0eXAi.azure-Bearer-Token.do-not-leak"
SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"


@pytest.fixture
def fake() -> Any:
    server = FakeAzureFrontDoor(
        token=TOKEN, subscription=SUBSCRIPTION, domains=("www.example.com", "shop.example.com")
    )
    yield server
    server.close()


def config(fake: FakeAzureFrontDoor, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "roan.backends.azure.AzureFrontDoorBackend",
        "API_URL": fake.url,
        "SUBSCRIPTION_ID": SUBSCRIPTION,
        "RESOURCE_GROUP": "web",
        "PROFILE": "roan-profile",
        "ENDPOINT": "roan-endpoint",
        "DOMAINS": ["www.example.com", "shop.example.com"],
        "TOKEN": TOKEN,
        "TIMEOUT": (1.0, 2.0),
        **options,
    }


@pytest.fixture
def afd(settings: Any, fake: FakeAzureFrontDoor) -> FakeAzureFrontDoor:
    settings.ROAN_BACKENDS = {"azure": config(fake)}
    return fake


def test_a_batch_is_split_at_100_paths_then_polled_to_completion(
    afd: FakeAzureFrontDoor,
) -> None:
    paths = [f"/posts/{i}/?page=2" for i in range(101)]
    roan.purge_urls(paths)
    first, second = afd.purges()
    # Front Door's purge ignores query strings: the paths go without them.
    assert first.body == {
        "contentPaths": [p.split("?")[0] for p in paths[:100]],
        "domains": ["www.example.com"],
    }
    assert second.body["contentPaths"] == ["/posts/100/"]
    assert first.query["api-version"] == ["2023-05-01"]
    attempts = rows()
    assert {(a.status, a.http_status, a.completion) for a in attempts} == {
        ("ok", 202, "in_progress")
    }
    assert all(a.purge_id.startswith(f"/subscriptions/{SUBSCRIPTION}/") for a in attempts)
    assert check_later() == 0  # the first poll: still 202
    assert check_later() == 101
    assert {a.completion for a in rows()} == {"completed"}


def test_hosts_prefixes_and_everything(afd: FakeAzureFrontDoor) -> None:
    roan.purge_urls(["https://shop.example.com/cart/*"], kind="prefix")
    host = PurgeRequest("all", "", "shop.example.com")
    pipeline.submit([Purge("azure", host, Cause(trigger="admin"))])
    roan.purge_urls([], kind="all")
    prefix, one_host, everything = (r.body for r in afd.purges())
    assert prefix == {"contentPaths": ["/cart/*"], "domains": ["shop.example.com"]}
    assert one_host == {"contentPaths": ["/*"], "domains": ["shop.example.com"]}
    assert everything == {
        "contentPaths": ["/*"],
        "domains": ["www.example.com", "shop.example.com"],
    }


def test_a_host_outside_domains_never_reaches_azure(afd: FakeAzureFrontDoor) -> None:
    roan.purge_urls(["https://evil.example.net/x"])
    roan.purge_urls(["/not-a-directory"], kind="prefix")
    assert afd.received == []
    assert {a.status for a in rows()} == {"skipped"}


def test_a_429_is_honoured(afd: FakeAzureFrontDoor) -> None:
    afd.writes = Bucket(0, 1 / 120)  # the next write in 120 s
    before = timezone.now()
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert (attempt.status, attempt.http_status) == ("failed", 429)
    assert attempt.error == (
        "HTTP 429: throttled by Azure Front Door: TooManyRequests: The request was throttled."
    )
    assert attempt.next_attempt_at - before >= datetime.timedelta(seconds=119)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("ENDPOINT", "other-endpoint", "HTTP 404: ResourceNotFound: The Resource"),
        ("TOKEN", "expired", "HTTP 401: InvalidAuthenticationToken: The access token is invalid."),
    ],
)
def test_a_configuration_error_is_given_up_with_arms_message(
    afd: FakeAzureFrontDoor, settings: Any, option: str, value: str, message: str
) -> None:
    settings.ROAN_BACKENDS = {"azure": config(afd, **{option: value})}
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert attempt.status == "gave_up" and attempt.error.startswith(message)


def test_a_location_on_another_server_is_never_polled(afd: FakeAzureFrontDoor) -> None:
    afd.script = [Answer(202, None, {"Location": "http://169.254.169.254/metadata"})]
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert (attempt.status, attempt.purge_id, attempt.completion) == ("ok", "", "")
    assert check_later() == 0
    assert len(afd.received) == 1


def test_without_a_token_or_azure_identity_the_check_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, afd: FakeAzureFrontDoor, settings: Any
) -> None:
    monkeypatch.setattr(azure, "DefaultAzureCredential", None)
    options = config(afd)
    del options["TOKEN"]
    settings.ROAN_BACKENDS = {"azure": options}
    errors = [m for m in checks.run_checks() if m.id == "roan.E002"]
    assert errors and "pip install 'roan[azure]'" in errors[0].msg
