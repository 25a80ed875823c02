"""The URL<->tag index: which cached pages carry which cache tags.

A cache that purges by tag (Varnish with xkey, a CDN) gets a ``tag`` purge as it is. One
that cannot (nginx, Django's page cache, a plain HTTP purge endpoint) gets a ``url`` purge
of each page that carried the tag while it could still be cached: the tag middleware calls
:func:`remember` for every response it tags (a cache miss: hits never reach Django), which
writes one row per tag with the page's lifetime, in one statement (none when it is indexed
already: see :func:`notes_kept`). Rows past their lifetime are never expanded, and
``roan_prune`` deletes them and keeps the index within ``ROAN_TAG_INDEX_MAX_URLS_PER_TAG``
and ``ROAN_TAG_INDEX_MAX_ROWS``.
:mod:`roan.tags.purges` turns a tag purge into requests for each backend.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl

from django.db import models, router, transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from roan import context, shared_cache
from roan.backends.base import MAX_TARGET_LENGTH, TAG, BaseBackend
from roan.conf import roan_settings
from roan.retrying import retried
from roan.rules.templating import has_dot_segment
from roan.tags.names import model_tag

logger = logging.getLogger(__name__)

#: Longest tag the index keeps (its column); a longer tag is not indexed (and logged).
MAX_TAG_LENGTH = 255
#: Seconds the index keeps a page beyond its ``max-age``: caches serve a little past it
#: (Varnish's grace, a slow clock), and a purge that reaches an expired copy costs nothing.
EXPIRY_MARGIN = 60
#: Tags looked up in one query when a purge is expanded.
LOOKUP_CHUNK = 100

_CONTROL = {chr(c) for c in range(0x21)} | {"\x7f"}


# -- writing -------------------------------------------------------------------------------


def lifetime(response: HttpResponseBase) -> float | None:
    """Seconds a shared cache may keep ``response``: ``s-maxage``, else ``max-age``, else
    ``ROAN_TAG_INDEX_TTL``; ``None`` when no shared cache keeps it (``private``,
    ``no-store``, a lifetime of 0)."""
    header = response.get("Cache-Control", "") or ""
    directives: dict[str, str] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "private" in directives:
        return None
    for name in ("s-maxage", "max-age"):
        if name in directives:
            try:
                seconds = float(int(directives[name]))
            except ValueError:
                continue  # a malformed value: caches ignore it too
            return seconds if seconds > 0 else None
    return roan_settings.TAG_INDEX_TTL


def usable_tag(tag: object) -> bool:
    return (
        isinstance(tag, str)
        and 0 < len(tag) <= MAX_TAG_LENGTH
        and not any(ch in _CONTROL for ch in tag)
    )


def collapse(tags: Iterable[str], limit: int) -> list[str]:
    """At most ``limit`` tags for one URL: over it, object tags become their model's list
    tag (every save purges the list tag as well, so the page is still purged)."""
    unique = sorted(set(tags))
    if len(unique) <= limit:
        return unique
    prefix = roan_settings.TAG_PREFIX
    collapsed: set[str] = set()
    for tag in unique:
        if is_object_tag(tag):
            head, _, _pk = tag[len(prefix) :].partition(":")
            collapsed.add(prefix + head)
        else:
            collapsed.add(tag)
    result = sorted(collapsed)
    if len(result) > limit:
        # Only hand-written tags (or more models than the limit) get here.
        logger.warning(
            "roan: a page carries %d tags even with object tags collapsed; the index keeps "
            "%d (ROAN_TAG_INDEX_MAX_TAGS)",
            len(result),
            limit,
        )
        result = result[:limit]
    return result


def url_key(host: str, path: str) -> str:
    return hashlib.sha256(f"{host}\n{path}".encode()).hexdigest()


def url_purging_backends() -> list[BaseBackend]:
    """The configured backends that purge a tag by URL, and so read the index."""
    from roan import backends

    return [b for b in backends.get_backends().values() if TAG not in b.capabilities]


_PORT = re.compile(r":[0-9]*\Z")


def without_port(host: str) -> str:
    """``host`` without its port, as nginx's ``$host`` keys a page (an IPv6 literal in
    brackets kept whole)."""
    return _PORT.sub("", host)


def page_host(stored: str, hosts: Sequence[str]) -> str:
    """The host to purge a page indexed under ``stored`` on a backend with ``hosts``."""
    if not hosts:
        return ""  # the backend's own (its only) site
    host = stored if stored in hosts else without_port(stored)
    # The default host is written "" by URL rules too: the same page's purges are then
    # twins, sent once instead of twice (the second one "not cached").
    return "" if host == hosts[0] else host


def purged_host(host: str, backends: Sequence[BaseBackend]) -> str | None:
    """``host`` (as Django saw it) as the purge will name it, or ``None`` when none of
    ``backends`` purges that host.

    The port goes, as the caches key the page (nginx's ``$host`` has none) and as
    :func:`roan.tags.purges._page_host` sends it, unless a backend lists ``host:port``
    in its ``HOSTS`` itself.
    """
    bare = without_port(host)
    found: str | None = None
    for backend in backends:
        if host in backend.hosts:
            return host
        if not backend.hosts or bare in backend.hosts:
            found = bare
    return found


def tracking_params(query: str) -> bool:
    """Whether ``query`` names a parameter of ``ROAN_TAG_INDEX_IGNORED_PARAMS``."""
    patterns = roan_settings.TAG_INDEX_IGNORED_PARAMS
    if not query or not patterns:
        return False
    for name, _value in parse_qsl(query, keep_blank_values=True):
        lowered = name.lower()
        if any(fnmatchcase(lowered, pattern.lower()) for pattern in patterns):
            return True
    return False


def remember(request: HttpRequest, response: HttpResponseBase, tags: frozenset[str]) -> bool:
    """Record that ``request``'s URL (host, path and query) carried ``tags``, for as long
    as a shared cache may keep ``response``. Return ``False`` when a cache that purges
    tags by URL could keep the response but no purge would reach it: the caller then
    makes it uncacheable (a tag purge may be wider than needed, never narrower).

    Only what a purge reaches is indexed: a 2xx response (a tagged 404 from
    ``get_object_or_404`` or a redirect is not kept at all: one row per URL a visitor
    makes up would have no bound), on a host a URL-purging backend purges (stored as the
    purge names it), a path without dot segments, no tracking parameters
    (``ROAN_TAG_INDEX_IGNORED_PARAMS``) and at most ``ROAN_TAG_INDEX_MAX_VARIANTS`` query
    strings per path. The query string is kept as sent, not sorted: the caches key it so
    (nginx's ``$request_uri``), and a purge must name that key.

    Called by the tag middleware once per rendered response (a cache miss). One upsert
    statement (and one look-up for a new query string); a URL rendered again gets its new
    lifetime. With a shared ``ROAN_CACHE``, what was written is noted there, and a miss of
    a URL whose rows hold the same tags for longer than the new copy lives writes nothing
    (one cache read); rows are then written to live half the page's lifetime longer, so
    that later misses skip. Never raises: the response matters more than the index.
    """
    if not (roan_settings.ENABLED and roan_settings.TAGS and context.indexing()):
        return True
    if request.method not in {"GET", "HEAD"}:
        return True
    ttl = lifetime(response)
    if ttl is None:
        return True
    backends = url_purging_backends()
    if not backends:
        return True  # every backend purges by tag: nothing reads the index
    try:
        host = purged_host(request.get_host().lower(), backends)
        path = request.get_full_path()
    except Exception:  # a Host that ALLOWED_HOSTS refuses: nothing caches it under ours
        return True
    if host is None:
        return True  # a site none of these caches purges: not theirs to keep
    if not 200 <= response.status_code < 300:
        return False
    base, _, query = path.partition("?")
    # A dot segment (plain or percent-encoded) sent to a purge location would name another
    # URL: a blind request from a trusted address.
    if has_dot_segment(request.path) or has_dot_segment(base) or tracking_params(query):
        return False
    if len(host) > 255 or len(path) > MAX_TARGET_LENGTH:
        return False
    kept = [tag for tag in tags if usable_tag(tag)]
    if len(kept) != len(tags):
        logger.warning("roan: %d unusable tag(s) on %s not indexed", len(tags) - len(kept), path)
    if not kept:
        return True
    from roan.models import TaggedURL

    now = timezone.now()
    needed = now + datetime.timedelta(seconds=ttl + EXPIRY_MARGIN)
    key, page = url_key(host, path), url_key(host, base)
    stored = collapse(kept, max(1, roan_settings.TAG_INDEX_MAX_TAGS))
    digest = hashlib.sha256("\n".join(stored).encode()).hexdigest()[:32]
    noting = notes_kept()
    if noting and _noted(key, digest, needed):
        return True  # the same tags, indexed for longer than this copy lives: nothing to do
    # Kept a little longer than the copy lives when the write is noted, so that the next
    # misses of this URL in that time skip it.
    expires = needed + datetime.timedelta(seconds=ttl * REFRESH_HEADROOM if noting else 0)
    db = router.db_for_write(TaggedURL)
    try:
        # The bare path is always kept (one per path): crawlers' query strings must not
        # make the page itself uncacheable.
        if query and not _variant_allowed(page, key, now, db):
            return False
    except Exception:
        logger.exception("roan: counting the indexed variants of %s failed", base)
        return False
    rows = [
        TaggedURL(tag=tag, host=host, path=path, url_key=key, page_key=page, expires_at=expires)
        for tag in stored
    ]

    def write() -> None:
        # A savepoint: a failed write must not spoil a transaction the view runs in.
        with transaction.atomic(using=db):
            _upsert(rows, db)

    try:
        # Pages of the same tags rendered at once upsert the same rows: one that loses
        # a lock race (a deadlock on MariaDB) tries again, or its page would be missing
        # from the index, and not purged by tag.
        retried(write, using=db, what="writing the tag index")
    except Exception:
        logger.exception("roan: writing the tag index for %s failed", path)
        return False
    if noting:
        _note(key, digest, expires, now)
    return True


# -- what is indexed already (notes in ROAN_CACHE) -------------------------------------------

#: A URL's note: ``NOTE_PREFIX + url_key`` -> ``(digest of its stored tags, expiry)``.
NOTE_PREFIX = "roan:tag-index:url:1:"
#: A URL's rows are written to live this fraction of the page's lifetime longer than the
#: copy just rendered: a miss of the same URL with the same tags within that time (another
#: cache node, a page purged and rendered again) writes nothing.
REFRESH_HEADROOM = 0.5


def notes_kept() -> bool:
    """Whether :func:`remember` notes what it indexed in ``ROAN_CACHE`` (and skips a
    write that is noted): only in a cache every process shares (``roan_prune``, which
    drops the notes of what it forgets, runs in another process), while it answers."""
    return shared_cache.is_shared() and not shared_cache.outage.down()


def _noted(key: str, digest: str, needed: datetime.datetime) -> bool:
    """Whether ``key``'s rows hold the tags of ``digest`` until ``needed`` or later."""
    try:
        note = shared_cache.cache().get(NOTE_PREFIX + key)
    except Exception:
        shared_cache.outage.failed()
        return False
    return (
        isinstance(note, tuple)
        and len(note) == 2
        and note[0] == digest
        and isinstance(note[1], float)
        and note[1] >= needed.timestamp()
    )


def _note(key: str, digest: str, expires: datetime.datetime, now: datetime.datetime) -> None:
    timeout = max(1, int((expires - now).total_seconds()))
    try:
        shared_cache.cache().set(NOTE_PREFIX + key, (digest, expires.timestamp()), timeout)
    except Exception:
        shared_cache.outage.failed()  # the next miss writes again: no harm


def drop_notes(url_keys: Sequence[str]) -> None:
    """Forget the notes of ``url_keys`` before their rows go: a note left behind would
    make the next miss skip a write, and leave a cached page out of the index. Raises
    when the shared cache does not answer (then the rows must stay)."""
    if url_keys and shared_cache.is_shared():
        shared_cache.cache().delete_many([NOTE_PREFIX + key for key in url_keys])


def _variant_allowed(page: str, key: str, now: datetime.datetime, db: str) -> bool:
    """Whether the URL ``key`` (with a query string) of the path ``page`` may be
    indexed: it is already, or the path has fewer than ``ROAN_TAG_INDEX_MAX_VARIANTS``
    live URLs (the bare path among them). (Two
    new variants rendered at once may both pass: the bound is approximate by one or
    two, not unbounded.)"""
    from roan.models import TaggedURL

    limit = roan_settings.TAG_INDEX_MAX_VARIANTS
    live = TaggedURL.objects.using(db).filter(page_key=page, expires_at__gt=now)
    keys = set(live.order_by().values_list("url_key", flat=True).distinct()[: limit + 1])
    return key in keys or len(keys) < limit


def _upsert(rows: list[Any], db: str) -> None:
    from django.db import connections

    from roan.models import TaggedURL

    features = connections[db].features
    options: dict[str, Any] = {
        "update_conflicts": True,
        "update_fields": ["expires_at", "page_key"],
    }
    # MariaDB/MySQL take no conflict target (ON DUPLICATE KEY UPDATE uses every key).
    if features.supports_update_conflicts_with_target:
        options["unique_fields"] = ["tag", "url_key"]
    TaggedURL.objects.using(db).bulk_create(rows, **options)


def prune(*, batch: int = 5000, dry_run: bool = False) -> int:
    """Delete expired index rows, ``batch`` at a time (each its own statement)."""
    from roan.models import OverflowedTag, TaggedURL

    expired = TaggedURL.objects.filter(expires_at__lte=timezone.now())
    if dry_run:
        return expired.count()
    ended = OverflowedTag.objects.filter(until__lte=timezone.now())
    ended._raw_delete(ended.db)
    deleted = 0
    while True:
        ids = list(expired.order_by("id").values_list("id", flat=True)[:batch])
        if not ids:
            return deleted
        chunk = TaggedURL.objects.filter(id__in=ids)
        deleted += chunk._raw_delete(chunk.db)


def over_the_bound(limit: int, batch: int) -> list[tuple[str, str, str]]:
    """``(url_key, host, path)`` of up to ``batch`` URLs rendered longest ago whose rows
    take the index over ``limit`` live rows (none when it is within). A URL's rows were
    written in one statement, with one lifetime, so they go together."""
    from roan.models import TaggedURL

    live = TaggedURL.objects.filter(expires_at__gt=timezone.now())
    over = live.count() - limit
    if over <= 0:
        return []
    found: dict[str, tuple[str, str]] = {}
    for key, host, path in live.order_by("expires_at", "url_key").values_list(
        "url_key", "host", "path"
    )[:over]:
        found.setdefault(key, (host, path))
        if len(found) >= batch:
            break
    return [(key, host, path) for key, (host, path) in found.items()]


def forget(url_keys: Sequence[str]) -> int:
    """Delete every index row of ``url_keys`` (their notes first, see :func:`drop_notes`)."""
    from roan.models import TaggedURL

    drop_notes(url_keys)
    rows = TaggedURL.objects.filter(url_key__in=list(url_keys))
    return rows._raw_delete(rows.db)


def tags_over_the_bound(limit: int) -> list[tuple[str, int]]:
    """``(tag, how many of its live URLs are over limit)`` for each tag over ``limit``."""
    from roan.models import TaggedURL

    counts = (
        TaggedURL.objects.filter(expires_at__gt=timezone.now())
        .values("tag")
        .annotate(urls=Count("id"))
        .filter(urls__gt=limit)
        .order_by("tag")
        .values_list("tag", "urls")
    )
    return [(tag, urls - limit) for tag, urls in counts]


def oldest_of(tag: str, count: int) -> list[tuple[int, str, str, str, datetime.datetime]]:
    """``(id, url_key, host, path, expires_at)`` of the ``count`` live rows of ``tag``
    rendered longest ago."""
    from roan.models import TaggedURL

    rows = TaggedURL.objects.filter(tag=tag, expires_at__gt=timezone.now())
    return list(
        rows.order_by("expires_at", "url_key").values_list(
            "id", "url_key", "host", "path", "expires_at"
        )[:count]
    )


def forget_rows(ids: Sequence[int]) -> int:
    from roan.models import TaggedURL

    rows = TaggedURL.objects.filter(id__in=list(ids))
    return rows._raw_delete(rows.db)


def mark_overflowed(tag: str, until: datetime.datetime) -> None:
    """Note that pages carrying ``tag`` may stay cached until ``until`` without rows."""
    from roan.models import OverflowedTag

    mark, created = OverflowedTag.objects.get_or_create(tag=tag, defaults={"until": until})
    if not created and mark.until < until:
        OverflowedTag.objects.filter(pk=mark.pk, until__lt=until).update(until=until)


def overflowed(tags: Sequence[str]) -> list[str]:
    """Those of ``tags`` marked overflowed (see :func:`mark_overflowed`), in order."""
    from roan.models import OverflowedTag

    marked = set(
        OverflowedTag.objects.filter(tag__in=list(tags), until__gt=timezone.now()).values_list(
            "tag", flat=True
        )
    )
    return [tag for tag in tags if tag in marked]


# -- reading -------------------------------------------------------------------------------


def _host_filter(hosts: Sequence[str]) -> Q:
    # A page may have been rendered for "host:port" (the Host header as the browser sent
    # it) while the cache keys it, and the backend names it, without the port.
    query = Q(host__in=list(hosts))
    for host in hosts:
        query |= Q(host__startswith=f"{host}:")
    return query


def is_object_tag(tag: str) -> bool:
    """Whether ``tag`` names one object (``app.model:pk``), not a list or a hand tag."""
    prefix = roan_settings.TAG_PREFIX
    return tag.startswith(prefix) and ":" in tag[len(prefix) :]


def expand(
    tags: Sequence[str], hosts: Sequence[str], limit: int | None
) -> tuple[list[tuple[str, str, str]], bool]:
    """``(tag, host, path)`` of the live index rows for ``tags`` on ``hosts`` (every host
    when empty), one per URL, at most ``limit`` (``None``: all); and whether there were
    more.

    In a fixed order, so that a cut keeps what matters most: the pages of object tags
    (the changed object's own pages) before those of list and hand-written tags, and
    within each, the pages rendered (or rendered again) last first.
    """
    from roan.models import TaggedURL

    now = timezone.now()
    found: dict[tuple[str, str], str] = {}
    objects = [t for t in tags if is_object_tag(t)]
    others = [t for t in tags if not is_object_tag(t)]
    for tags_of_a_kind in (objects, others):
        for start in range(0, len(tags_of_a_kind), LOOKUP_CHUNK):
            group = tags_of_a_kind[start : start + LOOKUP_CHUNK]
            qs = TaggedURL.objects.filter(tag__in=group, expires_at__gt=now)
            if hosts:
                qs = qs.filter(_host_filter(hosts))
            qs = qs.order_by("-expires_at", "host", "path")
            if limit is not None:
                # A URL has at most one row per tag, so this many rows hold more than
                # ``limit`` URLs whenever the index has that many.
                qs = qs[: (limit + 1 - len(found)) * len(group)]
            for tag, host, path in qs.values_list("tag", "host", "path"):
                found.setdefault((host, path), tag)
            if limit is not None and len(found) > limit:
                rows = [(tag, host, path) for (host, path), tag in found.items()]
                return rows[:limit], True
    return [(tag, host, path) for (host, path), tag in found.items()], False


def object_tags_of(model: type[models.Model]) -> Iterator[str]:
    """The live object tags of ``model`` the index knows, each once, in order."""
    from roan.models import TaggedURL

    return (
        TaggedURL.objects.filter(
            tag__startswith=f"{model_tag(model)}:", expires_at__gt=timezone.now()
        )
        .order_by("tag")
        .values_list("tag", flat=True)
        .distinct()
        .iterator()
    )


# -- purging -------------------------------------------------------------------------------


# -- size ------------------------------------------------------------------------------------

#: Where the index's last counted size is kept (``ROAN_CACHE``), for the dashboard.
SIZE_KEY = "roan:tag-index:size:1"
#: Seconds a counted size is shown before it is counted again.
SIZE_TTL = 300


def size(*, fresh: bool = False) -> dict[str, int]:
    """``{"rows": live rows, "urls": live URLs}`` of the index, counted at most every
    ``SIZE_TTL`` seconds (two counts that read the whole index: too slow for every view of
    the dashboard at a million rows); ``fresh`` counts now (``roan_prune`` does, after its
    work)."""
    from roan.models import TaggedURL

    store = shared_cache.cache()
    if not fresh and not shared_cache.outage.down():
        try:
            kept = store.get(SIZE_KEY)
        except Exception:
            shared_cache.outage.failed()
            kept = None
        if isinstance(kept, dict):
            return kept
    live = TaggedURL.objects.filter(expires_at__gt=timezone.now())
    counted = {
        "rows": live.count(),
        "urls": live.order_by().values("url_key").distinct().count(),
    }
    try:
        store.set(SIZE_KEY, counted, SIZE_TTL)
    except Exception:
        shared_cache.outage.failed()
    return counted
