"""CloudFrontBackend through boto3 against moto's server (a real process on loopback),
behind a gate that adds what moto leaves out of CloudFront's contract (tests/support/cdn_fakes.py).

What is proved here was checked against moto and that gate only, never against AWS.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.utils import timezone

import roan
from roan.backends import cloudfront, get_backend
from roan.backends.base import TAG, URL, PurgeRequest
from roan.backends.cloudfront import TAG_HEADER, CloudFrontBackend
from roan.models import PurgeAttempt
from roan.outbox import completion, pipeline, sender
from roan.purges import Cause, Purge
from roan.tags import collect as tags
from tests.support.caches import require
from tests.support.cdn_fakes import (  # noqa: F401 (fresh_buckets: autouse)
    CloudFrontGate,
    MotoServer,
    check_later,
    cloudfront_error,
    fresh_buckets,
    rows,
)
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

ACCESS_KEY = "AKIAROANTESTKEY00001"
SECRET_KEY = "roan-aws-Secret-Key-do-not-leak-5e7"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        require("moto", "moto[server] is not installed (pip install 'moto[server]')")
    server = MotoServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    set_aws_credentials(monkeypatch, tmp_path)


def set_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """boto3's chain finds these in the environment, and nothing from the home directory."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def distribution(moto: MotoServer, aws_credentials: None) -> str:
    import boto3

    client = boto3.client("cloudfront", region_name="us-east-1", endpoint_url=moto.url)
    origin = {
        "Id": "origin",
        "DomainName": "origin.example.com",
        "CustomOriginConfig": {
            "HTTPPort": 80,
            "HTTPSPort": 443,
            "OriginProtocolPolicy": "http-only",
        },
    }
    answer = client.create_distribution(
        DistributionConfig={
            "CallerReference": f"roan-tests-{datetime.datetime.now().timestamp()}",
            "Comment": "roan tests",
            "Enabled": True,
            "Origins": {"Quantity": 1, "Items": [origin]},
            "DefaultCacheBehavior": {
                "TargetOriginId": "origin",
                "ViewerProtocolPolicy": "allow-all",
                "MinTTL": 0,
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            },
        }
    )
    client.close()
    return str(answer["Distribution"]["Id"])


@pytest.fixture
def gate(moto: MotoServer) -> Iterator[CloudFrontGate]:
    server = CloudFrontGate(moto)
    yield server
    server.close()


def config(gate: CloudFrontGate, distribution: str, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "roan.backends.cloudfront.CloudFrontBackend",
        "DISTRIBUTION_ID": distribution,
        "ENDPOINT_URL": gate.url,
        "HOSTS": ["www.example.com"],
        "TIMEOUT": (1.0, 5.0),
        **options,
    }


@pytest.fixture
def cf(settings: Any, gate: CloudFrontGate, distribution: str) -> CloudFrontGate:
    settings.ROAN_BACKENDS = {"cloudfront": config(gate, distribution)}
    return gate


def invalidations(gate: CloudFrontGate) -> list[list[str]]:
    return [paths for paths, _answer in gate.references.values()]


def test_a_batch_is_one_invalidation_accepted_then_completed(
    cf: CloudFrontGate, settings: Any
) -> None:
    settings.ROAN_MAX_URLS_PER_EVENT = 2000
    paths = [f"/posts/{i}/" for i in range(1001)]
    roan.purge_urls(paths)
    # The dispatcher's batch is 1,000 paths: two invalidations, Quantity checked by the gate.
    assert sorted(map(len, invalidations(cf))) == [1, 1000]
    attempts = rows()
    assert {(a.status, a.http_status, a.completion) for a in attempts} == {
        ("ok", 201, "in_progress")
    }
    assert len({a.purge_id for a in attempts}) == 2
    assert all(a.completion_check_at > timezone.now() for a in attempts)
    # The first status read still says InProgress; the next, Completed.
    assert check_later() == 0
    assert {a.completion for a in rows()} == {"in_progress"}
    assert check_later() == 1001
    done = rows()
    assert {(a.status, a.completion) for a in done} == {("ok", "completed")}
    assert all(a.completed_at is not None for a in done)


