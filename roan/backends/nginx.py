"""nginx's proxy cache with the cache purge module (``ngx_cache_purge``).

Like roan 0.1, a purge of ``/posts`` is ``GET {LOCATION}/posts``: ``LOCATION`` is the
URL of nginx's purge location (``http://localhost/purge`` by default in 0.1). With
``METHOD = "PURGE"`` the node is the cache's own root and the request is
``PURGE {node}/posts``. The query string stays part of the path, and the page's host
goes in the ``Host`` header, because nginx's cache key usually contains ``$host``.

Debian 12's module (2.3) has no wildcard and no purge-all, so this backend purges by URL
only. It has no soft purge either: it deletes the cache file. ``SOFT = True`` (with
``METHOD = "PURGE"``, whose node is the cache's root) sends a refresh instead:
``GET {node}/posts`` with ``X-Roan-Refresh: 1``, which the example configuration maps to
``proxy_cache_bypass``: nginx fetches the page from the origin and stores it in place of
the old copy, which readers keep getting meanwhile. No reader ever misses; the refresh
waits for the origin's page (a purge does not), and pages over 1 MiB are not read whole.
``example/deploy/nginx.conf`` is a configuration tested against this backend.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import Call
from roan.backends._pipelined import HTTPNodesBackend
from roan.backends.base import URL, PurgeRequest, PurgeResult
from roan.backends.options import soft_option

# RFC 9110 token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class NginxBackend(HTTPNodesBackend):
    """``GET {LOCATION}{path}`` (or ``PURGE {node}{path}``) with the page's ``Host``."""

    capabilities = frozenset({URL})
    # One HTTP request per URL, pipelined; the batch only bounds how long one call may take.
    batch_size = 100
    options_accepted: ClassVar[frozenset[str]] = HTTPNodesBackend.options_accepted | {
        "METHOD",
        "SOFT",
        "SOFT_HEADER",
    }

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        method = options.get("METHOD", "GET")
        self.method = method.upper() if isinstance(method, str) else ""
        if self.method not in {"GET", "PURGE"}:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['METHOD'] must be 'GET' (a purge location, as in "
                f"roan 0.1) or 'PURGE', not {method!r}."
            )
        self.soft = soft_option(alias, options, default=False)
        if self.soft and self.method != "PURGE":
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['SOFT'] refreshes pages through the cache's root: "
                "it needs METHOD 'PURGE' and NODES (or LOCATION) naming the cache's root URL."
            )
        header = options.get("SOFT_HEADER", "X-Roan-Refresh")
        if not isinstance(header, str) or not _TOKEN.fullmatch(header):
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['SOFT_HEADER'] must be an HTTP header name."
            )
        self.soft_header = header

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        base = self.node_url(node)
        if self.soft:
            refresh = {self.soft_header: "1"}
            calls = [
                Call("GET", base + r.target, {**self.host_header(r), **refresh}, r.target)
                for r in requests
            ]
            results = self.transport.send_all(node, calls)
            for result in results:
                result.soft = True
            return results
        calls = [
            Call(self.method, base + request.target, self.host_header(request), request.target)
            for request in requests
        ]
        return self.transport.send_all(node, calls)
