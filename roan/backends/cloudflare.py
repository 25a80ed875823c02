"""Cloudflare: ``POST {API_URL}/zones/{ZONE_ID}/purge_cache`` with a JSON body.

One call per batch and per kind (the documented body names one kind):
``{"files": [absolute URLs]}``, ``{"prefixes": ["host/path"]}``, ``{"tags": [...]}``,
``{"hosts": [...]}`` (everything on some hosts) and ``{"purge_everything": true}`` (the
zone). Every request of a call gets the call's ``result.id`` as its purge id.
https://developers.cloudflare.com/api/resources/cache/methods/purge/

``SOFT = True`` (default False) sends the same bodies to ``invalidate_cache`` instead:
Cloudflare marks the content stale rather than removing it, revalidates it with the
origin on the next request (a ``304`` when it did not change, given an ``ETag`` or
``Last-Modified``), and may serve the stale copy meanwhile or when the origin fails, as
the page's ``stale-while-revalidate`` and ``stale-if-error`` allow.
https://developers.cloudflare.com/api/resources/cache/methods/invalidate/

Auth is an API token (``Authorization: Bearer``; create one with only *Zone > Cache
Purge > Purge* on the one zone) or the legacy ``EMAIL`` + global ``API_KEY``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from roan.backends._api import APIBackend, Batch, chunked, json_body
from roan.backends._http import Reply
from roan.backends.base import ALL, OK, PREFIX, TAG, URL, PurgeRequest, PurgeResult
from roan.backends.options import soft_option

#: Cloudflare's public API.
API_URL = "https://api.cloudflare.com/client/v4"
# Per request: 30 URLs has been the limit on every plan since 2020 and is still what
# libraries send; the current table allows 100 (500 on Enterprise) for URLs and 100
# for tags, hosts and prefixes. https://developers.cloudflare.com/cache/how-to/purge-cache/
DEFAULT_BATCH = 30
MOST_URLS = 500
MOST_OTHERS = 100
# Prefixes: "at most 31 path separators", no query string or fragment.
MAX_PREFIX_SLASHES = 31
#: The purge token bucket per plan: (calls a second, calls saved up).
#: https://developers.cloudflare.com/cache/how-to/purge-cache/#availability-and-limits
PLANS: dict[str, tuple[float, float]] = {
    "free": (5 / 60, 25),
    "pro": (5, 25),
    "business": (10, 50),
    "enterprise": (50, 500),
}


class CloudflareBackend(APIBackend):
    """Purge one Cloudflare zone by URL, prefix, tag, host or everything."""

    provider = "Cloudflare"
    default_api_url = API_URL
    capabilities = frozenset({URL, PREFIX, TAG, ALL})
    batch_size = DEFAULT_BATCH
    options_accepted: ClassVar[frozenset[str]] = APIBackend.options_accepted | {
        "ZONE_ID",
        "API_TOKEN",
        "EMAIL",
        "API_KEY",
        "BATCH_SIZE",
        "PLAN",
        "SOFT",
    }
    # Cache-Tag: comma-separated, up to 16 KB of tags per response, 1,024 characters a
    # tag in API calls. https://developers.cloudflare.com/cache/how-to/purge-cache/purge-by-tags/
    tag_header: ClassVar[str | None] = "Cache-Tag"
    tag_separator: ClassVar[str] = ","
    tag_header_limit: ClassVar[int] = 16 * 1024
    tag_max_length: ClassVar[int] = 1024

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.zone_id = self.id_option(options, "ZONE_ID", r"[A-Za-z0-9]{1,64}")
        token = "API_TOKEN" in options
        legacy = "EMAIL" in options or "API_KEY" in options
        if token == legacy:
            raise ImproperlyConfigured(
                f"{self.where} needs API_TOKEN (a token with Cache Purge on this zone), "
                "or EMAIL and API_KEY (the legacy global key), not both."
            )
        if token:
            self._auth = {"Authorization": f"Bearer {self.secret_option(options, 'API_TOKEN')}"}
        else:
            self._auth = {
                "X-Auth-Email": self.secret_option(options, "EMAIL"),
                "X-Auth-Key": self.secret_option(options, "API_KEY"),
            }
        self.batch_size = self.batch_size_option(options, DEFAULT_BATCH, MOST_URLS)
        if options.get("PLAN", "free") not in PLANS:
            raise ImproperlyConfigured(
                f"{self.where}['PLAN'] must be one of {', '.join(PLANS)} (it sets the "
                "default RATE_LIMIT)."
            )
        self.soft = soft_option(alias, options, default=False)
        action = "invalidate" if self.soft else "purge"
        self.path = f"/zones/{self.zone_id}/{action}_cache"

    @classmethod
    def default_rate_limit_for(cls, config: Mapping[str, Any]) -> Mapping[str, float] | None:
        """The plan's purge bucket (``PLAN``, default ``"free"``), counted in targets of
        full calls: roan's tokens are targets, Cloudflare's are calls of ``BATCH_SIZE``."""
        calls = PLANS.get(str(config.get("PLAN", "free")))
        size = config.get("BATCH_SIZE", DEFAULT_BATCH)
        if calls is None or not isinstance(size, int) or size < 1:
            return None  # reported when the backend is built
        return {"RATE": calls[0] * size, "BURST": calls[1] * size}

    def auth_headers(self) -> dict[str, str]:
        return dict(self._auth)

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind == PREFIX:
            if "?" in request.target or "#" in request.target:
                return "a Cloudflare prefix cannot have a query string or fragment"
            if request.target.count("/") > MAX_PREFIX_SLASHES:
                return f"a Cloudflare prefix has at most {MAX_PREFIX_SLASHES} '/'"
        if request.kind == TAG and (not request.target or "," in request.target):
            return "a Cloudflare tag cannot be empty or contain a comma"
        return super().refuse(request)

    def batches(self, requests: Sequence[PurgeRequest]) -> list[Batch]:
        groups: dict[str, list[int]] = {}
        everything: list[int] = []
        for index, request in enumerate(requests):
            if request.kind == ALL and not request.host:
                everything.append(index)
            else:
                key = {URL: "files", PREFIX: "prefixes", TAG: "tags", ALL: "hosts"}[request.kind]
                groups.setdefault(key, []).append(index)
        batches: list[Batch] = []
        if everything:
            # The whole zone once answers for every "everything" in the batch.
            call = self.json_call("POST", self.path, {"purge_everything": True}, "everything")
            batches.append(Batch(tuple(everything), call))
        for key, indexes in groups.items():
            size = self.batch_size if key == "files" else min(self.batch_size, MOST_OTHERS)
            for chunk in chunked(indexes, size):
                values = list(dict.fromkeys(self._value(requests[i]) for i in chunk))
                target = f"{len(chunk)} {key}" if len(chunk) > 1 else values[0]
                batches.append(
                    Batch(chunk, self.json_call("POST", self.path, {key: values}, target))
                )
        return batches

    def _value(self, request: PurgeRequest) -> str:
        if request.kind == URL:
            return self.absolute(request)
        if request.kind == PREFIX:
            # No scheme: "www.example.com/posts/".
            return f"{self.page_host(request)}{request.target}"
        if request.kind == ALL:
            return self.page_host(request)
        return request.target

    def message(self, reply: Reply) -> str:
        return _errors(json_body(reply))

    def succeeded(self, reply: Reply, batch: Batch) -> list[PurgeResult] | str:
        body = json_body(reply)
        if not isinstance(body, dict) or body.get("success") is not True:
            return self.clean(_errors(body)) or "the answer is not Cloudflare's success envelope"
        result = body.get("result")
        purge_id = result.get("id") if isinstance(result, dict) else None
        ok = PurgeResult(
            OK,
            http_status=reply.status,
            latency_ms=reply.latency_ms,
            purge_id=self.clean(str(purge_id))[:200] if purge_id else "",
            soft=self.soft,
        )
        return [ok] * len(batch.indexes)


def _errors(body: Any) -> str:
    """``code: message`` of each entry of the envelope's ``errors``."""
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return ""
    said = []
    for error in body["errors"][:5]:
        if isinstance(error, dict):
            code, text = error.get("code"), error.get("message")
            said.append(f"{code}: {text}" if code is not None else str(text))
    return "; ".join(said)
