"""What the CDN backends that speak a JSON API over ``requests`` share.

A CDN backend turns a batch of purge requests into a few API calls (one per batch the
provider accepts), sends them with :class:`roan.backends._http.HTTPTransport` (timeouts,
no redirects, bounded answers, credential-free log lines), and gives every request its
own result: the provider's purge id on success; on failure the provider's own message
(cleaned, cut short, and with every credential of the backend blanked out) and whether
sending again can help. A throttled call (HTTP 429) stops the batch: the calls after it
are not sent, and every request waits as long as the provider asked.

The API is the backend's one node (``API_URL``, public by default; tests point it at a
fake on loopback). Only hosts listed in ``HOSTS`` ever reach the provider: URLs are made
absolute from them and the ``SCHEME``, and a request naming another host is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import unquote

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import (
    Call,
    HTTPTransport,
    Reply,
    _bad_node_url,
    bad_path,
    parse_retry_after,
)
from roan.backends.base import (
    FAILED,
    OK,
    PREFIX,
    SKIPPED,
    URL,
    BaseBackend,
    PurgeRequest,
    PurgeResult,
    is_throttled,
    is_unreachable,
    not_sent,
    redact_url,
)

#: Characters of a provider's message kept on the attempt row (its column holds 500).
MAX_MESSAGE = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_DELTA = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,6})?")


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """One API call, and the indexes of the requests it answers for (in order)."""

    indexes: tuple[int, ...]
    call: Call
    #: What the call sent for each request, when an answer names them (Fastly's map).
    values: tuple[str, ...] = ()


def clean_message(text: str, secrets: Sequence[str] = ()) -> str:
    """A provider's message, safe for a log line and the attempt row: one line, no
    control characters, at most ``MAX_MESSAGE`` characters, credentials blanked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = " ".join(_CONTROL.sub(" ", text).split())
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    # Blank again: cutting may not have split a secret, but joining spaces could have
    # rebuilt one that held control characters.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def seconds_from(value: str | None) -> float | None:
    """A number of seconds in a header (``"5"``, ``"2.5"``), or ``None``."""
    if not value or not _DELTA.fullmatch(value.strip()):
        return None
    seconds = float(value.strip())
    return seconds if math.isfinite(seconds) else None


#: Most seconds roan takes from a number a provider sends in its JSON (a wait, an estimate):
#: longer waits are capped again where they are used (``ROAN_RETRY["MAX"]``, completion).
MOST_SECONDS = 86400.0


