"""Varnish: ``PURGE`` for URLs, ``BAN`` for prefixes and everything, xkey for tags.

Works with the VCL in ``example/deploy/varnish.vcl``: ``PURGE /path`` with the page's
``Host``; ``BAN /`` with ``X-Ban-Url: ^<escaped prefix>`` for a prefix (``.`` for
everything); ``PURGE /`` with ``xkey-purge: tag1 tag2`` for tags (varnish-modules).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from roan.backends._http import HTTPNodesBackend
from roan.backends.base import ALL, PREFIX, TAG, URL, PurgeRequest, PurgeResult


class VarnishBackend(HTTPNodesBackend):
    capabilities = frozenset({URL, PREFIX, TAG, ALL})
    batch_size = 50
    options_accepted = HTTPNodesBackend.options_accepted | {"BAN_URL_HEADER", "XKEY_HEADER"}

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.ban_header = str(options.get("BAN_URL_HEADER", "X-Ban-Url"))
        self.xkey_header = str(options.get("XKEY_HEADER", "xkey-purge"))

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        base = self.node_url(node)
        calls: list[tuple[str, str, Mapping[str, str]]] = []
        for request in requests:
            headers = self.host_header(request)
            if request.kind == URL:
                calls.append(("PURGE", base + request.target, headers))
            elif request.kind == PREFIX:
                headers[self.ban_header] = "^" + re.escape(request.target)
                calls.append(("BAN", base + "/", headers))
            elif request.kind == ALL:
                headers[self.ban_header] = "."
                calls.append(("BAN", base + "/", headers))
            else:  # TAG: one request per tag keeps one result per tag honest
                headers[self.xkey_header] = request.target
                calls.append(("PURGE", base + "/", headers))
        return self.transport.send_all(calls)
