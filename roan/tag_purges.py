"""Tag purges for every backend: by tag where the cache can, else by the URLs the tag
index holds for the tag (see :mod:`roan.tag_index`).

Each expanded row names the tag it came from in its ``rule_name`` ("tag blog.post:42"),
so the purge log says why a URL was purged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence

from django.core.exceptions import ImproperlyConfigured
from django.db import router, transaction

from roan import backends as backend_registry
from roan import pipeline
from roan.backends.base import TAG, URL, PurgeRequest
from roan.conf import roan_settings
from roan.context import Origin, Purge, _capture, is_active
from roan.render import Unrenderable
from roan.retrying import retried
from roan.tag_index import expand

logger = logging.getLogger(__name__)


def _page_host(stored: str, hosts: Sequence[str]) -> str:
    """The host to purge a page rendered for ``stored`` on a backend with ``hosts``."""
    if not hosts:
        return ""  # the backend's own (its only) site
    host = stored if stored in hosts else (stored.rpartition(":")[0] if ":" in stored else stored)
    # The default host is written "" by URL rules too: the same page's purges are then
    # twins, sent once instead of twice (the second one "not cached").
    return "" if host == hosts[0] else host


def submit_tags(
    tags: Sequence[str],
    origin: Origin,
    aliases: Iterable[str],
    *,
    using: str | None = None,
) -> int:
    """Write the purges of ``tags`` (one event) and, inside a transaction, look at the
    index again once it commits.

    A page rendered between the change and the commit still showed the old content, and
    may have been indexed after the first look: the second look purges the URLs that are
    new since then (the others are already on their way), which leaves the same window
    as for any purge sent after commit.
    """
    from roan.models import PurgeAttempt, TaggedURL

    if not is_active():
        return 0
    aliases = list(aliases)
    db = using or router.db_for_write(PurgeAttempt)
    # First, so that the render guard hears of the change before any purge is sent.
    pipeline.note_changed(tags, using=db)
    purges = tag_purges(tags, origin, aliases)
    written = pipeline.submit(purges, using=db)
    urls_only = [alias for alias in aliases if not _purges_by_tag(alias)]
    capturing = _capture.get() is not None
    if not urls_only or capturing or not transaction.get_connection(db).in_atomic_block:
        return written
    sent = {(p.backend, p.request.target, p.request.host) for p in purges}

    def look() -> None:
        again = [
            purge
            for purge in tag_purges(tags, origin, urls_only)
            if purge.request.kind == URL
            and (purge.backend, purge.request.target, purge.request.host) not in sent
        ]
        if again:
            pipeline.submit(again, using=db)

    def look_again() -> None:
        # Under concurrent editors a look-up (or its write) may lose a lock race: tried
        # again then, rather than dropped (a write that made it before is sent twice).
        read = router.db_for_read(TaggedURL)
        try:
            retried(look, using=(db, read), what="looking at the tag index after commit")
        except Exception:
            logger.exception("roan: looking at the tag index after commit failed")

    transaction.on_commit(look_again, using=db, robust=True)
    return written


def _purges_by_tag(alias: str) -> bool:
    try:
        return TAG in backend_registry.get_backend(alias).capabilities
    except ImproperlyConfigured:
        return True  # recorded skipped with the error the first time; nothing to expand


def tag_purges(tags: Sequence[str], origin: Origin, aliases: Iterable[str]) -> list[Purge]:
    """The purges of ``tags`` on each backend of ``aliases``: the tags themselves where
    the backend purges by tag, else a URL purge per page the index holds for them, at
    most ``ROAN_MAX_URLS_PER_EVENT`` per backend (one ``skipped`` row says when more)."""
    tags = list(dict.fromkeys(tags))
    if not tags:
        return []
    limit = max(0, roan_settings.MAX_URLS_PER_EVENT)
    purges: list[Purge] = []
    for alias in aliases:
        try:
            backend = backend_registry.get_backend(alias)
        except ImproperlyConfigured:
            backend = None  # recorded skipped with the error, as for any purge
        if backend is None or TAG in backend.capabilities:
            for tag in tags:
                named = dataclasses.replace(origin, rule_name=f"tag {tag}"[:200])
                purges.append(Purge(alias, PurgeRequest(TAG, tag), named))
            continue
        rows, more = expand(tags, backend.hosts, limit)
        for tag, host, path in rows:
            named = dataclasses.replace(origin, rule_name=f"tag {tag}"[:200])
            request = PurgeRequest(URL, path, _page_host(host, backend.hosts))
            purges.append(Purge(alias, request, named))
        if more:
            problem = (
                f"the tag(s) are on more than ROAN_MAX_URLS_PER_EVENT ({limit}) cached URLs "
                f"for this backend, which cannot purge by tag: {limit} were purged, the "
                "others were not"
            )
            request = Unrenderable(TAG, tags[0], problem=problem)
            purges.append(Purge(alias, request, origin))
    return purges