def provider_seconds(value: object, most: float = MOST_SECONDS) -> float | None:
    """A number of seconds from a provider's JSON, bounded: ``None`` unless a finite,
    non-negative number (not a bool); at most ``most``. JSON integers are unbounded
    (``10**400``), and ``float()`` of one raises ``OverflowError``: compared, never
    converted, until capped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return most if value == math.inf else None
    if value < 0:
        return None
    return float(min(value, most))


def until_epoch(value: str | None, now: float | None = None) -> float | None:
    """Seconds until a UTC epoch time in a header (Fastly's ``Fastly-RateLimit-Reset``)."""
    when = seconds_from(value)
    if when is None:
        return None
    return max(0.0, round(when - (time.time() if now is None else now), 3))


def json_body(reply: Reply) -> Any:
    """The answer's body as JSON, or ``None`` when it is not JSON."""
    if not reply.body:
        return None
    try:
        return json.loads(reply.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


class APIBackend(BaseBackend):
    """Base class for CDN backends over a JSON HTTP API.

    Subclasses set ``provider``, ``default_api_url`` and ``capabilities``, read their
    options (calling :meth:`secret_option` for every credential), and implement
    :meth:`batches` and :meth:`message`; they may override :meth:`throttle_wait` and
    :meth:`succeeded`.
    """

    provider: ClassVar[str] = "the CDN"
    default_api_url: ClassVar[str] = ""
    #: The default ``RATE_LIMIT`` (see :mod:`roan.outbox.limits`) when the option is absent:
    #: the provider's published bucket, in targets. ``None``: no limit of roan's own.
    default_rate_limit: ClassVar[Mapping[str, float] | None] = None
    options_accepted: ClassVar[frozenset[str]] = frozenset({"API_URL", "SCHEME"})
    #: What a JSON call sends besides its credentials. ``identity``: a bounded body is
    #: read as it is, never decompressed (no zip bomb).
    base_headers: ClassVar[Mapping[str, str]] = {
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": "roan",
    }

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.where = f"ROAN_BACKENDS[{alias!r}]"
        self._secrets: list[str] = []
        url = options.get("API_URL", self.default_api_url)
        if not isinstance(url, str) or not url:
            raise ImproperlyConfigured(f"{self.where}['API_URL'] must be an http(s) URL.")
        # Never quote the URL: it may carry user:password.
        if problem := _bad_node_url(url):
            raise ImproperlyConfigured(f"{self.where}['API_URL'] {problem}.")
        self.api_url = url.rstrip("/")
        if not self.hosts:
            raise ImproperlyConfigured(
                f"{self.where}['HOSTS'] is required: list the host names of your pages "
                f"(only these are ever sent to {self.provider})."
            )
        scheme = options.get("SCHEME", "https")
        if scheme not in {"http", "https"}:
            raise ImproperlyConfigured(f"{self.where}['SCHEME'] must be 'http' or 'https'.")
        self.scheme: str = scheme
        self.node = redact_url(self.api_url)
        self.transport = HTTPTransport(self)

    # -- options --------------------------------------------------------------------------

    def secret_option(self, options: Mapping[str, Any], name: str) -> str:
        """A credential option: a non-empty one-line string, remembered so that it is
        blanked out of every message. The message for a bad one never quotes it."""
        value = options.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ImproperlyConfigured(f"{self.where}[{name!r}] must be a non-empty string.")
        if any(ch in value for ch in "\r\n\x00") or not value.isascii():
            raise ImproperlyConfigured(
                f"{self.where}[{name!r}] holds a line break or non-ASCII characters; "
                "paste the credential again."
            )
        self._secrets.append(value)
        return value

    def id_option(self, options: Mapping[str, Any], name: str, pattern: str) -> str:
        """A required identifier (zone, service, pull zone) that goes into API paths."""
        value = options.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise ImproperlyConfigured(
                f"{self.where}[{name!r}] is required: the {name.lower().replace('_', ' ')} "
                f"from {self.provider}'s dashboard (got {value!r})."
            )
        return value

    def batch_size_option(self, options: Mapping[str, Any], default: int, most: int) -> int:
        value = options.get("BATCH_SIZE", default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ImproperlyConfigured(
                f"{self.where}['BATCH_SIZE'] must be a whole number from 1 to {most}, "
                f"not {value!r}."
            )
        return value

    # -- what the dispatcher calls --------------------------------------------------------

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.node,)

    @classmethod
    def default_rate_limit_for(cls, config: Mapping[str, Any]) -> Mapping[str, float] | None:
        """The ``RATE_LIMIT`` used when the option is absent (see :mod:`roan.outbox.limits`);
        ``config`` is the backend's entry in ``ROAN_BACKENDS`` (a plan may matter)."""
        return cls.default_rate_limit

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind in (URL, PREFIX):
            if why := bad_path(request.target):
                return why
            if _has_dot_segment(request.target):
                # Some APIs take the page's path inside their own (Fastly's /purge/...):
                # a "/../" there could reach another of their endpoints.
                return "the path has a '.' or '..' segment, which servers resolve to another path"
        return super().refuse(request)

    def page_host(self, request: PurgeRequest) -> str:
        """The request's host, else the first of ``HOSTS`` (lower-case)."""
        return (request.host or self.default_host()).lower()

    def absolute(self, request: PurgeRequest) -> str:
        """``SCHEME://host/path?query`` of a URL request."""
        return f"{self.scheme}://{self.page_host(request)}{request.target}"

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        results: dict[int, PurgeResult] = {}
        batches: list[Batch] = []
        for index, request in enumerate(requests):
            # Checked again here for rows written before the check at submit time (HOSTS
            # may have shrunk since): a host outside HOSTS never reaches the provider.
            if why := self.refuse(request):
                results[index] = PurgeResult(SKIPPED, error=why, retryable=False)
        wanted = [i for i in range(len(requests)) if i not in results]
        batches = self.batches([requests[i] for i in wanted])
        stop: PurgeResult | None = None
        for batch in batches:
            indexes = tuple(wanted[i] for i in batch.indexes)
            if stop is not None:
                # Down, or throttled: the rest waits as long as the first was told to.
                for index in indexes:
                    results[index] = dataclasses.replace(
                        stop, http_status=None, latency_ms=None, error=not_sent(stop)
                    )
                continue
            call = self.prepare(batch.call)
            outcome = self.answer(self.transport.exchange(node, call), batch)
            self.transport.log(node, batch.call, outcome[0])
            for index, result in zip(indexes, outcome, strict=True):
                results[index] = result
            first = outcome[0]
            if is_unreachable(first) or is_throttled(first):
                stop = first
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        self.transport.close()

    # -- for subclasses -------------------------------------------------------------------

    def headers(self, **extra: str) -> dict[str, str]:
        """``base_headers``, the credentials (:meth:`auth_headers`) and ``extra``."""
        return {**self.base_headers, **self.auth_headers(), **extra}

    def auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def prepare(self, call: Call) -> Call:
        """The call as sent, right before it is sent (a signature with a timestamp)."""
        return call

    def json_call(self, method: str, path: str, payload: Any, target: str) -> Call:
        """A call to ``API_URL + path`` with ``payload`` as its JSON body."""
        body = None if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        extra = {"Content-Type": "application/json"} if body is not None else {}
        return Call(method, self.api_url + path, self.headers(**extra), target, body)

    def batches(self, requests: Sequence[PurgeRequest]) -> list[Batch]:
        """The calls that purge ``requests`` (already checked by :meth:`refuse`); each
        batch's indexes point into ``requests``, and every request is in one batch."""
        raise NotImplementedError

    def message(self, reply: Reply) -> str:
        """The provider's own error message in ``reply``'s body (``""`` if none)."""
        return ""

    def succeeded(self, reply: Reply, batch: Batch) -> list[PurgeResult] | str:
        """Results for a 2xx answer, one per request of ``batch``, or why the answer,
        though 2xx, is a failure (an envelope saying ``success: false``)."""
        return [PurgeResult(OK, http_status=reply.status, latency_ms=reply.latency_ms)] * len(
            batch.indexes
        )

    def throttle_wait(self, reply: Reply) -> float | None:
        """Seconds the provider asked roan to wait (``Retry-After`` by default)."""
        return parse_retry_after(reply.headers.get("Retry-After"))

    def clean(self, text: str) -> str:
        return clean_message(text, self._secrets)

    def answer(self, reply: Reply, batch: Batch) -> list[PurgeResult]:
        """One result per request of ``batch`` for ``reply``."""
        count = len(batch.indexes)
        status = reply.status
        if status is None:
            return [PurgeResult(FAILED, latency_ms=reply.latency_ms, error=reply.error)] * count
        if 200 <= status < 300:
            outcome = self.succeeded(reply, batch)
            if not isinstance(outcome, str):
                return [dataclasses.replace(result) for result in outcome]
            error, retryable = f"HTTP {status}: {outcome}", True
        else:
            said = self.clean(self.message(reply))
            detail = f": {said}" if said else ""
            if status == 429:
                error, retryable = f"HTTP 429: throttled by {self.provider}{detail}", True
            elif status >= 500 or status == 408:
                error, retryable = f"HTTP {status}: {self.provider} failed{detail}", True
            elif 300 <= status < 400:
                error = f"HTTP {status}: a redirect, which roan does not follow; check API_URL"
                retryable = False
            else:
                # Bad credentials, a missing permission, an unknown zone, a malformed
                # body: sending again cannot help, so the row says what the provider said.
                hint = detail or f": {self.provider} refused the purge; check the options"
                error, retryable = f"HTTP {status}{hint}", False
        wait = self.throttle_wait(reply) if retryable else None
        result = PurgeResult(
            FAILED,
            http_status=status,
            latency_ms=reply.latency_ms,
            error=self.clean(error),
            retry_after=wait,
            retryable=retryable,
        )
        return [dataclasses.replace(result) for _ in range(count)]


def _has_dot_segment(target: str) -> bool:
    """A ``.`` or ``..`` segment in the path, also percent-encoded (decoded repeatedly,
    as some servers decode twice)."""
    for segment in target.split("?", 1)[0].split("/"):
        decoded = segment
        for _ in range(3):
            decoded = unquote(decoded)
        if any(part in (".", "..") for part in re.split(r"[/\\]", decoded)):
            return True
    return False


def chunked(indexes: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """``indexes`` in runs of at most ``size``."""
    return [tuple(indexes[i : i + size]) for i in range(0, len(indexes), size)]
