"""Pages cached by Django itself (``cache_page`` or the cache middleware).

Django stores, per absolute URL, the list of headers a page varies on under a "header
key", and each variant of the page under a key made from the values of those headers.
A purge deletes the header key and the copies stored for ``GET`` and ``HEAD`` requests
that send none of those headers (the anonymous visitor's copy). Deleting the header key
alone is not enough: the next visitor re-creates it, and every old variant stored under
the same header list would be served again. Variants stored for particular header values
(``Vary: Cookie`` with a cookie) cannot be listed through Django's cache API, so they
live until their timeout: keep such pages short-lived, or out of the cache.

The keys contain the scheme and host (and language and time zone when those are on), so
``HOSTS`` must list the ``host[:port]`` names the site is served under.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import unquote

from django.conf import settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.http import HttpRequest
from django.utils import cache as cache_utils
from django.utils import timezone

from roan.backends.base import (
    ALL,
    FAILED,
    NOT_CACHED,
    OK,
    URL,
    BaseBackend,
    PurgeRequest,
    PurgeResult,
    Timer,
)

logger = logging.getLogger(__name__)


class _PageRequest(HttpRequest):
    """The minimal request Django's cache-key functions need for one page."""

    def __init__(self, scheme: str, host: str, target: str, language: str) -> None:
        super().__init__()
        path, _, query = target.partition("?")
        self.method = "GET"
        # A real request's path is decoded (WSGI's PATH_INFO); Django encodes it again
        # when it builds the absolute URL the keys are made from. The query stays raw.
        self.path = self.path_info = unquote(path)
        self.META = {"HTTP_HOST": host, "QUERY_STRING": query}
        self.LANGUAGE_CODE = language
        self._roan_scheme = scheme

    def _get_scheme(self) -> str:
        return self._roan_scheme


def page_keys(request: HttpRequest, key_prefix: str, cache: Any) -> list[str]:
    """The header-list key of a cached page and the keys of its header-less copies.

    ``_generate_cache_header_key`` is private to Django (there is no public way to name
    the header key); it is used here and nowhere else, and
    ``tests/test_backends_django_cache.py`` proves that a ``cache_page`` view is rendered
    again after a purge, so a change in Django shows up as a failing test.
    """
    private: Any = cache_utils
    keys = [str(private._generate_cache_header_key(key_prefix, request))]
    for method in ("GET", "HEAD"):
        # Public: None when no header list is stored (the page is not cached).
        key = cache_utils.get_cache_key(request, key_prefix, method, cache=cache)
        if key is not None:
            keys.append(key)
    return keys


class DjangoCacheBackend(BaseBackend):
    """Deletes pages from a Django cache; the one node is named ``cache:<alias>``."""

    capabilities = frozenset({URL, ALL})
    batch_size = 100
    options_accepted: ClassVar[frozenset[str]] = frozenset(
        {"CACHE", "KEY_PREFIX", "SCHEMES", "LANGUAGES", "ALLOW_CLEAR"}
    )

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        where = f"ROAN_BACKENDS[{alias!r}]"
        if not self.hosts:
            raise ImproperlyConfigured(
                f"{where}['HOSTS'] is required: Django's page cache keys contain the host, "
                "e.g. ['www.example.com', '127.0.0.1:8000']."
            )
        for host in self.hosts:
            if "/" in host or not host.strip():
                raise ImproperlyConfigured(
                    f"{where}['HOSTS']: {host!r} is not a host[:port] (no scheme, no path)."
                )
        self.cache_alias = options.get("CACHE", "default")
        try:
            caches[self.cache_alias]
        except (InvalidCacheBackendError, TypeError):
            raise ImproperlyConfigured(
                f"{where}['CACHE']: no cache {self.cache_alias!r} in CACHES."
            ) from None
        key_prefix = options.get("KEY_PREFIX")
        if key_prefix is not None and not isinstance(key_prefix, str):
            raise ImproperlyConfigured(f"{where}['KEY_PREFIX'] must be a string.")
        self.key_prefix: str | None = key_prefix
        self.schemes = self._list_option(options, "SCHEMES", default=("http", "https"))
        if not self.schemes or set(self.schemes) - {"http", "https"}:
            raise ImproperlyConfigured(f"{where}['SCHEMES'] must list 'http' and/or 'https'.")
        self.languages = self._list_option(options, "LANGUAGES", default=())
        allow_clear = options.get("ALLOW_CLEAR", False)
        if not isinstance(allow_clear, bool):
            raise ImproperlyConfigured(f"{where}['ALLOW_CLEAR'] must be True or False.")
        self.allow_clear = allow_clear

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind == ALL and not self.allow_clear:
            return "purging everything clears the whole cache; set ALLOW_CLEAR to allow it"
        if request.kind == URL and not request.target.startswith("/"):
            return f"{request.target[:50]!r} is not a path (it must start with /)"
        return super().refuse(request)

    @property
    def nodes(self) -> tuple[str, ...]:
        return (f"cache:{self.cache_alias}",)

    def key_prefixes(self) -> tuple[str, ...]:
        """``KEY_PREFIX``, or both defaults: the cache middleware uses
        ``CACHE_MIDDLEWARE_KEY_PREFIX`` but ``cache_page()`` without ``key_prefix`` uses
        ``""`` (``django.middleware.cache.CacheMiddleware.__init__``)."""
        if self.key_prefix is not None:
            return (self.key_prefix,)
        return tuple(dict.fromkeys((settings.CACHE_MIDDLEWARE_KEY_PREFIX, "")))

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        return [self._purge_one(request) for request in requests]

    def _purge_one(self, request: PurgeRequest) -> PurgeResult:
        cache = caches[self.cache_alias]
        # Pages were keyed with the site's language and time zone, not with whatever the
        # purging request (an editor in the admin) has activated.
        languages = (self.languages or (settings.LANGUAGE_CODE,)) if settings.USE_I18N else ("",)
        hosts = (request.host,) if request.host else self.hosts
        deleted = 0
        error = ""
        with Timer() as timer:
            try:
                if request.kind == ALL:
                    cache.clear()
                    deleted = 1
                else:
                    keys: dict[str, None] = {}
                    with timezone.override(None):
                        for prefix in self.key_prefixes():
                            for scheme in self.schemes:
                                for host in hosts:
                                    for language in languages:
                                        page = _PageRequest(scheme, host, request.target, language)
                                        keys.update(dict.fromkeys(page_keys(page, prefix, cache)))
                    deleted = sum(bool(cache.delete(key)) for key in keys)
            except DisallowedHost:
                error = "a host is not in ALLOWED_HOSTS, so no page can be cached under it"
            except Exception as exc:  # the cache server (Redis, Memcached) may be down
                error = f"cache error ({type(exc).__name__})"
        if error:
            result = PurgeResult(
                FAILED,
                latency_ms=timer.ms,
                error=error,
                retryable=not error.startswith("a host"),
            )
        else:
            result = PurgeResult(OK if deleted else NOT_CACHED, latency_ms=timer.ms)
        logger.debug(
            "%s: %s %s on %s -> %s, %d keys deleted (%.1f ms)",
            self.alias,
            request.kind,
            request.target,
            self.nodes[0],
            result.status,
            deleted,
            timer.ms,
        )
        return result
