"""What every purge backend does, each against its own server (tests/backends/contract.py):
its options are checked at start-up and by ``manage.py check``, a save purges through a
rule, a 5xx is retried until it succeeds, its credentials are in no row and no log line.

The cases only one provider has sit in test_<provider>.py.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

import roan
from roan.models import PurgeAttempt
from roan.outbox import sender
from tests.backends.contract import BACKENDS, SCRIPTED, Contract
from tests.backends.test_cloudfront import (  # noqa: F401 (fixtures of the CloudFront adapter)
    distribution,
    gate,
    moto,
    set_aws_credentials,
)
from tests.support.cdn_fakes import fresh_buckets, rows  # noqa: F401 (autouse)
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The CloudFront adapter's boto3 finds its keys here; the other backends never look."""
    set_aws_credentials(monkeypatch, tmp_path)


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def contract(request: pytest.FixtureRequest) -> Contract:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=SCRIPTED, ids=[b.name for b in SCRIPTED])
def scripted(request: pytest.FixtureRequest) -> Contract:
    """A backend whose server can be told to answer 5xx or refuse the credential."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def server(request: pytest.FixtureRequest, contract: Contract, settings: Any) -> Any:
    started = contract.serve(request)
    settings.ROAN_BACKENDS = {contract.alias: contract.config(started)}
    return started


def refused_options() -> list[Any]:
    return [
        pytest.param(backend, change, fragment, id=f"{backend.name}-{fragment}-{i}")
        for backend in BACKENDS
        for i, (change, fragment) in enumerate(backend.refused_options)
    ]


@pytest.mark.parametrize(("backend", "change", "fragment"), refused_options())
def test_options_are_checked(
    request: pytest.FixtureRequest,
    settings: Any,
    backend: Contract,
    change: dict[str, Any],
    fragment: str,
) -> None:
    started = backend.serve(request)
    changed = {**backend.config(started), **change}
    options = {k: v for k, v in changed.items() if v is not None}
    cls = import_string(options["BACKEND"])
    with pytest.raises(ImproperlyConfigured, match=re.escape(fragment)) as error:
        cls(backend.alias, {k: v for k, v in options.items() if k != "BACKEND"})
    assert f"'{backend.alias}'" in str(error.value)  # which backend
    for secret in backend.secrets:
        assert secret not in str(error.value)
    settings.ROAN_BACKENDS = {backend.alias: options}
    errors = [m for m in checks.run_checks() if m.id == "roan.E002"]
    assert errors and fragment in errors[0].msg
    for secret in backend.secrets:
        assert secret not in errors[0].msg


def test_a_save_purges_through_a_rule(
    contract: Contract, server: Any, make_rule: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    make_rule("home and lists", "/\n/posts/\n{get_absolute_url}")
    paths = ["/", "/posts/", Post(title="Hello", slug="hello").get_absolute_url()]
    contract.warm(server, paths)
    post = Post.objects.create(title="Hello", slug="hello")
    assert post.get_absolute_url() == paths[2]
    purged = contract.purged(server)
    assert len(purged) == contract.save_requests
    expected = contract.expected(paths)
    assert sorted(url for request in purged for url in request) == sorted(expected)
    attempts = rows()
    assert {(a.status, a.trigger) for a in attempts} == {("ok", "save")}
    contract.check_saved(attempts)
    dumped = [str(v) for v in PurgeAttempt.objects.values_list()]
    for text in (*dumped, caplog.text):
        for secret in contract.secrets:
            assert secret not in text


def test_a_5xx_is_retried_and_then_succeeds(
    scripted: Contract, request: Any, settings: Any
) -> None:
    contract = scripted
    server = contract.serve(request)
    settings.ROAN_BACKENDS = {contract.alias: contract.config(server)}
    contract.fail_once(server)
    roan.purge_urls(["/a"])
    [attempt] = rows()
    assert (attempt.status, attempt.tries) == ("failed", 1)
    assert attempt.http_status == contract.five_xx.status
    assert attempt.error == contract.five_xx_error
    PurgeAttempt.objects.update(next_attempt_at=timezone.now())
    sender.send()
    attempt.refresh_from_db()
    assert (attempt.status, attempt.tries) == ("ok", 2)
    if contract.retried_has_id:
        assert attempt.purge_id


def test_the_credentials_are_in_no_row_and_no_log_line(
    scripted: Contract, request: Any, settings: Any, caplog: Any
) -> None:
    contract = scripted
    server = contract.serve(request)
    settings.ROAN_BACKENDS = {contract.alias: contract.config(server)}
    caplog.set_level(logging.DEBUG)
    contract.before_logging()
    roan.purge_urls(["/ok"])
    contract.refuse(server, settings)
    roan.purge_urls(["/refused"])
    contract.after_refusal(server)
    ok, refused = rows()
    assert (ok.status, refused.status) == ("ok", "gave_up")
    contract.check_refused(refused)
    dumped = [str(v) for v in PurgeAttempt.objects.values_list()]
    for text in (*dumped, caplog.text):
        for secret in contract.secrets:
            assert secret not in text
    contract.check_log(caplog.text)  # it did log
