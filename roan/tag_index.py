"""Which cached URLs carried which cache tags, for caches that cannot purge by tag.

A placeholder: the index itself (a model, expiry, and the expansion of a tag purge into
URLs) is built separately; ``CacheTagMiddleware`` already calls :func:`remember`.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase


def remember(request: HttpRequest, response: HttpResponseBase, tags: frozenset[str]) -> None:
    """Record that ``response`` to ``request`` carries ``tags`` (the full set, before a
    header collapsed any). Called once per rendered cacheable response, never per hit of
    a cache in front."""
