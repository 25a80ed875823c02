"""Fakes of CDN purge APIs on loopback, strict about each provider's documented contract.

Each fake is a real HTTP server in a thread (``tests.support.caches.LoopbackServer``). It checks
what the provider checks (credentials, the body's shape, batch caps, absolute URLs),
answers with the provider's envelopes and status codes, throttles with a token bucket
and the provider's own headers, and records every request it received (credentials
replaced by ``"[checked]"`` once compared). ``script`` holds canned answers given before
anything is checked, for faults (a 503, a 429 from elsewhere). The contracts are those
of ``shared/research/purge-apis.md``; where the research marks a detail unverified, the
fake's choice is said in a comment.
"""

from __future__ import annotations

import calendar
import dataclasses
import email.utils
import http.client
import itertools
import json
import math
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree

import pytest
from django.core.cache import caches
from django.utils import timezone

from roan.models import PurgeAttempt
from roan.outbox import completion
from tests.support.caches import LoopbackServer


@dataclasses.dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any  # parsed JSON, the raw text when it is not JSON, None when empty
    #: It passed the contract checks and was answered 2xx.
    ok: bool = False


@dataclasses.dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


class Bucket:
    """A token bucket: ``burst`` tokens, ``rate`` more a second (0: none come back)."""

    def __init__(self, burst: float, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens = burst
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def take(self, count: float = 1.0) -> float:
        """0 when ``count`` tokens were taken, else the seconds until they would be."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= count:
                self.tokens -= count
                return 0.0
            if self.rate <= 0:
                return 60.0
            return (count - self.tokens) / self.rate


class FakeAPI(LoopbackServer):
    """Records requests, plays ``script`` first, then asks :meth:`handle`."""

    #: Header names whose values are credentials: compared, then recorded as "[checked]".
    secret_headers: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Answer] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                headers = dict(self.headers)
                recorded = {
                    k: ("[checked]" if k.lower() in fake.secret_headers else v)
                    for k, v in headers.items()
                }
                request = Received(self.command, parts.path, parse_qs(parts.query), recorded, body)
                with fake.lock:
                    fake.received.append(request)
                    scripted = fake.script.pop(0) if fake.script else None
                if scripted is None:
                    scripted = fake.handle(request, headers, raw)
                payload = b""
                if scripted.body is not None:
                    text = (
                        scripted.body
                        if isinstance(scripted.body, str)
                        else json.dumps(scripted.body)
                    )
                    payload = text.encode()
                self.send_response(scripted.status)
                headers_out = {**fake.always_headers(), **scripted.headers}
                for name, value in headers_out.items():
                    self.send_header(name, value)
                if payload and "Content-Type" not in headers_out:
                    self.send_header("Content-Type", fake.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PURGE = answer

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)

    content_type = "application/json"

    def always_headers(self) -> dict[str, str]:
        return {}

    def handle(self, request: Received, headers: dict[str, str], raw: bytes) -> Answer:
        raise NotImplementedError

    def purges(self) -> list[Received]:
        """The requests that reached the contract checks and passed them (2xx)."""
        return [r for r in self.received if r.ok]


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


# -- Cloudflare -----------------------------------------------------------------------------


class FakeCloudflare(FakeAPI):
    """``POST /client/v4/zones/{zone}/purge_cache`` (``DELETE`` too, as the API still takes),
    and ``POST .../invalidate_cache`` (the same selectors, marked stale instead).

    Envelope ``{"success", "errors", "messages", "result"}``; codes 1012 (no known key),
    1014 (not an array); relative ``files`` refused with Cloudflare's message; ``cap``
    values per request (30 by default, the old limit; 100 or 500 by plan). The purge
    bucket answers 429 with ``Retry-After`` (seconds) and ``X-RateLimit-Reset`` (RFC
    1123), with ``X-RateLimit-Limit``/``-Remaining`` on every answer.
    """

    secret_headers = ("authorization", "x-auth-key", "x-auth-email")
    KEYS = ("purge_everything", "files", "tags", "hosts", "prefixes")

    def __init__(
        self,
        *,
        zone: str = "023e105f4ecef8ad9ca31a8372d0c353",
        token: str = "cf-token",
        email: str | None = None,
        api_key: str | None = None,
        cap: int = 30,
        burst: float = 1000,
        rate: float = 1000,
    ) -> None:
        self.zone, self.token, self.email, self.api_key = zone, token, email, api_key
        self.cap = cap
        self.bucket = Bucket(burst, rate)
        #: Echo the credential it was sent in the auth error (a careless server's habit),
        #: to prove roan blanks it out.
        self.echo_credentials = False
        super().__init__()

    def always_headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(int(self.bucket.burst)),
                "X-RateLimit-Remaining": str(max(0, int(self.bucket.tokens)))}  # fmt: skip

    @staticmethod
    def envelope(status: int, *errors: tuple[int, str], result: Any = None) -> Answer:
        return Answer(
            status,
            {
                "success": not errors,
                "errors": [{"code": c, "message": m} for c, m in errors],
                "messages": [],
                "result": result,
            },
        )

    def handle(self, request: Received, headers: dict[str, str], raw: bytes) -> Answer:
        # invalidate_cache (mark stale, Cloudflare's soft purge) takes the same body.
        match = re.fullmatch(r"/client/v4/zones/([^/]+)/(purge|invalidate)_cache", request.path)
        methods = {"POST", "DELETE"} if match and match.group(2) == "purge" else {"POST"}
        if request.method not in methods or not match:
            return self.envelope(404, (7000, "No route for that URI"))
        bearer = _header(headers, "Authorization")
        if bearer is not None:
            authorised = bearer == f"Bearer {self.token}"
            shown = bearer
        else:
            given = (_header(headers, "X-Auth-Email"), _header(headers, "X-Auth-Key"))
            authorised = self.email is not None and given == (self.email, self.api_key)
            shown = str(given[1])
        if not authorised:
            detail = f" for {shown!r}" if self.echo_credentials else ""
            return self.envelope(403, (10000, f"Authentication error{detail}"))
        if match.group(1) != self.zone:
            return self.envelope(
                400,
                (7003, "Could not route to /zones/x/purge_cache, perhaps your object "
                       "identifier is invalid?"),
            )  # fmt: skip
        if wait := self.bucket.take():
            retry = max(1, math.ceil(wait))
            answer = self.envelope(429, (10429, "Rate limit enforced for cache purge."))
            answer.headers = {
                "Retry-After": str(retry),
                "X-RateLimit-Reset": email.utils.formatdate(time.time() + retry, usegmt=True),
            }
            return answer
        body = request.body
        if _header(headers, "Content-Type") != "application/json" or not isinstance(body, dict):
            return self.envelope(400, (1012, 'Request must contain one of "purge_everything", '
                                             '"files", "tags", "hosts" or "prefixes"'))  # fmt: skip
        keys = [k for k in body if k in self.KEYS]
        if not keys or set(body) - set(self.KEYS):
            return self.envelope(400, (1012, 'Request must contain one of "purge_everything", '
                                             '"files", "tags", "hosts" or "prefixes"'))  # fmt: skip
        if len(keys) > 1:
            # Mixing kinds is not documented; this fake refuses it.
            return self.envelope(400, (1012, "Only one purge type per request"))
        key = keys[0]
        if key == "purge_everything":
            if body[key] is not True:
                return self.envelope(400, (1012, "purge_everything must be true"))
        else:
            values = body[key]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                return self.envelope(400, (1014, '"files", "tags", or "hosts" must be an array'))
            if len(values) > self.cap:
                # The exact code is unverified; the limit is Cloudflare's.
                return self.envelope(
                    400, (1018, f"Requests can only contain up to {self.cap} {key}")
                )
            if key == "files":
                for url in values:
                    parts = urlsplit(url)
                    if parts.scheme not in {"http", "https"} or not parts.netloc:
                        return self.envelope(
                            400, (1016, f"Unable to purge{url}, which is an invalid URL.")
                        )
            if key == "prefixes" and any("://" in v or "?" in v for v in values):
                return self.envelope(400, (1016, "A prefix has no scheme and no query string"))
        request.ok = True
        return self.envelope(200, result={"id": uuid.uuid4().hex})


# -- Fastly -------------------------------------------------------------------------------


class FakeFastly(FakeAPI):
    """Fastly's purge API: ``POST /purge/{host/path}`` (one URL), ``POST
    /service/{id}/purge`` (``{"surrogate_keys": [...]}`` or a ``Surrogate-Key`` header,
    at most 256), ``POST /service/{id}/purge/{key}`` and ``POST /service/{id}/purge_all``
    (never soft). ``Fastly-Key`` on every call (URL purges too: the service is set up
    with ``Fastly-Purge-Requires-Auth``). A new id per purge; purge_all counts against
    ``purge_all_per_hour``, answered 429 with ``Fastly-RateLimit-Reset`` (epoch seconds).
    """

    secret_headers = ("fastly-key",)
    MAX_KEYS = 256

    def __init__(
        self, *, service: str = "SU1Z0isxPaozGVKXdv0eY", token: str = "fastly-token"
    ) -> None:
        self.service, self.token = service, token
        self.purge_all_per_hour = 1000
        self.purge_all_count = 0
        self.window_end = int(time.time()) + 3600
        self.require_url_auth = True
        self.ids = itertools.count(1)
        super().__init__()

    def always_headers(self) -> dict[str, str]:
        left = max(0, self.purge_all_per_hour - self.purge_all_count)
        return {"Fastly-RateLimit-Remaining": str(left),
                "Fastly-RateLimit-Reset": str(self.window_end)}  # fmt: skip

    def new_id(self) -> str:
        return f"108-{int(time.time())}-{next(self.ids)}"

    def handle(self, request: Received, headers: dict[str, str], raw: bytes) -> Answer:
        if request.method != "POST":
            return Answer(405, {"msg": "Method not allowed"})
        key = _header(headers, "Fastly-Key")
        is_url = request.path.startswith("/purge/")
        if key != self.token and (key is not None or not is_url or self.require_url_auth):
            return Answer(401, {"msg": "Provided credentials are missing or invalid"})
        soft = _header(headers, "Fastly-Soft-Purge") is not None
        if is_url:
            cached = unquote(request.path.removeprefix("/purge/"))
            bad = "://" in cached or "/" not in cached or cached.startswith("/")
            if bad or request.query:
                return Answer(400, {"msg": "Bad request", "detail": "Expected host/path"})
            request.ok = True
            return Answer(200, {"status": "ok", "id": self.new_id()})
        match = re.fullmatch(r"/service/([^/]+)/(purge_all|purge)(?:/([^/]+))?", request.path)
        if not match:
            return Answer(404, {"msg": "Record not found", "detail": "No such route"})
        if match.group(1) != self.service:
            return Answer(404, {"msg": "Record not found", "detail": "Cannot find service"})
        if match.group(2) == "purge_all":
            if match.group(3) is not None:
                return Answer(404, {"msg": "Record not found"})
            if soft:
                return Answer(400, {"msg": "Purge-all requests cannot be done in soft mode"})
            if self.purge_all_count >= self.purge_all_per_hour:
                return Answer(429, {"msg": "Too many requests"},
                              {"Fastly-RateLimit-Remaining": "0"})  # fmt: skip
            self.purge_all_count += 1
            request.ok = True
            return Answer(200, {"status": "ok"})
        if match.group(3) is not None:
            request.ok = True
            return Answer(200, {"status": "ok", "id": self.new_id()})
        if isinstance(request.body, dict):
            keys = request.body.get("surrogate_keys")
            if set(request.body) != {"surrogate_keys"} or not isinstance(keys, list):
                return Answer(400, {"msg": "Bad request", "detail": "Expected surrogate_keys"})
        elif (header := _header(headers, "Surrogate-Key")) is not None:
            keys = header.split()
        else:
            return Answer(400, {"msg": "Bad request", "detail": "No surrogate keys given"})
        if not keys or not all(isinstance(k, str) and k and " " not in k for k in keys):
            return Answer(400, {"msg": "Bad request", "detail": "Invalid surrogate key"})
        if len(keys) > self.MAX_KEYS:
            # The exact body is unverified; the cap of 256 is documented.
            return Answer(400, {"msg": "Bad request",
                                "detail": f"At most {self.MAX_KEYS} surrogate keys"})  # fmt: skip
        request.ok = True
        return Answer(200, {k: self.new_id() for k in keys})


# -- Bunny --------------------------------------------------------------------------------


class FakeBunny(FakeAPI):
    """bunny.net: ``POST /purge?url=<absolute url>[&async=..]`` (one URL or wildcard per
    call) and ``POST /pullzone/{id}/purgeCache`` (empty body: the zone;
    ``{"CacheTag": "t"}``: one tag). ``AccessKey`` auth. Errors as ``{"ErrorKey",
    "Field", "Message"}``. Two token buckets per account: exact (120, 5 a second) and
    wildcard (20, 0.5 a second); over one, 429 with ``Retry-After`` (whether Bunny sends
    that header is unverified: its docs promise "guidance on when to retry").
    """

    secret_headers = ("accesskey",)

    def __init__(self, *, zone: int = 1234567, key: str = "bunny-key") -> None:
        self.zone, self.key = zone, key
        self.exact = Bucket(120, 5)
        self.wildcard = Bucket(20, 0.5)
        super().__init__()

    @staticmethod
    def error(status: int, key: str, field: str, message: str) -> Answer:
        return Answer(status, {"ErrorKey": key, "Field": field, "Message": message})

    def handle(self, request: Received, headers: dict[str, str], raw: bytes) -> Answer:
        if request.method != "POST":
            return Answer(405)
        if _header(headers, "AccessKey") != self.key:
            return self.error(401, "unauthorized", "AccessKey", "Authorization has been denied")
        if request.path == "/purge":
            urls = request.query.get("url", [])
            if len(urls) != 1:
                return self.error(400, "purge.url.missing", "url", "A single url is required")
            url = urls[0]
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                return self.error(400, "purge.url.invalid", "url", f"The URL {url} is invalid")
            exact = request.query.get("exactPath") == ["true"]
            wildcard = "*" in url or (parts.path.endswith("/") and not exact)
            bucket = self.wildcard if wildcard else self.exact
            if wait := bucket.take():
                answer = self.error(429, "ratelimit", "", "Too many purge requests")
                answer.headers = {"Retry-After": str(max(1, math.ceil(wait)))}
                return answer
            request.ok = True
            return Answer(200)
        match = re.fullmatch(r"/pullzone/([0-9]+)/purgeCache", request.path)
        if not match:
            return self.error(404, "route.not_found", "", "Not found")
        if int(match.group(1)) != self.zone:
            return self.error(
                404, "pullzone.not_found", "id", "The requested Pull Zone was not found"
            )
        if request.body is not None and (
            not isinstance(request.body, dict)
            or set(request.body) != {"CacheTag"}
            or not isinstance(request.body["CacheTag"], str)
        ):
            return self.error(400, "pullzone.purge.invalid", "CacheTag", "Invalid request body")
        if wait := self.wildcard.take():
            answer = self.error(429, "ratelimit", "", "Too many purge requests")
            answer.headers = {"Retry-After": str(max(1, math.ceil(wait)))}
            return answer
        request.ok = True
        return Answer(204)


# -- CloudFront: moto's server behind a gate that holds it to CloudFront's contract --------


class MotoServer:
    """moto's server (``moto[server]``) as a real process on a free loopback port."""

    def __init__(self) -> None:
        from tests.support.caches import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.1)

    def close(self) -> None:
        from tests.support.caches import stop_process

        stop_process(self.proc)


