"""What every backend is asked in tests/backends/test_every_backend.py, one adapter each.

Django runs one ``BaseCacheTests`` for every cache backend; roan runs one contract for every
purge backend: its options are checked, a save purges through a rule, a 5xx is retried,
its credentials are in no row and no log line. An adapter says, for one backend, how to
start its server (a strict fake of tests/support/cdn_fakes.py), its configuration and
secrets, how to make the server answer 5xx once or refuse the credential (quoting it
back), which URLs a save purged as the server saw them, and which options are refused
with which words. Where a provider's test asserted more than the contract (an exact
error, a purge id), the adapter keeps that as its own expectation.

The configurations and secrets stay in the provider modules (test_<provider>.py), which
hold the cases only that provider has.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from roan.models import PurgeAttempt
from tests.backends import (
    test_akamai,
    test_azure,
    test_bunny,
    test_cloudflare,
    test_cloudfront,
    test_fastly,
    test_http,
)
from tests.support.caches import FakeCache
from tests.support.cdn_fakes import (
    Answer,
    FakeAkamai,
    FakeAPI,
    FakeAzureFrontDoor,
    FakeBunny,
    FakeCloudflare,
    FakeFastly,
    check_later,
    cloudfront_error,
)

Server = Any


class Contract:
    """One backend under the shared suite; subclasses fill in what differs."""

    name: ClassVar[str]  # the test id
    alias: ClassVar[str]  # its key in ROAN_BACKENDS
    secrets: ClassVar[tuple[str, ...]]
    #: (options changed, None to drop one; a fragment of the ImproperlyConfigured message)
    refused_options: ClassVar[list[tuple[dict[str, Any], str]]]
    #: The 5xx the server gives once, and the error the row then shows, word for word.
    five_xx: ClassVar[Answer]
    five_xx_error: ClassVar[str]
    #: The retried row carries the provider's purge id.
    retried_has_id: ClassVar[bool] = False
    #: How many requests a save of one post through three templates makes.
    save_requests: ClassVar[int] = 1
    #: Lines of roan's own log that prove it logged at all.
    log_lines: ClassVar[tuple[str, ...]]
    #: Its server can be made to answer 5xx or refuse the credential (a fake can; a real
    #: nginx or Varnish cannot, and test_nginx.py/test_varnish.py cover those answers).
    scripted: ClassVar[bool] = True

    def warm(self, server: Server, paths: list[str]) -> None:
        """Pages a real cache holds before the save."""

    def serve(self, request: pytest.FixtureRequest) -> Server:
        raise NotImplementedError

    def config(self, server: Server, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def fail_once(self, server: Server) -> None:
        server.script = [self.five_xx]

    def refuse(self, server: Server, settings: Any) -> None:
        """The next call is refused with an error that quotes the credential."""
        raise NotImplementedError

    def after_refusal(self, server: Server) -> None:
        """What roan_dispatch would do next (completion checks), if anything."""

    def check_refused(self, attempt: PurgeAttempt) -> None:
        assert "[redacted]" in attempt.error

    def before_logging(self) -> None:
        """Loggers a user might turn up beside roan's."""

    def check_log(self, text: str) -> None:
        for line in self.log_lines:
            assert line in text

    def purged(self, server: Server) -> list[list[str]]:
        """Per request the server accepted, the targets as it saw them."""
        raise NotImplementedError

    def expected(self, paths: list[str]) -> list[str]:
        return [f"https://www.example.com{p}" for p in paths]

    def check_saved(self, attempts: list[PurgeAttempt]) -> None:
        """What the provider adds to the rows of a save."""


def _serve(request: pytest.FixtureRequest, server: FakeAPI) -> FakeAPI:
    request.addfinalizer(server.close)
    return server


