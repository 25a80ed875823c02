"""Amazon CloudFront: one invalidation per batch, through boto3 (``pip install
'roan[cloudfront]'``).

Paths: a URL is its path and query (``/posts/1/?page=2``), a prefix ends in ``*``
(``/posts/*``), everything is ``/*``. With ``TAGS = True`` a cache tag is an item
``#tag`` of the same batch (CloudFront's invalidation by cache tag: the distribution
needs a ``CacheTagConfig`` whose ``HeaderName`` is ``x-amz-meta-cache-tag``, the header
``roan.middleware.CacheTagMiddleware`` then writes). A tag is 1 to 256 visible ASCII
characters without a comma, matched without regard to case, with no wildcard; CloudFront
keeps 50 tags per object, and each tag counts as one path toward the in-progress limit.

An invalidation is accepted at once and completes in the background: the attempt is
recorded ``ok`` with the ``Invalidation.Id`` and its completion ``in_progress``, and
``roan_dispatch`` (or the send task) asks ``GetInvalidation`` later
(:mod:`roan.outbox.completion`).

- **Idempotent retries.** ``CallerReference`` is a hash of the batch's attempt ids and
  paths, not a fresh uuid per try: a batch sent again after a lost answer names the
  same reference, and CloudFront returns the invalidation it already made.
- **Cost.** Past 1,000 paths a month each path costs money and a wildcard counts as one;
  ``COLLAPSE_ABOVE = n`` sends a batch of more than ``n`` paths as their common prefix
  with ``*`` (never ``/*``: that would purge everything without ``roan.purge_all``).
- **Throttling.** ``Throttling`` and ``TooManyInvalidationsInProgress`` (CloudFront has
  no 429) are retried with backoff; botocore's own retries are off, so every try is a
  row's try.
- **Credentials** come from boto3's usual chain (environment, shared files, an instance
  or task role) and never reach roan's options, rows or messages; botocore's request
  loggers are kept above DEBUG (they print signed headers).

https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_CreateInvalidation.html
https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/invalidation-specifying-tags.html
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import _bad_node_url
from roan.backends.base import (
    ALL,
    FAILED,
    OK,
    PREFIX,
    SKIPPED,
    TAG,
    URL,
    BaseBackend,
    Progress,
    PurgeRequest,
    PurgeResult,
    Timer,
    redact_url,
)

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:  # the extra is not installed: the backend says so when built
    boto3 = None

logger = logging.getLogger(__name__)

INSTALL = "pip install 'roan[cloudfront]'"
#: Paths one invalidation may hold while in progress (per distribution).
MOST_PATHS = 3000
#: The header CloudFront reads a page's tags from: its CacheTagConfig's default name.
TAG_HEADER = "x-amz-meta-cache-tag"
#: Tags CloudFront keeps per cached object (it ignores the others).
MOST_TAGS_PER_OBJECT = 50
# A tag CloudFront accepts: visible ASCII (33-126) but the comma, at most 256 characters.
# The '*' too: tag items have no wildcard, and whether one is literal is not documented.
_TAG = re.compile(r"[\x21-\x29\x2b\x2d-\x7e]{1,256}")
#: Seconds to the first status check (boto3's waiter asks every 20 s).
CHECK_AFTER = 20.0
# Errors that mean "later", not "never". TooManyInvalidationsInProgress: the
# distribution has 3,000 paths or 15 wildcards in progress; AWS advises backing off.
_THROTTLES = frozenset({"Throttling", "ThrottlingException", "TooManyInvalidationsInProgress"})
_PASSING = frozenset({"ServiceUnavailable", "InternalError", "RequestTimeout"})
# Minimum wait after TooManyInvalidationsInProgress: invalidations take minutes.
_IN_PROGRESS_WAIT = 60.0
# botocore's loggers that print requests (with their signed Authorization header) or
# credential details at DEBUG.
_NOISY_LOGGERS = (
    "botocore.endpoint",
    "botocore.auth",
    "botocore.parsers",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.credentials",
    "botocore.retryhandler",
)


def _quiet_botocore() -> None:
    for name in _NOISY_LOGGERS:
        log = logging.getLogger(name)
        if log.getEffectiveLevel() < logging.INFO or log.level < logging.INFO:
            log.setLevel(logging.INFO)


def common_prefix(paths: Sequence[str]) -> str:
    """The longest directory every path starts with (``"/"`` at least)."""
    # Whole segments only: "/post-a" and "/post-b" share "/", not "/post-".
    directories = [path.split("/")[:-1] for path in paths]
    common: list[str] = []
    for segments in zip(*directories, strict=False):
        if any(segment != segments[0] for segment in segments):
            break
        common.append(segments[0])
    return "/".join(common) + "/" if len(common) > 1 else "/"


class CloudFrontBackend(BaseBackend):
    """Invalidate paths on one CloudFront distribution."""

    capabilities = frozenset({URL, PREFIX, ALL})  # and TAG with the TAGS option
    batch_size = 1000
    options_accepted: ClassVar[frozenset[str]] = frozenset(
        {"DISTRIBUTION_ID", "ENDPOINT_URL", "REGION", "COLLAPSE_ABOVE", "BATCH_SIZE", "TAGS"}
    )
    # Written on pages only with TAGS (roan.tags writes it for backends that purge tags).
    tag_header: ClassVar[str | None] = TAG_HEADER
    tag_separator: ClassVar[str] = ","
    tag_max_length: ClassVar[int] = 256
    tag_forbidden: ClassVar[str] = "*"
    tag_ascii_only: ClassVar[bool] = True
    tag_count_limit: ClassVar[int | None] = MOST_TAGS_PER_OBJECT

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        where = f"ROAN_BACKENDS[{alias!r}]"
        if boto3 is None:
            raise ImproperlyConfigured(f"{where}: CloudFrontBackend needs boto3: {INSTALL}.")
        distribution = options.get("DISTRIBUTION_ID")
        if not isinstance(distribution, str) or not re.fullmatch(r"[A-Z0-9]{1,32}", distribution):
            raise ImproperlyConfigured(
                f"{where}['DISTRIBUTION_ID'] is required: the distribution's id, such as "
                f"'EDFDVBD6EXAMPLE' (got {distribution!r})."
            )
        self.distribution_id = distribution
        endpoint = options.get("ENDPOINT_URL")
        if endpoint is not None and (not isinstance(endpoint, str) or _bad_node_url(endpoint)):
            raise ImproperlyConfigured(f"{where}['ENDPOINT_URL'] must be an http(s) URL.")
        self.endpoint_url: str | None = endpoint
        region = options.get("REGION", "us-east-1")
        if not isinstance(region, str) or not re.fullmatch(r"[a-z0-9-]{1,32}", region):
            raise ImproperlyConfigured(f"{where}['REGION'] must be an AWS region name.")
        self.region = region
        collapse = options.get("COLLAPSE_ABOVE")
        if collapse is not None and (
            isinstance(collapse, bool) or not isinstance(collapse, int) or collapse < 1
        ):
            raise ImproperlyConfigured(
                f"{where}['COLLAPSE_ABOVE'] must be a whole number of paths (1 or more) or None."
            )
        self.collapse_above: int | None = collapse
        size = options.get("BATCH_SIZE", self.batch_size)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MOST_PATHS:
            raise ImproperlyConfigured(
                f"{where}['BATCH_SIZE'] must be a whole number from 1 to {MOST_PATHS}."
            )
        self.batch_size = size
        tags = options.get("TAGS", False)
        if not isinstance(tags, bool):
            raise ImproperlyConfigured(
                f"{where}['TAGS'] must be True (the distribution has a CacheTagConfig) or False."
            )
        if tags:
            self.capabilities = frozenset({URL, PREFIX, TAG, ALL})
        # The node names the distribution (and a test endpoint), never a credential.
        self.node = f"cloudfront:{distribution}"
        if endpoint:
            self.node += f"@{redact_url(endpoint)}"
        self._client: Any = None
        self._lock = threading.Lock()
        _quiet_botocore()

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.node,)

    def client(self) -> Any:
        """boto3's client, built on first use (clients are thread-safe; sessions not)."""
        with self._lock:
            if self._client is None:
                config = botocore.config.Config(
                    connect_timeout=self.connect_timeout,
                    read_timeout=self.read_timeout,
                    # roan retries, with backoff, and records every try.
                    retries={"total_max_attempts": 1, "mode": "standard"},
                )
                session = boto3.session.Session()
                self._client = session.client(
                    "cloudfront",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=config,
                )
            return self._client

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind in (URL, PREFIX):
            if not request.target.startswith("/"):
                return f"{request.target[:50]!r} is not a path (it must start with /)"
            if "*" in request.target:
                return "a '*' in a CloudFront path is a wildcard; percent-encode it (%2A)"
            if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in request.target):
                return "the path contains spaces or control characters; percent-encode it"
        if request.kind == TAG and not _TAG.fullmatch(request.target):
            return "a CloudFront tag is 1 to 256 visible ASCII characters, without ',' or '*'"
        if request.kind == ALL and request.host:
            return "CloudFront cannot invalidate one host; invalidate the distribution"
        return super().refuse(request)

    @staticmethod
    def path(request: PurgeRequest) -> str:
        if request.kind == ALL:
            return "/*"
        if request.kind == PREFIX:
            return request.target + "*"
        if request.kind == TAG:
            # Tags are matched without regard to case: one item per tag, however spelt.
            return "#" + request.target.lower()
        return request.target

    def paths(self, requests: Sequence[PurgeRequest]) -> list[str]:
        """The items one invalidation sends for ``requests``: paths (collapsed if asked)
        and ``#tag`` items (never collapsed: a tag is no path)."""
        items = list(dict.fromkeys(self.path(r) for r in requests))
        tags = [item for item in items if item.startswith("#")]
        paths = [item for item in items if not item.startswith("#")]
        if self.collapse_above is not None and len(paths) > self.collapse_above:
            prefix = common_prefix([p.removesuffix("*") for p in paths])
            if prefix != "/":
                paths = [prefix + "*"]
        return paths + tags

    @staticmethod
    def caller_reference(requests: Sequence[PurgeRequest], paths: Sequence[str]) -> str:
        """Derived from the attempts and paths, so a try sent again is the same batch."""
        ids = sorted(r.attempt for r in requests if r.attempt is not None)
        if len(ids) != len(requests):
            return f"roan-{uuid.uuid4().hex}"  # not from the sender: nothing to repeat
        digest = hashlib.sha256(
            ("\n".join(map(str, ids)) + "\0" + "\n".join(sorted(paths))).encode()
        ).hexdigest()
        return f"roan-{digest[:40]}"

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        results: list[PurgeResult | None] = [None] * len(requests)
        wanted: list[int] = []
        for index, request in enumerate(requests):
            if why := self.refuse(request):
                results[index] = PurgeResult(SKIPPED, error=why, retryable=False)
            else:
                wanted.append(index)
        if wanted:
            batch = [requests[i] for i in wanted]
            result = self._invalidate(batch)
            for index in wanted:
                results[index] = dataclasses.replace(result)
        return [r for r in results if r is not None]

    def _invalidate(self, requests: Sequence[PurgeRequest]) -> PurgeResult:
        paths = self.paths(requests)
        reference = self.caller_reference(requests, paths)
        response: Any = None
        failure = PurgeResult(FAILED, error="no answer")
        with Timer() as timer:
            try:
                response = self.client().create_invalidation(
                    DistributionId=self.distribution_id,
                    InvalidationBatch={
                        "Paths": {"Quantity": len(paths), "Items": paths},
                        "CallerReference": reference,
                    },
                )
            except Exception as exc:
                failure = self._failure(exc)
        if response is None:
            failure.latency_ms = timer.ms
            result = failure
        else:
            invalidation = response.get("Invalidation") or {}
            status = str(invalidation.get("Status", ""))
            http = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            result = PurgeResult(
                OK,
                http_status=http if isinstance(http, int) else None,
                latency_ms=timer.ms,
                purge_id=str(invalidation.get("Id", ""))[:200],
                in_progress=status.lower() != "completed",
                check_after=CHECK_AFTER,
            )
        logger.debug(
            "%s: CreateInvalidation of %d path(s) on %s -> %s %s %s (%.1f ms)",
            self.alias,
            len(paths),
            self.node,
            result.status,
            result.purge_id or result.http_status or "",
            result.error,
            timer.ms,
        )
        return result

    def _failure(self, exc: Exception) -> PurgeResult:
        """A result for what boto3 raised; never the exception's own text beyond the
        error code and AWS's message."""
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
            code = str(error.get("Code", "Unknown"))[:60]
            message = " ".join(str(error.get("Message", "")).split())[:300]
            http = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            status = http if isinstance(http, int) else None
            text = f"{code}: {message}" if message else code
            if code in _THROTTLES:
                wait = _IN_PROGRESS_WAIT if code == "TooManyInvalidationsInProgress" else None
                return PurgeResult(
                    FAILED,
                    http_status=status,
                    error=f"throttled by CloudFront: {text}",
                    retry_after=wait,
                    throttled=True,
                )
            if code in _PASSING or (status or 0) >= 500:
                return PurgeResult(FAILED, http_status=status, error=f"CloudFront failed: {text}")
            # AccessDenied, NoSuchDistribution, InvalidArgument, BatchTooLarge...:
            # configuration or a bad path, which sending again cannot change.
            return PurgeResult(FAILED, http_status=status, error=text, retryable=False)
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return PurgeResult(
                FAILED,
                error="no AWS credentials found (boto3's credential chain)",
                retryable=False,
            )
        if isinstance(exc, botocore.exceptions.ConnectTimeoutError):
            return PurgeResult(FAILED, error=f"connect timed out after {self.connect_timeout} s")
        if isinstance(exc, botocore.exceptions.ReadTimeoutError):
            return PurgeResult(FAILED, error=f"read timed out after {self.read_timeout} s")
        if isinstance(exc, botocore.exceptions.EndpointConnectionError):
            return PurgeResult(FAILED, error="cannot connect to CloudFront's endpoint")
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return PurgeResult(FAILED, error=f"request failed ({type(exc).__name__})")
        return PurgeResult(FAILED, error=f"request failed ({type(exc).__name__})")

    def status(self, node: str, purge_ids: Sequence[str]) -> dict[str, Progress]:
        found: dict[str, Progress] = {}
        for purge_id in purge_ids:
            try:
                answer = self.client().get_invalidation(
                    DistributionId=self.distribution_id, Id=purge_id
                )
            except Exception as exc:
                found[purge_id] = Progress(False, error=self._failure(exc).error)
                continue
            status = str((answer.get("Invalidation") or {}).get("Status", ""))
            found[purge_id] = Progress(status.lower() == "completed", check_after=CHECK_AFTER)
        return found

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