_CF_NS = "http://cloudfront.amazonaws.com/doc/2020-05-31/"


def cloudfront_error(status: int, code: str, message: str) -> Answer:
    """CloudFront's ``ErrorResponse`` XML."""
    body = (
        f'<?xml version="1.0"?><ErrorResponse xmlns="{_CF_NS}"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return Answer(status, body)


class CloudFrontGate(FakeAPI):
    """A proxy in front of moto that adds what moto leaves out of CloudFront's contract.

    moto answers ``CreateInvalidation`` with 200 and ``COMPLETED`` at once, and does not
    deduplicate ``CallerReference``. The gate checks the batch (``Quantity`` equal to the
    number of paths, paths starting with ``/``, ``*`` only last, ``#tag`` items in the
    format CloudFront documents for invalidation by cache tag), keeps the in-progress
    budget (3,000 paths, a tag counting as one, and 15 wildcards per distribution,
    ``TooManyInvalidationsInProgress``),
    answers 201 with ``InProgress``, replays the first answer for a repeated reference
    with the same paths (``InvalidationBatchAlreadyExists`` with other paths), and
    reports an invalidation ``InProgress`` for its first ``in_progress_gets`` status
    reads, then ``Completed``. ``lose_next_answer`` forwards a create to moto and then
    answers 500, as a lost answer looks to the sender.
    """

    secret_headers = ("authorization",)
    content_type = "text/xml"

    def __init__(self, moto: MotoServer) -> None:
        self.moto = moto
        self.max_files = 3000
        self.max_wildcards = 15
        self.in_progress_gets = 1
        self.lose_next_answer = False
        self.references: dict[str, tuple[list[str], Answer]] = {}
        self.in_progress: dict[str, list[str]] = {}  # invalidation id -> paths
        self.gets: dict[str, int] = {}
        super().__init__()

    def forward(self, request: Received, headers: dict[str, str], raw: bytes) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.moto.port, timeout=10)
        query = "&".join(f"{k}={v}" for k, vs in request.query.items() for v in vs)
        path = request.path + (f"?{query}" if query else "")
        try:
            connection.request(request.method, path, body=raw or None, headers=headers)
            response = connection.getresponse()
            body = response.read().decode()
            passed = {"Location", "ETag"}
            kept = {k: v for k, v in response.getheaders() if k in passed}
            return Answer(response.status, body, kept)
        finally:
            connection.close()

    def handle(self, request: Received, headers: dict[str, str], raw: bytes) -> Answer:
        auth = _header(headers, "Authorization") or ""
        if not auth.startswith("AWS4-HMAC-SHA256 Credential=") or "Signature=" not in auth:
            return cloudfront_error(403, "MissingAuthenticationToken", "Request is not signed")
        create = re.fullmatch(r"/2020-05-31/distribution/([^/]+)/invalidation", request.path)
        if create and request.method == "POST":
            return self.create(request, headers, raw)
        read = re.fullmatch(r"/2020-05-31/distribution/([^/]+)/invalidation/([^/]+)", request.path)
        answer = self.forward(request, headers, raw)
        if read and request.method == "GET" and answer.status == 200:
            purge_id = read.group(2)
            self.gets[purge_id] = self.gets.get(purge_id, 0) + 1
            done = self.gets[purge_id] > self.in_progress_gets
            if done:
                self.in_progress.pop(purge_id, None)
            status = "Completed" if done else "InProgress"
            answer.body = re.sub(
                r"<Status>[^<]*</Status>", f"<Status>{status}</Status>", answer.body
            )
        return answer

    def create(self, request: Received, headers: dict[str, str], raw: bytes) -> Answer:
        try:
            root = ElementTree.fromstring(raw)
        except ElementTree.ParseError:
            return cloudfront_error(400, "MalformedXML", "The XML you provided was not well-formed")
        ns = {"cf": _CF_NS}
        reference = root.findtext("cf:CallerReference", namespaces=ns) or ""
        quantity = root.findtext("cf:Paths/cf:Quantity", namespaces=ns)
        paths = [p.text or "" for p in root.findall("cf:Paths/cf:Items/cf:Path", ns)]
        if not reference:
            return cloudfront_error(400, "InvalidArgument", "CallerReference is required")
        if quantity is None or int(quantity) != len(paths):
            return cloudfront_error(
                400, "InconsistentQuantities", "Quantity must equal the number of paths"
            )
        for path in paths:
            if path.startswith("#"):
                # A cache tag (CloudFront's invalidation by tag): visible ASCII but the
                # comma, at most 256 characters, no wildcard.
                if not re.fullmatch(r"[\x21-\x29\x2b\x2d-\x7e]{1,256}", path[1:]):
                    return cloudfront_error(400, "InvalidArgument", f"Invalid tag: {path}")
                continue
            if not path.startswith("/") or "*" in path[:-1]:
                return cloudfront_error(400, "InvalidArgument", f"Invalid path: {path}")
        if reference in self.references:
            seen, answer = self.references[reference]
            if sorted(seen) == sorted(paths):
                request.ok = True
                return answer  # the same batch again: the invalidation already made
            return cloudfront_error(
                409, "InvalidationBatchAlreadyExists", "The CallerReference is already in use"
            )
        busy = [p for ps in self.in_progress.values() for p in ps]
        wildcards = sum(p.endswith("*") for p in busy + paths)
        files = sum(not p.endswith("*") for p in busy + paths)
        if wildcards > self.max_wildcards or files > self.max_files:
            return cloudfront_error(
                400,
                "TooManyInvalidationsInProgress",
                "Processing your request will cause you to exceed the maximum number of "
                "in-progress wildcard invalidations.",
            )
        answer = self.forward(request, headers, raw)
        if answer.status in (200, 201):
            # moto says COMPLETED at once (and 200 in older versions); CloudFront says
            # 201 and InProgress.
            answer.status = 201
            answer.body = re.sub(
                r"<Status>[^<]*</Status>", "<Status>InProgress</Status>", answer.body
            )
            purge_id = re.search(r"<Id>([^<]+)</Id>", answer.body)
            assert purge_id is not None
            self.in_progress[purge_id.group(1)] = paths
            self.references[reference] = (paths, answer)
            request.ok = True
        if self.lose_next_answer:
            self.lose_next_answer = False
            return cloudfront_error(500, "InternalError", "We encountered an internal error")
        return answer