class Cloudflare(Contract):
    name, alias = "cloudflare", "cf"
    secrets = (test_cloudflare.TOKEN,)
    refused_options = [
        ({"ZONE_ID": ""}, "ZONE_ID"),
        ({"API_TOKEN": None}, "API_TOKEN"),
        ({"EMAIL": "x@example.com"}, "not both"),
        ({"HOSTS": []}, "HOSTS"),
        ({"BATCH_SIZE": 501}, "BATCH_SIZE"),
        ({"API_URL": "ftp://x"}, "API_URL"),
        ({"PLAN": "gold"}, "PLAN"),
    ]
    five_xx = Answer(503, "<html>upstream unavailable</html>")
    five_xx_error = "HTTP 503: Cloudflare failed"
    retried_has_id = True
    log_lines = ("cf: POST https://www.example.com/ok on",)

    def serve(self, request: pytest.FixtureRequest) -> Server:
        return _serve(request, FakeCloudflare(zone=test_cloudflare.ZONE, token=self.secrets[0]))

    def config(self, server: Server, **options: Any) -> dict[str, Any]:
        return test_cloudflare.config(server, **options)

    def refuse(self, server: Server, settings: Any) -> None:
        server.echo_credentials = True  # its auth error quotes the token it was sent
        options = self.config(server, API_TOKEN=self.secrets[0] + "-old")
        settings.ROAN_BACKENDS = {self.alias: options}

    def purged(self, server: Server) -> list[list[str]]:
        return [r.body["files"] for r in server.purges()]

    def check_saved(self, attempts: list[PurgeAttempt]) -> None:
        # One request, one purge id on every row it purged.
        assert len({a.purge_id for a in attempts}) == 1 and attempts[0].purge_id


class Fastly(Contract):
    name, alias = "fastly", "fastly"
    secrets = (test_fastly.TOKEN,)
    refused_options = [
        ({"SERVICE_ID": None}, "SERVICE_ID"),
        ({"API_TOKEN": ""}, "API_TOKEN"),
        ({"SOFT": "yes"}, "SOFT"),
        ({"BATCH_SIZE": 257}, "BATCH_SIZE"),
        ({"HOSTS": None}, "HOSTS"),
    ]
    five_xx = Answer(503, {"msg": "Service unavailable"})
    five_xx_error = "HTTP 503: Fastly failed: Service unavailable"
    retried_has_id = True
    save_requests = 3  # a URL is one call
    log_lines = ("fastly: POST https://www.example.com/ok on",)

    def serve(self, request: pytest.FixtureRequest) -> Server:
        return _serve(request, FakeFastly(service=test_fastly.SERVICE, token=self.secrets[0]))

    def config(self, server: Server, **options: Any) -> dict[str, Any]:
        return test_fastly.config(server, **options)

    def refuse(self, server: Server, settings: Any) -> None:
        # A server that quotes the key it was sent, in an error.
        server.script = [Answer(403, {"msg": f"Key {self.secrets[0]} lacks purge_all"})]

    def check_refused(self, attempt: PurgeAttempt) -> None:
        assert attempt.error == "HTTP 403: Key [redacted] lacks purge_all"

    def purged(self, server: Server) -> list[list[str]]:
        prefix = "/purge/www.example.com"
        return [[f"https://www.example.com{r.path.removeprefix(prefix)}"] for r in server.purges()]

    def check_saved(self, attempts: list[PurgeAttempt]) -> None:
        assert len({a.purge_id for a in attempts}) == 3


class Bunny(Contract):
    name, alias = "bunny", "bunny"
    secrets = (test_bunny.KEY,)
    refused_options = [
        ({"PULL_ZONE_ID": "zone-a"}, "PULL_ZONE_ID"),
        ({"API_KEY": None}, "API_KEY"),
        ({"API_KEY": "two\nlines"}, "API_KEY"),
        ({"HOSTS": []}, "HOSTS"),
    ]
    five_xx = Answer(502, "Bad Gateway")
    five_xx_error = "HTTP 502: Bunny failed"
    save_requests = 3  # each URL is one exact call
    log_lines = ("bunny: POST https://www.example.com/ok on",)

    def serve(self, request: pytest.FixtureRequest) -> Server:
        return _serve(request, FakeBunny(zone=test_bunny.ZONE, key=self.secrets[0]))

    def config(self, server: Server, **options: Any) -> dict[str, Any]:
        return test_bunny.config(server, **options)

    def refuse(self, server: Server, settings: Any) -> None:
        message = f"Bad key {self.secrets[0]}"
        server.script = [Answer(401, {"ErrorKey": "unauthorized", "Message": message})]

    def purged(self, server: Server) -> list[list[str]]:
        return [r.query["url"] for r in server.purges()]


