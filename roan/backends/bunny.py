"""bunny.net: purges through Bunny's API, one URL, wildcard or tag per call.

- a URL: ``POST {API_URL}/purge?url=<absolute URL>&exactPath=true&async=false``
  (``exactPath``: a URL ending in ``/`` would otherwise purge everything below it);
- a prefix: the same with ``<absolute URL>*``;
- everything on one host: ``https://host/*``;
- a tag: ``POST {API_URL}/pullzone/{PULL_ZONE_ID}/purgeCache`` with ``{"CacheTag": t}``
  (pages tagged by their ``CDN-Tag`` header);
- everything: the same call with no body.

``AccessKey`` is the account's API key (Bunny has no narrower purge key).
https://docs.bunny.net/reference/purgepublic_indexpost
https://docs.bunny.net/reference/pullzonepublic_purgecachepostbytag
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

from roan.backends._api import APIBackend, Batch, json_body
from roan.backends._http import Reply
from roan.backends.base import ALL, PREFIX, TAG, URL, PurgeRequest

API_URL = "https://api.bunny.net"


class BunnyBackend(APIBackend):
    """Purge one Bunny pull zone by URL, prefix, tag or everything."""

    provider = "Bunny"
    default_api_url = API_URL
    capabilities = frozenset({URL, PREFIX, TAG, ALL})
    # One target per call; the dispatcher hands over this many at a time.
    batch_size = 50
    options_accepted: ClassVar[frozenset[str]] = APIBackend.options_accepted | {
        "API_KEY",
        "PULL_ZONE_ID",
    }
    # The bucket for exact URLs: 120 saved up, 5 a second. Wildcards and tags have a
    # smaller one (20, 0.5 a second); its 429 and Retry-After make them wait.
    # https://docs.bunny.net/docs/cdn-api-purge-rate-limits
    default_rate_limit: ClassVar[Mapping[str, float] | None] = {"RATE": 5, "BURST": 120}
    # CDN-Tag: at most 1,024 bytes. Its separator is not documented; a comma is assumed.
    tag_header: ClassVar[str | None] = "CDN-Tag"
    tag_separator: ClassVar[str] = ","
    tag_header_limit: ClassVar[int] = 1024
    tag_max_length: ClassVar[int] = 255

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self._key = self.secret_option(options, "API_KEY")
        self.zone = self.id_option(options, "PULL_ZONE_ID", r"[0-9]{1,12}")

    def auth_headers(self) -> dict[str, str]:
        return {"AccessKey": self._key}

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind in (URL, PREFIX) and "*" in request.target:
            return "a '*' in a Bunny URL is a wildcard; percent-encode it (%2A)"
        return super().refuse(request)

    def batches(self, requests: Sequence[PurgeRequest]) -> list[Batch]:
        zone = f"/pullzone/{self.zone}/purgeCache"
        batches: list[Batch] = []
        for index, request in enumerate(requests):
            if request.kind == TAG:
                payload = {"CacheTag": request.target}
                call = self.json_call("POST", zone, payload, f"tag {request.target}")
            elif request.kind == ALL and not request.host:
                call = self.json_call("POST", zone, None, "everything")
            else:
                if request.kind == URL:
                    url, exact = self.absolute(request), "true"
                elif request.kind == PREFIX:
                    url, exact = self.absolute(request) + "*", "false"
                else:  # everything on one host
                    url, exact = f"{self.scheme}://{self.page_host(request)}/*", "false"
                query = urlencode({"url": url, "exactPath": exact, "async": "false"})
                call = self.json_call("POST", f"/purge?{query}", None, url)
            batches.append(Batch((index,), call))
        return batches

    def message(self, reply: Reply) -> str:
        body = json_body(reply)
        if not isinstance(body, dict):
            return ""
        said = [str(body[k]) for k in ("Message", "ErrorKey") if isinstance(body.get(k), str)]
        return " ".join(said[:1]) + (f" ({said[1]})" if len(said) > 1 else "")
