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
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import HTTPTransport
from roan.backends.base import URL, BaseBackend, PurgeRequest, PurgeResult, redact_url


def node_urls(backend: BaseBackend, options: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``LOCATION`` or ``NODES`` option: http(s) base URLs, without a trailing slash."""
    alias = backend.alias
    if "LOCATION" in options and "NODES" in options:
        raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}]: give LOCATION or NODES, not both.")
    if "LOCATION" in options:
        urls: Any = [options["LOCATION"]]
    elif "NODES" in options:
        urls = options["NODES"]
        if isinstance(urls, str) or not urls:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['NODES'] must be a non-empty list of URLs."
            )
    else:
        raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}] needs LOCATION or NODES.")
    cleaned = []
    for url in urls:
        parts = urlsplit(str(url))
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]: {redact_url(str(url))!r} is not an http(s) URL."
            )
        if parts.query or parts.fragment:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]: a node URL cannot have a query or fragment."
            )
        cleaned.append(str(url).rstrip("/"))
    if len(set(cleaned)) != len(cleaned):
        raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}]: the same node is listed twice.")
    return tuple(cleaned)


class NginxBackend(BaseBackend):
    capabilities = frozenset({URL})
    batch_size = 100
    options_accepted: ClassVar[frozenset[str]] = frozenset({"LOCATION", "NODES", "METHOD"})

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self._urls = node_urls(self, options)
        self.method = str(options.get("METHOD", "GET")).upper()
        if self.method not in {"GET", "PURGE"}:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['METHOD'] must be 'GET' (a purge location, as in "
                f"roan 0.1) or 'PURGE', not {options.get('METHOD')!r}."
            )
        # Node names are shown and stored: never with credentials.
        self._by_name = {redact_url(url): url for url in self._urls}
        self.transport = HTTPTransport(self)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        base = self._by_name[node]
        calls = []
        for request in requests:
            host = request.host or self.default_host()
            calls.append((self.method, base + request.target, {"Host": host} if host else {}))
        return self.transport.send_all(calls)

    def close(self) -> None:
        self.transport.close()