class CloudFront(Contract):
    name, alias = "cloudfront", "cloudfront"
    secrets = (test_cloudfront.SECRET_KEY, test_cloudfront.ACCESS_KEY)
    refused_options = [
        ({"DISTRIBUTION_ID": "lower-case"}, "DISTRIBUTION_ID"),
        ({"COLLAPSE_ABOVE": 0}, "COLLAPSE_ABOVE"),
        ({"BATCH_SIZE": 3001}, "BATCH_SIZE"),
        ({"ENDPOINT_URL": "ftp://x"}, "ENDPOINT_URL"),
    ]
    five_xx = cloudfront_error(503, "ServiceUnavailable", "Try again")
    five_xx_error = "CloudFront failed: ServiceUnavailable: Try again"
    retried_has_id = True
    log_lines = ("CreateInvalidation of 1 path(s)", "accepted, in progress", "completed")

    def serve(self, request: pytest.FixtureRequest) -> Server:
        gate = request.getfixturevalue("gate")
        gate.distribution = request.getfixturevalue("distribution")
        return gate

    def config(self, server: Server, **options: Any) -> dict[str, Any]:
        return test_cloudfront.config(server, server.distribution, **options)

    def refuse(self, server: Server, settings: Any) -> None:
        # CloudFront's errors never quote a key; boto3 holds them, not roan.
        server.script = [cloudfront_error(403, "AccessDenied", "denied")]

    def after_refusal(self, server: Server) -> None:
        server.in_progress_gets = 0
        assert check_later() == 1

    def check_refused(self, attempt: PurgeAttempt) -> None:
        assert attempt.error == "AccessDenied: denied"

    def purged(self, server: Server) -> list[list[str]]:
        return test_cloudfront.invalidations(server)

    def expected(self, paths: list[str]) -> list[str]:
        return paths

    def check_saved(self, attempts: list[PurgeAttempt]) -> None:
        assert {a.completion for a in attempts} == {"in_progress"}
        assert len({a.purge_id for a in attempts}) == 1 and attempts[0].purge_id


class Akamai(Contract):
    name, alias = "akamai", "akamai"
    secrets = (test_akamai.CLIENT_SECRET, test_akamai.CLIENT_TOKEN, test_akamai.ACCESS_TOKEN)
    refused_options = [
        ({"HOST": None, "API_URL": None}, "HOST"),
        ({"CLIENT_SECRET": None}, "CLIENT_SECRET"),
        ({"NETWORK": "prod"}, "NETWORK"),
        ({"ACTION": "remove"}, "ACTION"),
        ({"SOFT": "yes"}, "SOFT"),
        ({"SOFT": True, "ACTION": "delete"}, "contradicts"),
        ({"CP_CODES": ["12345"]}, "CP_CODES"),
        ({"EDGERC": "/nonexistent/.edgerc"}, "EDGERC"),
    ]
    five_xx = Answer(503, {"title": "Service Unavailable", "httpStatus": 503})
    five_xx_error = "HTTP 503: Akamai failed: Service Unavailable"
    log_lines = ("akamai: POST https://www.example.com/ok on",)

    def serve(self, request: pytest.FixtureRequest) -> Server:
        fake = FakeAkamai(
            client_token=test_akamai.CLIENT_TOKEN,
            client_secret=test_akamai.CLIENT_SECRET,
            access_token=test_akamai.ACCESS_TOKEN,
            contract_hosts=("www.example.com", "media.example.com"),
        )
        return _serve(request, fake)

    def config(self, server: Server, **options: Any) -> dict[str, Any]:
        return test_akamai.config(server, **options)

    def before_logging(self) -> None:
        # As a user might; building the backend puts it back above DEBUG.
        logging.getLogger("akamai.edgegrid.edgegrid").setLevel(logging.DEBUG)

    def refuse(self, server: Server, settings: Any) -> None:
        server.script = [Answer(401, {"title": f"Bad client secret {self.secrets[0]}"})]

    def check_log(self, text: str) -> None:
        super().check_log(text)
        assert "signing key" not in text
        assert "EG1-HMAC-SHA256" not in text

    def purged(self, server: Server) -> list[list[str]]:
        return [r.body["objects"] for r in server.purges()]

    def check_saved(self, attempts: list[PurgeAttempt]) -> None:
        assert attempts[0].purge_id.startswith("edcp-")


