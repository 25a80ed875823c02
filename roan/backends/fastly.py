"""Fastly: purges through Fastly's API, soft by default.

- a URL: ``POST {API_URL}/purge/{host}{path}`` (one per call);
- tags (surrogate keys): ``POST {API_URL}/service/{SERVICE_ID}/purge`` with
  ``{"surrogate_keys": [...]}``, up to 256 per call, each key getting its own purge id
  from the answer's key -> id map;
- everything: ``POST {API_URL}/service/{SERVICE_ID}/purge_all`` (never soft: Fastly
  does not take a soft purge-all).

``SOFT`` (default True) sends ``Fastly-Soft-Purge: 1``: objects are marked stale rather
than dropped, so stale-while-revalidate and stale-if-error keep serving. Every call has
``Fastly-Key``; a token with only ``purge_select`` on the one service purges URLs and
keys, and ``purge_all`` scope is needed for everything.
https://www.fastly.com/documentation/reference/api/purging/
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from roan.backends._api import APIBackend, Batch, chunked, json_body, until_epoch
from roan.backends._http import Reply, parse_retry_after
from roan.backends.base import ALL, OK, TAG, URL, PurgeRequest, PurgeResult
from roan.backends.options import soft_option

API_URL = "https://api.fastly.com"
#: Surrogate keys per batch purge call (Fastly's documented limit).
MOST_KEYS = 256


class FastlyBackend(APIBackend):
    """Purge one Fastly service by URL, surrogate key or everything."""

    provider = "Fastly"
    default_api_url = API_URL
    capabilities = frozenset({URL, TAG, ALL})
    batch_size = MOST_KEYS
    options_accepted: ClassVar[frozenset[str]] = APIBackend.options_accepted | {
        "SERVICE_ID",
        "API_TOKEN",
        "SOFT",
        "BATCH_SIZE",
    }
    # Surrogate-Key: space-separated keys of up to 1,024 bytes, 16,384 bytes in all.
    # https://www.fastly.com/documentation/reference/http/http-headers/Surrogate-Key/
    tag_header: ClassVar[str | None] = "Surrogate-Key"
    tag_separator: ClassVar[str] = " "
    tag_header_limit: ClassVar[int] = 16384
    tag_max_length: ClassVar[int] = 1024

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.service_id = self.id_option(options, "SERVICE_ID", r"[A-Za-z0-9]{1,64}")
        self._token = self.secret_option(options, "API_TOKEN")
        self.soft = soft_option(alias, options, default=True)
        self.batch_size = self.batch_size_option(options, MOST_KEYS, MOST_KEYS)

    def auth_headers(self) -> dict[str, str]:
        return {"Fastly-Key": self._token}

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind == ALL and request.host:
            return "Fastly cannot purge one host; purge everything on the service instead"
        return super().refuse(request)

    def batches(self, requests: Sequence[PurgeRequest]) -> list[Batch]:
        soft = {"Fastly-Soft-Purge": "1"} if self.soft else {}
        service = f"/service/{self.service_id}"
        batches: list[Batch] = []
        tags: list[int] = []
        everything: list[int] = []
        for index, request in enumerate(requests):
            if request.kind == URL:
                # The page's query string is part of the cached URL, not of the call.
                url = f"{self.page_host(request)}{request.target}"
                url = url.replace("?", "%3F").replace("#", "%23")
                call = self.json_call("POST", f"/purge/{url}", None, self.absolute(request))
                call = call._replace(headers={**call.headers, **soft})
                batches.append(Batch((index,), call))
            elif request.kind == TAG:
                tags.append(index)
            else:
                everything.append(index)
        for chunk in chunked(tags, self.batch_size):
            keys = tuple(requests[i].target for i in chunk)
            unique = list(dict.fromkeys(keys))
            call = self.json_call(
                "POST", f"{service}/purge", {"surrogate_keys": unique}, f"keys {' '.join(unique)}"
            )
            call = call._replace(headers={**call.headers, **soft})
            batches.append(Batch(chunk, call, keys))
        if everything:
            call = self.json_call("POST", f"{service}/purge_all", None, "everything")
            batches.append(Batch(tuple(everything), call))
        return batches

    def message(self, reply: Reply) -> str:
        body = json_body(reply)
        if not isinstance(body, dict):
            return ""
        said = [str(body[k]) for k in ("msg", "detail") if isinstance(body.get(k), str)]
        return ": ".join(said)

    def succeeded(self, reply: Reply, batch: Batch) -> list[PurgeResult] | str:
        body = json_body(reply)
        if not isinstance(body, dict):
            return "the answer is not Fastly's JSON"
        if batch.values:
            # The batch purge answers {"key": "purge id", ...}.
            ids = [body.get(key) for key in batch.values]
            if not all(isinstance(i, str) for i in ids):
                return "the answer does not name every surrogate key sent"
        elif body.get("status") == "ok":
            ids = [body.get("id")] * len(batch.indexes)
        else:
            return self.clean(self.message(reply)) or "the answer's status is not ok"
        # purge_all is never soft; URL and key purges are when SOFT sent the header.
        soft = batch.call.headers.get("Fastly-Soft-Purge") == "1"
        return [
            PurgeResult(
                OK,
                http_status=reply.status,
                latency_ms=reply.latency_ms,
                purge_id=self.clean(str(i))[:200] if i else "",
                soft=soft,
            )
            for i in ids
        ]

    def throttle_wait(self, reply: Reply) -> float | None:
        """``Retry-After`` if given, else until ``Fastly-RateLimit-Reset`` (epoch seconds):
        Fastly documents no ``Retry-After``."""
        wait = parse_retry_after(reply.headers.get("Retry-After"))
        if wait is None and reply.status == 429:
            wait = until_epoch(reply.headers.get("Fastly-RateLimit-Reset"))
        return wait
