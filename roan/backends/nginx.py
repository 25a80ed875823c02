"""nginx's proxy cache with the cache purge module (``ngx_cache_purge``).

Like roan 0.1, a purge of ``/posts`` is ``GET {LOCATION}/posts``: ``LOCATION`` is the
URL of nginx's purge location (``http://localhost/purge`` by default). With
``METHOD = "PURGE"`` the node is the cache's own root and the request is
``PURGE {node}/posts``. The page's host goes in the ``Host`` header, because nginx's
cache key usually contains ``$host``.

Debian 12's module (2.3) has no wildcard and no purge-all, so this backend purges by URL
only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import HTTPNodesBackend
from roan.backends.base import URL, PurgeRequest, PurgeResult


class NginxBackend(HTTPNodesBackend):
    capabilities = frozenset({URL})
    batch_size = 100
    options_accepted = HTTPNodesBackend.options_accepted | {"METHOD"}

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.method = str(options.get("METHOD", "GET")).upper()
        if self.method not in {"GET", "PURGE"}:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['METHOD'] must be 'GET' (a purge location, as in "
                f"roan 0.1) or 'PURGE', not {options.get('METHOD')!r}."
            )

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        base = self.node_url(node)
        calls = [(self.method, base + r.target, self.host_header(r)) for r in requests]
        return self.transport.send_all(calls)