class AzureFrontDoor(Contract):
    name, alias = "azure", "azure"
    secrets = (test_azure.TOKEN,)
    refused_options = [
        ({"SUBSCRIPTION_ID": "sub"}, "SUBSCRIPTION_ID"),
        ({"PROFILE": None}, "PROFILE"),
        ({"DOMAINS": ["www.example.com"], "HOSTS": ["shop.example.com"]}, "DOMAINS"),
        ({"API_VERSION": "latest"}, "API_VERSION"),
        ({"TOKEN": ""}, "TOKEN"),
    ]
    five_xx = Answer(500, {"error": {"code": "InternalServerError", "message": "Oops"}})
    five_xx_error = "HTTP 500: Azure Front Door failed: InternalServerError: Oops"
    log_lines = ("azure: POST /ok on",)

    def serve(self, request: pytest.FixtureRequest) -> Server:
        fake = FakeAzureFrontDoor(
            token=test_azure.TOKEN,
            subscription=test_azure.SUBSCRIPTION,
            domains=("www.example.com", "shop.example.com"),
        )
        return _serve(request, fake)

    def config(self, server: Server, **options: Any) -> dict[str, Any]:
        return test_azure.config(server, **options)

    def refuse(self, server: Server, settings: Any) -> None:
        check_later()  # the first purge's operation is polled before the refusal
        error = {"error": {"code": "AuthorizationFailed", "message": self.secrets[0]}}
        server.script = [Answer(403, error)]

    def purged(self, server: Server) -> list[list[str]]:
        return [r.body["contentPaths"] for r in server.purges()]

    def expected(self, paths: list[str]) -> list[str]:
        return paths

    def check_saved(self, attempts: list[PurgeAttempt]) -> None:
        assert {a.completion for a in attempts} == {"in_progress"}


class HTTP(Contract):
    """The generic backend, against a scripted server that records what it was sent."""

    name, alias = "http", "cdn"
    secrets = (test_http.SECRET,)
    refused_options = [
        ({"METHOD": "PURGE ME"}, "['METHOD'] must be an HTTP method"),
        ({"HEADERS": {"X": "a\r\nInjected: 1"}}, "line break"),
        ({"HOSTS": []}, "['HOSTS'] is required"),
        ({"URL": "https://api/{secret}"}, "{url}, {path}, {host} and {target} only"),
    ]
    five_xx = Answer(503)
    five_xx_error = "HTTP 503"
    save_requests = 3  # one URL a request
    log_lines = ("cdn: POST /ok",)

    def serve(self, request: pytest.FixtureRequest) -> Server:
        server = FakeCache()
        request.addfinalizer(server.close)
        return server

    def config(self, server: Server, **options: Any) -> dict[str, Any]:
        return {
            "BACKEND": "roan.backends.http.HTTPBackend",
            "URL": f"{server.url}/purge?url={{url}}",
            "METHOD": "POST",
            "HEADERS": {"Authorization": f"Bearer {self.secrets[0]}"},
            "HOSTS": ["www.example.com"],
            **options,
        }

    def fail_once(self, server: Server) -> None:
        server.script = [self.five_xx.status]

    def refuse(self, server: Server, settings: Any) -> None:
        server.status = 401

    def check_refused(self, attempt: PurgeAttempt) -> None:
        assert "credentials" in attempt.error

    def purged(self, server: Server) -> list[list[str]]:
        return [parse_qs(urlsplit(path).query)["url"] for _method, path, _h in server.calls]