def test_prefixes_everything_and_collapse_above(
    cf: CloudFrontGate, settings: Any, distribution: str
) -> None:
    roan.purge_urls(["/posts/*"], kind="prefix")
    roan.purge_urls([], kind="all")
    assert invalidations(cf) == [["/posts/*"], ["/*"]]
    settings.ROAN_BACKENDS = {"cloudfront": config(cf, distribution, COLLAPSE_ABOVE=2)}
    roan.purge_urls(["/posts/a/", "/posts/b/", "/posts/c/?page=2"])
    assert invalidations(cf)[-1] == ["/posts/*"]  # one wildcard instead of three paths
    # Paths sharing only "/" are sent as they are: never "/*" without purge_all.
    roan.purge_urls(["/a/", "/b/", "/c/"])
    assert sorted(invalidations(cf)[-1]) == ["/a/", "/b/", "/c/"]
    assert {a.status for a in rows()} == {"ok"}


def test_a_host_cannot_be_invalidated_alone(cf: CloudFrontGate) -> None:
    host = PurgeRequest("all", "", "www.example.com")
    pipeline.submit([Purge("cloudfront", host, Cause(trigger="admin"))])
    roan.purge_urls(["https://evil.example.net/x"])
    assert cf.received == []
    assert {a.status for a in rows()} == {"skipped"}


def test_a_lost_answer_is_retried_with_the_same_caller_reference(cf: CloudFrontGate) -> None:
    cf.lose_next_answer = True  # moto made the invalidation; roan saw a 500
    roan.purge_urls(["/a", "/b"])
    assert {(a.status, a.http_status) for a in rows()} == {("failed", 500)}
    PurgeAttempt.objects.update(next_attempt_at=timezone.now())
    sender.send()
    assert {(a.status, a.tries) for a in rows()} == {("ok", 2)}
    # One invalidation in all: the retry named the same CallerReference.
    assert len(cf.references) == 1
    creates = [r for r in cf.received if r.method == "POST"]
    assert len(creates) == 2 and creates[0].body == creates[1].body


def test_too_many_invalidations_in_progress_backs_off(cf: CloudFrontGate) -> None:
    cf.max_files = 2
    roan.purge_urls(["/a", "/b"])  # two paths in progress: the budget is spent
    before = timezone.now()
    roan.purge_urls(["/c"])
    first, second, third = rows()
    assert (first.status, second.status) == ("ok", "ok")
    assert (third.status, third.http_status) == ("failed", 400)
    assert third.error.startswith("throttled by CloudFront: TooManyInvalidationsInProgress")
    assert third.next_attempt_at - before >= datetime.timedelta(seconds=59)


def test_throttling_is_retried_and_stops_the_send(
    cf: CloudFrontGate, settings: Any, distribution: str
) -> None:
    settings.ROAN_BACKENDS = {"cloudfront": config(cf, distribution, BATCH_SIZE=1)}
    cf.script = [cloudfront_error(400, "Throttling", "Rate exceeded")]
    roan.purge_urls(["/a", "/b"])
    throttled, unsent = rows()
    assert (throttled.status, throttled.error) == (
        "failed",
        "throttled by CloudFront: Throttling: Rate exceeded",
    )
    # The second batch was not sent into the throttle; both wait for a retry.
    assert unsent.error.startswith("not sent: ") and unsent.status == "failed"
    assert len(cf.received) == 1
    PurgeAttempt.objects.update(next_attempt_at=timezone.now())
    sender.send()
    assert {a.status for a in rows()} == {"ok"}


def test_an_unknown_distribution_is_given_up_with_cloudfronts_message(
    cf: CloudFrontGate, settings: Any
) -> None:
    settings.ROAN_BACKENDS = {"cloudfront": config(cf, "ENOSUCHDIST0")}
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert (attempt.status, attempt.http_status, attempt.next_attempt_at) == (
        "gave_up",
        404,
        None,
    )
    assert attempt.error.startswith("NoSuchDistribution")


def test_access_denied_is_given_up(cf: CloudFrontGate) -> None:
    cf.script = [cloudfront_error(403, "AccessDenied", "User is not authorized")]
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert (attempt.status, attempt.error) == ("gave_up", "AccessDenied: User is not authorized")


