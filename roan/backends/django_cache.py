"""Pages cached by Django itself (``cache_page`` or the cache middleware).

Django stores, per absolute URL, the list of headers a page varies on under a "header
key", and each variant of the page under a key made from the values of those headers.
A purge deletes the header key and the page stored for requests that send none of those
headers (the anonymous visitor's copy). Variants stored for particular header values
(``Vary: Cookie`` with a cookie) cannot be listed through Django's cache API, so they
live until their timeout: keep such pages short-lived, or out of the cache.

The keys contain the scheme and host (and language and time zone when those are on), so
``HOSTS`` must list the ``host[:port]`` names the site is served under.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.conf import settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.http import HttpRequest
from django.utils import cache as cache_utils

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


class _PageRequest(HttpRequest):
    """The minimal request Django's cache-key functions need for one page."""

    def __init__(self, scheme: str, host: str, target: str, language: str) -> None:
        super().__init__()
        path, _, query = target.partition("?")
        self.method = "GET"
        self.path = self.path_info = path
        self.META = {"HTTP_HOST": host, "QUERY_STRING": query}
        self.LANGUAGE_CODE = language
        self._roan_scheme = scheme

    def _get_scheme(self) -> str:
        return self._roan_scheme


def page_keys(request: HttpRequest, key_prefix: str, cache: Any) -> list[str]:
    """The header-list key of a cached page and its header-less variants' keys.

    Django's key functions are private; they are used in this one place, and
    ``tests/test_backends_django_cache.py`` proves that a ``cache_page`` view is rendered
    again after a purge, so a change in Django shows up as a failing test.
    """
    private: Any = cache_utils
    header_key = str(private._generate_cache_header_key(key_prefix, request))
    keys = [header_key]
    headerlist = cache.get(header_key)
    if headerlist is not None:
        for method in ("GET", "HEAD"):
            keys.append(str(private._generate_cache_key(request, method, headerlist, key_prefix)))
    return keys


class DjangoCacheBackend(BaseBackend):
    capabilities = frozenset({URL, ALL})
    batch_size = 100
    options_accepted: ClassVar[frozenset[str]] = frozenset(
        {"CACHE", "KEY_PREFIX", "SCHEMES", "LANGUAGES", "ALLOW_CLEAR"}
    )

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        if not self.hosts:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['HOSTS'] is required: Django's page cache keys "
                "contain the host, e.g. ['www.example.com', '127.0.0.1:8000']."
            )
        self.cache_alias = str(options.get("CACHE", "default"))
        try:
            caches[self.cache_alias]
        except InvalidCacheBackendError:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['CACHE']: no cache {self.cache_alias!r} in CACHES."
            ) from None
        self.key_prefix: str | None = options.get("KEY_PREFIX")
        self.schemes = self._list_option(options, "SCHEMES", default=("http", "https"))
        if not self.schemes or set(self.schemes) - {"http", "https"}:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['SCHEMES'] must list 'http' and/or 'https'."
            )
        self.languages = self._list_option(options, "LANGUAGES", default=())
        self.allow_clear = bool(options.get("ALLOW_CLEAR", False))

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind == ALL and not self.allow_clear:
            return "purging everything clears the whole cache; set ALLOW_CLEAR to allow it"
        return super().refuse(request)

    @property
    def nodes(self) -> tuple[str, ...]:
        return (f"cache:{self.cache_alias}",)

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        return [self._purge_one(request) for request in requests]

    def _purge_one(self, request: PurgeRequest) -> PurgeResult:
        cache = caches[self.cache_alias]
        prefix = self.key_prefix
        if prefix is None:
            prefix = settings.CACHE_MIDDLEWARE_KEY_PREFIX
        languages = self.languages or (settings.LANGUAGE_CODE,)
        hosts = (request.host,) if request.host else self.hosts
        deleted = False
        with Timer() as timer:
            try:
                if request.kind == ALL:
                    cache.clear()
                    deleted = True
                else:
                    for scheme in self.schemes:
                        for host in hosts:
                            for language in languages:
                                page = _PageRequest(scheme, host, request.target, language)
                                for key in page_keys(page, prefix, cache):
                                    deleted |= bool(cache.delete(key))
            except DisallowedHost:
                error = "a HOSTS entry is not in ALLOWED_HOSTS"
            except Exception as exc:  # the cache server (Redis, Memcached) may be down
                error = f"cache error ({type(exc).__name__})"
            else:
                error = ""
        if error:
            return PurgeResult(FAILED, latency_ms=timer.ms, error=error)
        return PurgeResult(OK if deleted else NOT_CACHED, latency_ms=timer.ms)
