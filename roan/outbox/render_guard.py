"""The render-race guard: a page rendered while a change committed is not cached.

roan purges after commit, so a reader who asks for the page after the purge gets the new
content. One who asked a moment *before* the commit does not: their render read the
old rows, and if it reaches the cache after the purge went out (a slow render, a slow
list), the cache keeps the old page for its whole lifetime, and the purge that should
have removed it has come and gone. A freshness run of the example (``tests/
test_freshness.py``) caught exactly that: an edit committed while the home page was
being rendered for nginx.

So, at commit, before its purges are sent, each transaction that purged cache tags
writes the time into ``ROAN_CACHE``, one key per model it changed (``blog.post``...) and
per hand-given tag it purged. A tagged page (``CacheTagMiddleware``) checks the keys of
the models and tags it carries once it has rendered: when one was written after the
render began, the page may show the old rows, and it goes out ``Cache-Control: private,
no-store``: this reader gets it, no cache keeps it, and the next reader's render (after
the commit) is the one cached.

It costs a ``set_many`` per committed change and a ``get_many`` per rendered page (a
cache miss: hits never reach Django), of one key per model on the page. It needs a
``ROAN_CACHE`` that every web process shares (Redis, Memcached, the database or file
cache), and clocks that agree across servers (see ``CLOCK_MARGIN``).
``ROAN_RENDER_GUARD = False`` turns it off.

What it cannot close: a page that finished rendering just *before* the time was
written, but reaches the cache after the purge (the time it takes the web server to
hand the response over, while the editor's process sends the purge). That window is the
transit between two processes on the same host, against the commit-to-purge time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.dummy import DummyCache
from django.http import HttpResponseBase

from roan.conf import roan_settings
from roan.shared_cache import outage

logger = logging.getLogger(__name__)

#: Seconds a change's time is kept: a render that takes longer is not guarded.
KEEP_SECONDS = 300
#: Seconds of clock difference between servers tolerated: a page whose render began up
#: to this long after a change committed is treated as concurrent with it. None by
#: default (one host, or clocks kept in step by NTP to well under the few milliseconds
#: between a commit and its purge); a render that began more than the clock difference
#: before the commit is always caught.
CLOCK_MARGIN = 0.0
#: The header value a guarded page goes out with.
NOT_CACHED = "private, no-store"

_KEY = "roan:changed:"


def _cache() -> Any:
    if not roan_settings.RENDER_GUARD or outage.down():
        return None
    try:
        cache = caches[roan_settings.CACHE]
    except InvalidCacheBackendError:
        return None
    return None if isinstance(cache, DummyCache) else cache


def group(tag: str) -> str:
    """What a tag's change time is kept under: its model's list tag for an object tag
    (``blog.post`` for ``blog.post:42``), the tag itself otherwise."""
    prefix = roan_settings.TAG_PREFIX
    rest = tag.removeprefix(prefix)
    head, colon, _pk = rest.partition(":")
    return prefix + head if colon and "." in head else tag


def _keys(tags: Iterable[str]) -> list[str]:
    # Hashed: a hand-given tag may hold characters (or a length) a cache refuses as a key.
    groups = sorted({group(tag) for tag in tags})
    return [_KEY + hashlib.sha256(g.encode()).hexdigest()[:32] for g in groups]


def mark_changed(tags: Iterable[str]) -> None:
    """Record that what these tags name changed now (called once the change commits,
    before its purges go out). Never raises."""
    cache = _cache()  # first: with the guard off, a page costs nothing more
    keys = _keys(tags) if cache is not None else []
    if not keys:
        return
    now = time.time()
    try:
        cache.set_many(dict.fromkeys(keys, now), timeout=KEEP_SECONDS)
    except Exception as exc:
        outage.failed()
        logger.warning("roan: could not record a change in %r for the render guard (%s)",
                       roan_settings.CACHE, type(exc).__name__)  # fmt: skip


def changed_since(tags: Iterable[str], started: float) -> bool:
    """Whether what one of these tags names (or another object of its model) changed
    after ``started`` (``time.time()``, less ``CLOCK_MARGIN``). ``False`` when the cache
    cannot tell."""
    cache = _cache()
    keys = _keys(tags) if cache is not None else []
    if not keys:
        return False
    try:
        found = cache.get_many(keys)
    except Exception as exc:
        outage.failed()
        logger.warning("roan: the render guard could not read %r (%s)",
                       roan_settings.CACHE, type(exc).__name__)  # fmt: skip
        return False
    since = started - CLOCK_MARGIN
    return any(isinstance(at, float) and at >= since for at in found.values())


def protect(response: HttpResponseBase, tags: Iterable[str], started: float) -> bool:
    """Mark ``response`` uncacheable when a model it shows changed while it rendered;
    returns whether it did."""
    if not changed_since(tags, started):
        return False
    response.headers["Cache-Control"] = NOT_CACHED
    logger.debug("roan: a change committed while this page rendered; not cached")
    return True