class RealCache(Contract):
    """nginx or Varnish, the real servers of tests/support/caches.py (one a session).

    A save's purges are seen as the server keeps them: the pages it held are misses after
    the save. The credentials are user info in the node's URL.
    """

    fixture: ClassVar[str]
    status_header: ClassVar[str]
    secrets = ("roan-Cache-Password-do-not-leak",)
    five_xx = Answer(503)
    five_xx_error = ""
    scripted = False
    log_lines = ()

    def __init__(self) -> None:
        self.warmed: list[str] = []

    def serve(self, request: pytest.FixtureRequest) -> Server:
        return request.getfixturevalue(self.fixture)

    def node(self, server: Server) -> str:
        return f"http://roan:{self.secrets[0]}@127.0.0.1:{server.port}"

    def status(self, server: Server, path: str) -> str:
        answer = requests.get(f"{server.url}{path}", headers={"Host": "www.example.com"}, timeout=5)
        return str(answer.headers[self.status_header])

    def warm(self, server: Server, paths: list[str]) -> None:
        for path in paths:
            self.status(server, path)
            assert self.status(server, path) == "HIT"
        self.warmed = paths

    def purged(self, server: Server) -> list[list[str]]:
        return [
            [f"https://www.example.com{path}"]
            for path in self.warmed
            if self.status(server, path) == "MISS"
        ]


class NginxCache(RealCache):
    name, alias = "nginx", "nginx"
    fixture, status_header = "nginx_cache", "X-Cache-Status"
    refused_options = [
        ({"LOCATION": None}, "needs LOCATION or NODES"),
        (
            {"LOCATION": "ftp://roan:roan-Cache-Password-do-not-leak@x/purge"},
            "is not an http(s) URL",
        ),
        ({"NODES": ["http://a/purge"]}, "not both"),
        ({"METHOD": "DELETE"}, "['METHOD'] must be"),
        ({"LOCATION": "http://a/purge?x=1"}, "cannot have a query"),
    ]
    save_requests = 3  # a URL a request

    def config(self, server: Server, **options: Any) -> dict[str, Any]:
        return {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{self.node(server)}/purge",
            "HOSTS": ["www.example.com"],
            **options,
        }


class VarnishCache(RealCache):
    name, alias = "varnish", "varnish"
    fixture, status_header = "varnish_cache", "X-Cache"
    refused_options = [
        ({"NODES": None}, "needs LOCATION or NODES"),
        ({"XKEY": "x"}, "unknown option(s) XKEY"),
        ({"BAN_URL_HEADER": "X Ban"}, "['BAN_URL_HEADER'] must be an HTTP header"),
        ({"NODES": ["http://u:pw@a", "http://u:other@a"]}, "differ only in their credentials"),
    ]
    save_requests = 3

    def config(self, server: Server, **options: Any) -> dict[str, Any]:
        return {
            "BACKEND": "roan.backends.varnish.VarnishBackend",
            "NODES": [self.node(server)],
            "HOSTS": ["www.example.com"],
            **options,
        }


BACKENDS: list[Contract] = [
    Cloudflare(),
    Fastly(),
    Bunny(),
    CloudFront(),
    Akamai(),
    AzureFrontDoor(),
    HTTP(),
    NginxCache(),
    VarnishCache(),
]
#: Those whose server can be told to fail.
SCRIPTED = [b for b in BACKENDS if b.scripted]