# -- Akamai Fast Purge (CCU v3) ---------------------------------------------------------------


class FakeAkamai(FakeAPI):
    """``POST /ccu/v3/{invalidate|delete}/{url|cpcode|tag}/{staging|production}``.

    The EdgeGrid signature is verified, with Akamai's own library recomputing it from the
    client secret (``EG1-HMAC-SHA256`` with all five fields; a timestamp within a minute).
    ``{"objects": [...]}`` only (``additionalProperties: false``), one object type (URLs
    absolute and on a host of ``contract_hosts``, else 403 "unauthorized arl"; CP codes
    numbers), bodies up to 50,000 bytes (413). Answers 201 with ``purgeId``,
    ``supportId`` and ``estimatedSeconds``; errors as ``application/api-problem+json``.
    Token buckets for requests and for objects of each type; a 429 has the
    ``X-Ratelimit-*`` headers and no ``Retry-After``.
    """

    secret_headers = ("authorization",)
    content_type = "application/api-problem+json"

    def __init__(
        self,
        *,
        client_token: str = "akab-client-token",
        client_secret: str = "client-secret=",
        access_token: str = "akab-access-token",
        contract_hosts: tuple[str, ...] = ("www.example.com",),
        cp_codes: tuple[int, ...] = (12345,),
    ) -> None:
        self.client_token, self.client_secret = client_token, client_secret
        self.access_token = access_token
        self.contract_hosts, self.cp_codes = contract_hosts, cp_codes
        self.requests_bucket = Bucket(100, 50)
        self.objects = {"url": Bucket(10000, 200), "tag": Bucket(5000, 500 / 60),
                        "cpcode": Bucket(300, 0.5)}  # fmt: skip
        self.estimated_seconds = 5
        super().__init__()

    @staticmethod
    def problem(status: int, title: str, detail: str = "", **extra: Any) -> Answer:
        body = {
            "type": f"https://problems.purge.akamaiapis.net/-/pep-authn/{status}",
            "title": title,
            "detail": detail or title,
            "httpStatus": status,
            "supportId": f"edcp-{uuid.uuid4().hex[:12]}",
            "describedBy": f"https://api.ccu.akamai.com/ccu/v2/errors/{status}",
            **extra,
        }
        return Answer(status, body)

    def signature_problem(self, request: Received, headers: dict[str, str], raw: bytes) -> str:
        from akamai.edgegrid.edgegrid import EdgeGridAuthHeaders
        from requests import Request

        header = _header(headers, "Authorization") or ""
        if not header.startswith("EG1-HMAC-SHA256 "):
            return "The signature does not match"
        fields = dict(
            part.split("=", 1)
            for part in header.removeprefix("EG1-HMAC-SHA256 ").split(";")
            if part
        )
        wanted = {"client_token", "access_token", "timestamp", "nonce", "signature"}
        if set(fields) != wanted:
            return "The signature does not match"
        if (fields["client_token"], fields["access_token"]) != (
            self.client_token,
            self.access_token,
        ):
            return "Invalid authorization client_token"
        when = calendar.timegm(time.strptime(fields["timestamp"], "%Y%m%dT%H:%M:%S+0000"))
        if abs(when - time.time()) > 60:
            return "Invalid timestamp"
        signer = EdgeGridAuthHeaders(
            self.client_token, self.client_secret, self.access_token, max_body=131072
        )
        sent = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        prepared = Request("POST", f"{self.url}{request.path}", headers=sent, data=raw).prepare()
        expected = signer.make_auth_header(prepared, fields["timestamp"], fields["nonce"])
        if expected != header:
            return "The signature does not match"
        return ""

    def handle(self, request: Received, headers: dict[str, str], raw: bytes) -> Answer:
        match = re.fullmatch(
            r"/ccu/v3/(invalidate|delete)/(url|cpcode|tag)/(staging|production)", request.path
        )
        if request.method != "POST" or not match:
            return self.problem(404, "Not Found", "The requested resource is not found")
        if why := self.signature_problem(request, headers, raw):
            return self.problem(401, "Not authorized", why)
        if len(raw) > 50_000:
            return self.problem(413, "Request Entity Too Large", "The body exceeds 50,000 bytes")
        kind = match.group(2)
        body = request.body
        if not isinstance(body, dict) or set(body) != {"objects"} or not body["objects"]:
            return self.problem(400, "Bad request", "The request must have exactly 'objects'")
        objects = body["objects"]
        if kind == "cpcode":
            if not all(isinstance(o, int) and not isinstance(o, bool) for o in objects):
                return self.problem(400, "Bad request", "CP codes are numbers")
            if set(objects) - set(self.cp_codes):
                return self.problem(403, "unauthorized cpcode", "A CP code is not on the contract")
        elif not all(isinstance(o, str) for o in objects):
            return self.problem(400, "Bad request", "One object type per request")
        if kind == "url":
            for url in objects:
                parts = urlsplit(url)
                if parts.scheme not in {"http", "https"} or not parts.hostname:
                    return self.problem(400, "bad URL hostname", f"Invalid URL {url}")
                if parts.hostname not in self.contract_hosts:
                    return self.problem(403, "unauthorized arl", f"Not on the contract: {url}")
        limited = {
            "Content-Type": "application/json",
            "X-Ratelimit-Limit": "100",
            "X-Ratelimit-Limit-Objects": str(int(self.objects[kind].burst)),
        }
        request_wait = self.requests_bucket.take()
        if request_wait:
            answer = self.problem(429, "Rate Limit exceeded", "Too many requests")
        elif object_wait := self.objects[kind].take(len(objects)):
            self.requests_bucket.tokens += 1  # tokens are not used up by a denied request
            title = f"{kind.upper()} Rate Limit exceeded"
            answer = self.problem(429, title, "Not enough object tokens",
                                  rateLimit=int(self.objects[kind].burst),
                                  rateLimitCurrentRequestSize=len(objects),
                                  rateLimitRemaining=int(self.objects[kind].tokens))  # fmt: skip
            request_wait = object_wait
        else:
            request.ok = True
            return Answer(
                201,
                {
                    "httpStatus": 201,
                    "detail": "Request accepted",
                    "estimatedSeconds": self.estimated_seconds,
                    "purgeId": f"edcp-{uuid.uuid4().hex[:22]}",
                    "supportId": f"edcp-{uuid.uuid4().hex[:22]}",
                },
                limited,
            )
        answer.headers = {
            **limited,
            "Content-Type": self.content_type,
            "X-Ratelimit-Remaining": "0",
            "X-Ratelimit-Seconds-To-Refresh-Limit": str(math.ceil(request_wait)),
            "X-Ratelimit-Seconds-To-Refresh-Limit-Objects": str(math.ceil(request_wait)),
        }
        return answer


