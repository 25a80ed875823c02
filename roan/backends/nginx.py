"""nginx's proxy cache with the cache purge module (``ngx_cache_purge``).

Like roan 0.1, a purge of ``/posts`` is ``GET {LOCATION}/posts``: ``LOCATION`` is the
URL of nginx's purge location (``http://localhost/purge`` by default in 0.1). With
``METHOD = "PURGE"`` the node is the cache's own root and the request is
``PURGE {node}/posts``. The query string stays part of the path, and the page's host
goes in the ``Host`` header, because nginx's cache key usually contains ``$host``.

Debian 12's module (2.3) has no wildcard and no purge-all, so this backend purges by URL
only. ``example/deploy/nginx.conf`` is a configuration tested against this backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import Call
from roan.backends._pipelined import HTTPNodesBackend
from roan.backends.base import URL, PurgeRequest, PurgeResult


class NginxBackend(HTTPNodesBackend):
    """``GET {LOCATION}{path}`` (or ``PURGE {node}{path}``) with the page's ``Host``."""

    capabilities = frozenset({URL})
    # One HTTP request per URL, pipelined; the batch only bounds how long one call may take.
    batch_size = 100
    options_accepted: ClassVar[frozenset[str]] = HTTPNodesBackend.options_accepted | {"METHOD"}

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        method = options.get("METHOD", "GET")
        self.method = method.upper() if isinstance(method, str) else ""
        if self.method not in {"GET", "PURGE"}:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['METHOD'] must be 'GET' (a purge location, as in "
                f"roan 0.1) or 'PURGE', not {method!r}."
            )

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        base = self.node_url(node)
        calls = [
            Call(self.method, base + request.target, self.host_header(request), request.target)
            for request in requests
        ]
        return self.transport.send_all(node, calls)