def test_roan_dispatch_checks_the_invalidations(cf: CloudFrontGate) -> None:
    roan.purge_urls(["/a"])
    cf.in_progress_gets = 0
    PurgeAttempt.objects.update(completion_check_at=timezone.now())
    call_command("roan_dispatch", verbosity=0)
    [attempt] = rows()
    assert attempt.completion == "completed"


def test_without_boto3_the_check_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setattr(cloudfront, "boto3", None)
    options = {"DISTRIBUTION_ID": "EDFDVBD6EXAMPLE"}
    with pytest.raises(ImproperlyConfigured, match=r"pip install 'roan\[cloudfront\]'"):
        CloudFrontBackend("cloudfront", options)
    settings.ROAN_BACKENDS = {
        "cloudfront": {"BACKEND": "roan.backends.cloudfront.CloudFrontBackend", **options}
    }
    errors = [m for m in checks.run_checks() if m.id == "roan.E002"]
    assert errors and "pip install 'roan[cloudfront]'" in errors[0].msg


def test_the_log_and_the_dashboard_show_invalidations_in_progress(
    cf: CloudFrontGate, admin_client: Any
) -> None:
    roan.purge_urls(["/a", "/b"])
    page = admin_client.get("/admin/roan/purgeattempt/?completion__exact=in_progress")
    assert page.status_code == 200
    assert page.content.decode().count("roan-completion-in_progress") == 2
    dashboard = admin_client.get("/admin/roan/dashboard/").content.decode()
    assert '<td class="roan-num" id="roan-in-progress"><a href=' in dashboard
    cf.in_progress_gets = 0
    assert check_later() == 2
    page = admin_client.get("/admin/roan/purgeattempt/?completion__exact=completed")
    assert page.content.decode().count("roan-completion-completed") == 2
    dashboard = admin_client.get("/admin/roan/dashboard/").content.decode()
    assert '<td class="roan-num" id="roan-in-progress">0</td>' in dashboard


def test_an_invalidation_never_reported_done_is_not_confirmed(cf: CloudFrontGate) -> None:
    cf.in_progress_gets = 10**6
    roan.purge_urls(["/a"])
    long_ago = timezone.now() - datetime.timedelta(seconds=completion.DEADLINE + 60)
    PurgeAttempt.objects.update(finished_at=long_ago)
    assert check_later() == 0
    [attempt] = rows()
    assert (attempt.status, attempt.completion, attempt.completion_check_at) == (
        "ok",
        "unconfirmed",
        None,
    )


# -- invalidation by cache tag (the TAGS option) ---------------------------------------------


@pytest.fixture
def cf_tags(settings: Any, gate: CloudFrontGate, distribution: str) -> CloudFrontGate:
    settings.ROAN_BACKENDS = {"cloudfront": config(gate, distribution, TAGS=True)}
    return gate


def test_a_tag_purge_is_one_invalidation_of_tag_items(cf_tags: CloudFrontGate) -> None:
    roan.purge_tags(["blog.post:1", "blog.post"])
    assert [sorted(items) for items in invalidations(cf_tags)] == [["#blog.post", "#blog.post:1"]]
    attempts = rows()
    assert {(a.kind, a.status, a.http_status, a.completion) for a in attempts} == {
        ("tag", "ok", 201, "in_progress")
    }
    assert check_later() == 0
    assert check_later() == 2
    assert {a.completion for a in rows()} == {"completed"}


def test_paths_and_tags_share_a_batch_and_collapsing_folds_only_paths(
    cf_tags: CloudFrontGate, distribution: str
) -> None:
    backend = CloudFrontBackend("cloudfront", config(cf_tags, distribution, TAGS=True))
    requests = [PurgeRequest(URL, "/posts/a/"), PurgeRequest(TAG, "Blog.Post")]
    [result, _] = backend.purge(backend.node, requests)
    assert result.status == "ok"
    # Tags are matched without regard to case: sent once, lower-cased.
    assert invalidations(cf_tags)[-1] == ["/posts/a/", "#blog.post"]
    folding = CloudFrontBackend(
        "cloudfront", config(cf_tags, distribution, TAGS=True, COLLAPSE_ABOVE=1)
    )
    requests = [
        PurgeRequest(URL, "/posts/a/"),
        PurgeRequest(URL, "/posts/b/"),
        PurgeRequest(TAG, "blog.post:1"),
    ]
    folding.purge(folding.node, requests)
    assert invalidations(cf_tags)[-1] == ["/posts/*", "#blog.post:1"]
    backend.close()
    folding.close()