# -- Azure Front Door (Azure Resource Manager) ----------------------------------------------


class FakeAzureFrontDoor(FakeAPI):
    """ARM's ``afdEndpoints/{endpoint}/purge`` for one endpoint, and its long-running
    operation.

    Bearer token required; ``api-version`` required; ``{"contentPaths": [...],
    "domains": [...]}`` with 1 to 100 paths starting with ``/`` (a ``*`` only as a
    directory's last character) and domains among the endpoint's. Answers ``202`` with a
    ``Location`` that answers ``202`` (with ``Retry-After``) for ``polls_in_progress``
    polls, then ``200 {"status": "Succeeded"}``. ARM's error envelope ``{"error": {"code",
    "message"}}``; writes throttled by a token bucket with ``429`` and ``Retry-After``.
    """

    secret_headers = ("authorization",)

    def __init__(
        self,
        *,
        token: str = "azure-token",
        subscription: str = "00000000-1111-2222-3333-444444444444",
        group: str = "web",
        profile: str = "roan-profile",
        endpoint: str = "roan-endpoint",
        domains: tuple[str, ...] = ("www.example.com",),
    ) -> None:
        self.token, self.domains = token, domains
        self.route = (
            f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Cdn"
            f"/profiles/{profile}/afdEndpoints/{endpoint}/purge"
        )
        self.operations_path = (
            f"/subscriptions/{subscription}/providers/Microsoft.Cdn/operationresults/"
        )
        self.writes = Bucket(200, 10)
        self.polls_in_progress = 1
        self.polls: dict[str, int] = {}
        super().__init__()

    @staticmethod
    def error(status: int, code: str, message: str) -> Answer:
        return Answer(status, {"error": {"code": code, "message": message}})

    def handle(self, request: Received, headers: dict[str, str], raw: bytes) -> Answer:
        if _header(headers, "Authorization") != f"Bearer {self.token}":
            return self.error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if request.query.get("api-version") is None:
            return self.error(400, "MissingApiVersionParameter", "The api-version is required.")
        if request.method == "GET" and request.path.startswith(self.operations_path):
            operation = request.path.removeprefix(self.operations_path)
            if operation not in self.polls:
                return self.error(404, "NotFound", "The operation was not found.")
            self.polls[operation] += 1
            if self.polls[operation] <= self.polls_in_progress:
                return Answer(202, None, {"Retry-After": "10", "Location": self.url + request.path})
            return Answer(200, {"status": "Succeeded"})
        if request.method != "POST" or not request.path.endswith("/purge"):
            return self.error(404, "NotFound", "No such resource.")
        if request.path != self.route:
            return self.error(
                404,
                "ResourceNotFound",
                "The Resource 'Microsoft.Cdn/profiles/afdEndpoints' was not found.",
            )
        if wait := self.writes.take():
            answer = self.error(429, "TooManyRequests", "The request was throttled.")
            answer.headers = {"Retry-After": str(max(1, math.ceil(wait))),
                              "x-ms-ratelimit-remaining-subscription-writes": "0"}  # fmt: skip
            return answer
        body = request.body
        if not isinstance(body, dict) or set(body) - {"contentPaths", "domains"}:
            return self.error(400, "BadRequest", "The request body is invalid.")
        paths, domains = body.get("contentPaths"), body.get("domains", [])
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            return self.error(400, "BadRequest", "contentPaths is required.")
        if len(paths) > 100:
            return self.error(400, "BadRequest", "At most 100 content paths per request.")
        for path in paths:
            if not path.startswith("/") or ("*" in path and not path.endswith("/*")):
                return self.error(400, "BadRequest", f"Invalid content path {path}.")
        if not isinstance(domains, list) or set(domains) - set(self.domains):
            return self.error(400, "BadRequest", "A domain is not on this endpoint.")
        operation = uuid.uuid4().hex
        self.polls[operation] = 0
        request.ok = True
        location = f"{self.url}{self.operations_path}{operation}?api-version=2023-05-01"
        return Answer(202, None, {"Location": location, "Retry-After": "10"})


@pytest.fixture(autouse=True)
def fresh_buckets() -> Iterator[None]:
    """Every test starts with full rate-limit buckets (CDN backends have default limits,
    kept in the default cache, which lives as long as the test process)."""
    caches["default"].clear()
    yield
    caches["default"].clear()


# -- what the backend tests read back ----------------------------------------------------


def rows() -> list[PurgeAttempt]:
    """Every attempt row, oldest first."""
    return list(PurgeAttempt.objects.order_by("id"))


def check_later() -> int:
    """What roan_dispatch does once the check time has come."""
    PurgeAttempt.objects.exclude(completion_check_at=None).update(
        completion_check_at=timezone.now()
    )
    return completion.check_due()
