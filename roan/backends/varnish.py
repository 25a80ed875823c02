"""Varnish: ``PURGE`` for URLs, ``BAN`` for prefixes and everything, xkey for tags.

Works with the VCL in ``example/deploy/varnish.vcl``:

- a URL: ``PURGE {node}/path?query`` with the page's ``Host``;
- a prefix: ``BAN {node}/`` with ``X-Ban-Url: ^<regex-escaped prefix>``;
- everything (for one host): ``BAN {node}/`` with ``X-Ban-Url: .``;
- tags: ``PURGE {node}/`` with ``xkey-purge: tag1 tag2 ...`` (varnish-modules' xkey),
  several tags per request, one result per tag.

``SOFT = True`` (default False) marks URLs and tags stale instead of removing them, so
Varnish serves the old copy within its grace while one background fetch gets the new
one (no thundering herd on the origin after a popular page is purged):

- a URL: ``PURGE {node}/path`` with ``X-Soft-Purge: 1`` (the example VCL then calls
  ``purge.soft(0s)``: TTL zero, grace and keep left as they are);
- tags: ``PURGE {node}/`` with ``xkey-softpurge: tag1 tag2 ...`` (``xkey.softpurge()``,
  the header FOSHttpCache's VCL reads too).

Prefixes and everything stay hard: a Varnish ban has no soft form. Each result says
which it was (``PurgeResult.soft``), and the attempt records it.

Header names are options (``BAN_URL_HEADER``, ``XKEY_HEADER``, ``SOFT_HEADER``,
``XKEY_SOFT_HEADER``) so that an existing VCL can be reused.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import Call, result_for_status
from roan.backends._pipelined import HTTPNodesBackend
from roan.backends.base import (
    ALL,
    NOT_CACHED,
    OK,
    PREFIX,
    SKIPPED,
    TAG,
    URL,
    PurgeRequest,
    PurgeResult,
)
from roan.backends.options import soft_option

# RFC 9110 token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Characters a URL path may hold once percent-encoded. A prefix goes unquoted into a
# ban() expression, so anything else (spaces, quotes) is refused rather than escaped.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*")
# FOSHttpCache keeps tag headers under 7,500 bytes; many servers cap a header at 8 KiB.
MAX_TAG_HEADER = 7500


def _bad_tag(tag: str) -> str:
    """Why ``tag`` cannot go in the xkey header (``""`` when it can)."""
    if not tag or "," in tag or any(ch.isspace() or not ch.isprintable() for ch in tag):
        return "a tag cannot be empty or contain spaces, commas or control characters"
    try:
        # Header values are Latin-1 on the wire, as Django writes the origin's xkey.
        tag.encode("latin-1")
    except UnicodeEncodeError:
        return "a tag must be Latin-1 text (it goes in an HTTP header as it is)"
    return ""


class VarnishBackend(HTTPNodesBackend):
    """PURGE, BAN and xkey purges against one or more Varnish servers."""

    capabilities = frozenset({URL, PREFIX, TAG, ALL})
    batch_size = 50
    options_accepted: ClassVar[frozenset[str]] = HTTPNodesBackend.options_accepted | {
        "BAN_URL_HEADER",
        "XKEY_HEADER",
        "SOFT",
        "SOFT_HEADER",
        "XKEY_SOFT_HEADER",
    }
    # varnish-modules' xkey indexes the keys of the response's xkey header, split on
    # spaces and commas; Varnish refuses a backend response with a header line longer
    # than http_resp_hdr_len (8 KiB by default).
    tag_header: ClassVar[str | None] = "xkey"
    tag_separator: ClassVar[str] = " "
    tag_header_limit: ClassVar[int] = MAX_TAG_HEADER
    tag_max_length: ClassVar[int] = 256
    tag_forbidden: ClassVar[str] = ","

    # example/deploy/varnish.vcl: "HIT" when obj.hits > 0, else "MISS".
    status_header: ClassVar[str] = "X-Cache"

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.ban_header = self._header_option(options, "BAN_URL_HEADER", "X-Ban-Url")
        self.xkey_header = self._header_option(options, "XKEY_HEADER", "xkey-purge")
        self.soft = soft_option(self.alias, options, default=False)
        self.soft_header = self._header_option(options, "SOFT_HEADER", "X-Soft-Purge")
        self.xkey_soft_header = self._header_option(options, "XKEY_SOFT_HEADER", "xkey-softpurge")

    def _header_option(self, options: Mapping[str, Any], name: str, default: str) -> str:
        value = options.get(name, default)
        if not isinstance(value, str) or not _TOKEN.fullmatch(value):
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{self.alias!r}][{name!r}] must be an HTTP header name, "
                f"not {value!r}."
            )
        return value

    def interpret(self, status: int, latency_ms: float, headers: Mapping[str, str]) -> PurgeResult:
        """As for any cache, but ``X-Purged-Count: 0`` (sent by the example VCL for an
        xkey purge that found nothing) means not cached."""
        result = result_for_status(status, latency_ms, headers)
        if result.status == OK and headers.get("X-Purged-Count", "").strip() == "0":
            result.status = NOT_CACHED
        return result

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind == PREFIX and not _URI_CHARS.fullmatch(request.target):
            return "a prefix must be a percent-encoded path (no spaces, quotes or non-ASCII)"
        if request.kind == TAG and (why := _bad_tag(request.target)):
            return why
        return super().refuse(request)

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        base = self.node_url(node)
        calls: list[Call] = []
        owners: list[list[int]] = []  # which requests each call answers for
        soft: set[int] = set()  # the calls that marked stale rather than removed
        tag_batches: dict[str, list[int]] = {}  # host -> indexes of tag requests
        refused: dict[int, PurgeResult] = {}
        for index, request in enumerate(requests):
            headers = self.host_header(request)
            if request.kind == URL:
                if self.soft:
                    headers[self.soft_header] = "1"
                    soft.add(len(calls))
                calls.append(Call("PURGE", base + request.target, headers, request.target))
            elif request.kind == PREFIX:
                # The header is a regex; escape the prefix so "/a.b/" does not match "/aXb/".
                headers[self.ban_header] = "^" + re.escape(request.target)
                calls.append(Call("BAN", base + "/", headers, request.target + "*"))
            elif request.kind == ALL:
                headers[self.ban_header] = "."
                calls.append(Call("BAN", base + "/", headers, "everything"))
            elif why := _bad_tag(request.target):
                # Refused at submit time; this guards rows written before that check, so
                # that one bad tag cannot fail the header, and so the batch, it shares.
                refused[index] = PurgeResult(SKIPPED, error=why, retryable=False)
                continue
            else:
                tag_batches.setdefault(headers.get("Host", ""), []).append(index)
                continue
            owners.append([index])
        for host, indexes in tag_batches.items():
            for chunk in self._chunks(requests, indexes):
                tags = " ".join(requests[i].target for i in chunk)
                headers = {"Host": host} if host else {}
                if self.soft:
                    headers[self.xkey_soft_header] = tags
                    soft.add(len(calls))
                else:
                    headers[self.xkey_header] = tags
                calls.append(Call("PURGE", base + "/", headers, f"tags {tags}"))
                owners.append(chunk)
        results: list[PurgeResult | None] = [refused.get(i) for i in range(len(requests))]
        answers = self.transport.send_all(node, calls)
        for number, (owner, result) in enumerate(zip(owners, answers, strict=True)):
            for index in owner:
                results[index] = dataclasses.replace(result, soft=number in soft)
        return [r for r in results if r is not None]

    @staticmethod
    def _chunks(requests: Sequence[PurgeRequest], indexes: list[int]) -> list[list[int]]:
        """Split tag requests so that one header stays under ``MAX_TAG_HEADER`` bytes."""
        chunks: list[list[int]] = [[]]
        size = 0
        for index in indexes:
            length = len(requests[index].target.encode()) + 1
            if chunks[-1] and size + length > MAX_TAG_HEADER:
                chunks.append([])
                size = 0
            chunks[-1].append(index)
            size += length
        return chunks