@pytest.mark.parametrize(
    ("tag", "why"),
    [
        ("a" * 257, "1 to 256"),
        ("caf\u00e9", "visible ASCII"),
        ("wild*", "'*'"),
    ],
)
def test_a_tag_cloudfront_cannot_take_is_skipped_not_sent(
    cf_tags: CloudFrontGate, tag: str, why: str
) -> None:
    roan.purge_tags([tag, "fine"])
    assert invalidations(cf_tags) == [["#fine"]]
    skipped = [a for a in rows() if a.status == "skipped"]
    assert [a.target for a in skipped] == [tag]
    assert why in skipped[0].error


def test_tags_count_toward_the_paths_in_progress(cf_tags: CloudFrontGate) -> None:
    cf_tags.max_files = 2
    roan.purge_tags(["a", "b", "c"])
    assert invalidations(cf_tags) == []
    assert {(a.status, a.error.split(":")[0]) for a in rows()} == {
        ("failed", "throttled by CloudFront")
    }


def test_without_the_option_cloudfront_takes_no_tags_and_pages_carry_none(
    settings: Any, gate: CloudFrontGate, distribution: str
) -> None:
    settings.ROAN_BACKENDS = {"cloudfront": config(gate, distribution)}
    assert TAG not in get_backend("cloudfront").capabilities
    assert tags.tag_backends() == {}
    settings.ROAN_BACKENDS = {"cloudfront": config(gate, distribution, TAGS=True)}
    assert list(tags.tag_backends()) == [TAG_HEADER]


def test_the_page_header_keeps_within_cloudfronts_50_tags(
    settings: Any, gate: CloudFrontGate, distribution: str
) -> None:
    settings.ROAN_BACKENDS = {"cloudfront": config(gate, distribution, TAGS=True)}
    backend = get_backend("cloudfront")
    few = [f"testapp.post:{i}" for i in range(49)]
    assert tags.header_value(few, backend) == ",".join(sorted(few))
    # 60 objects of one model: past 50, the model's list tag stands for them all.
    many = [f"testapp.post:{i}" for i in range(60)] + ["testapp.author:1"]
    assert tags.header_value(many, backend) == "testapp.author:1,testapp.post"


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_tags_option_is_a_boolean(value: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="TAGS"):
        CloudFrontBackend("cloudfront", {"DISTRIBUTION_ID": "EDFDVBD6EXAMPLE", "TAGS": value})


def test_a_saved_post_invalidates_its_tags_with_no_index_expansion(
    cf_tags: CloudFrontGate, settings: Any
) -> None:
    settings.ROAN_TAGS = True
    post = Post.objects.create(title="Hello", slug="hello")
    post.title = "Hello again"
    post.save()
    # The update's object and list tags, as tag items: no URL from the tag index.
    assert sorted(invalidations(cf_tags)[-1]) == ["#testapp.post", f"#testapp.post:{post.pk}"]
    assert {a.kind for a in rows() if a.trigger == "save"} == {"tag"}


def test_pages_carry_the_header_cloudfront_reads_only_with_the_option(
    settings: Any, gate: CloudFrontGate, distribution: str, client: Any
) -> None:
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    post = Post.objects.create(title="One", slug="one")
    settings.ROAN_BACKENDS = {"cloudfront": config(gate, distribution, TAGS=True)}
    response = client.get(f"/front/{post.pk}/")
    assert response.headers[TAG_HEADER] == f"testapp.post,testapp.post:{post.pk}"
    settings.ROAN_BACKENDS = {"cloudfront": config(gate, distribution)}
    assert TAG_HEADER not in client.get(f"/front/{post.pk}/").headers
