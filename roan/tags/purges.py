"""Tag purges for every backend: by tag where the cache can, else by the URLs the tag
index holds for the tag (see :mod:`roan.tags.index`).

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
from roan.backends.base import ALL, PREFIX, TAG, URL, BaseBackend, PurgeRequest
from roan.conf import roan_settings
from roan.context import capturing, hold_dispatch, is_active
from roan.outbox import after_response, expansion, pipeline
from roan.purges import Cause, Purge
from roan.retrying import retried
from roan.tags.index import (
    drop_notes,
    expand,
    forget,
    forget_rows,
    mark_overflowed,
    oldest_of,
    over_the_bound,
    overflowed,
    page_host,
    purged_host,
    tags_over_the_bound,
)
from roan.vocabulary import Trigger

logger = logging.getLogger(__name__)


def submit_tags(
    tags: Sequence[str],
    origin: Cause,
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
    written = _write(purges, db)
    urls_only = [alias for alias in aliases if not _purges_by_tag(alias)]
    captured = capturing.get() is not None
    if not urls_only or captured or not transaction.get_connection(db).in_atomic_block:
        return written
    sent = {(p.backend, p.request.target, p.request.host) for p in purges}

    def look() -> None:
        again = [
            purge
            for purge in tag_purges(tags, origin, urls_only)
            if (purge.request.kind == URL or purge.expands)
            and (purge.backend, purge.request.target, purge.request.host) not in sent
        ]
        if again:
            _write(again, db)

    def look_again() -> None:
        # Under concurrent editors a look-up (or its write) may lose a lock race: tried
        # again then, rather than dropped (a write that made it before is sent twice).
        read = router.db_for_read(TaggedURL)
        try:
            retried(look, using=(db, read), what="looking at the tag index after commit")
        except Exception:
            logger.exception("roan: looking at the tag index after commit failed")

    # After the response, like the pages past the inline bound: what it finds was
    # rendered in the change's window and is purged a few milliseconds later (a wider
    # look, not a narrower one), and the editor does not wait for a second read.
    transaction.on_commit(lambda: after_response.later(look_again), using=db, robust=True)
    return written


def _write(purges: Sequence[Purge], db: str) -> int:
    """Write the purges of one look at the index: those sent inside the request, those
    sent after it, and the expansion rows. Uncapped: bounded already
    (``ROAN_MAX_INLINE_TAG_URLS``, ``ROAN_MAX_URLS_PER_EVENT`` per backend), and every
    one must be written, since the expansion rows leave out the pages sent inside."""
    written = pipeline.submit([p for p in purges if not p.deferred], using=db, capped=False)
    written += submit_deferred([p for p in purges if p.deferred and not p.expands], using=db)
    return written + _submit_expansions(purges, using=db)


def submit_deferred(purges: Sequence[Purge], *, using: str) -> int:
    """Write ``purges`` (a tag's pages past ``ROAN_MAX_INLINE_TAG_URLS``) with the change,
    every one of them, and send them outside the editor's request: from the worker with
    ``ROAN_DISPATCH = "task"``; else once the response is out (``request_finished``),
    or at once when no request is running (a shell, a command). Rows a process never
    sends (it stops first) stay pending for ``roan_dispatch``."""
    return _write_deferred(purges, using)


def _write_deferred(
    purges: Sequence[Purge], using: str, inline: dict[str, set[tuple[str, str]]] | None = None
) -> int:
    """:func:`submit_deferred`; ``inline``: the pages (by backend) the change purges
    inside the request, which expansion rows this process sends leave out."""
    if not purges:
        return 0
    if roan_settings.DISPATCH == "task" or capturing.get() is not None:
        return pipeline.submit(purges, using=using, capped=False)
    with hold_dispatch() as held:
        written = pipeline.submit(purges, using=using, capped=False)
    if inline:
        expansion.purged_inline(held, inline)
    if held:
        transaction.on_commit(lambda: _after_response(held, using), using=using, robust=True)
    return written


def _submit_expansions(purges: Sequence[Purge], *, using: str) -> int:
    """Write the expansion rows among ``purges`` like :func:`submit_deferred`, and tell
    their sender (this process, after the response) which pages the same change purged
    inside the request: those are not purged twice. (Another process that expands the
    rows, a worker or ``roan_dispatch``, purges every page: wider, never narrower.)"""
    expansions = [p for p in purges if p.expands]
    if not expansions:
        return 0
    covered: dict[str, set[tuple[str, str]]] = {}
    for purge in purges:
        if purge.request.kind == URL and not purge.deferred:
            covered.setdefault(purge.backend, set()).add((purge.request.host, purge.request.target))
    return _write_deferred(expansions, using, covered)


def _after_response(ids: list[int], using: str) -> None:
    after_response.later(lambda: pipeline.dispatch(ids, using=using), sends=True)


def _purges_by_tag(alias: str) -> bool:
    try:
        return TAG in backend_registry.get_backend(alias).capabilities
    except ImproperlyConfigured:
        return True  # recorded skipped with the error the first time; nothing to expand


def tag_purges(tags: Sequence[str], origin: Cause, aliases: Iterable[str]) -> list[Purge]:
    """The purges of ``tags`` on each backend of ``aliases``: the tags themselves where
    the backend purges by tag, else a URL purge per page the index holds for them.

    The first ``ROAN_MAX_INLINE_TAG_URLS`` pages (the changed object's own pages first,
    see :func:`expand`) are purged inside the editor's request, the others after the
    response (:attr:`Purge.deferred`, see :func:`submit_tags`).

    Never narrower than the index. A backend that purges URL by URL only (nginx) gets the
    inline pages and, when there are more, one row per tag whose sender reads the tag's
    pages from the index after the response and purges the others
    (:attr:`Purge.expands`): the editor's transaction writes at most
    ``ROAN_MAX_INLINE_TAG_URLS`` rows and one per tag, however many pages carry a tag.
    A backend that can purge wider (a CDN's prefix or everything) gets every page up to
    ``ROAN_MAX_URLS_PER_EVENT``, the first ones inside the request; past that, one purge
    wider: a prefix purge of ``/`` on each of its hosts, else a purge of everything. The
    rule column says which was done and why.
    """
    tags = list(dict.fromkeys(tags))
    if not tags:
        return []
    limit = max(0, roan_settings.MAX_URLS_PER_EVENT)
    inline = roan_settings.MAX_INLINE_TAG_URLS
    purges: list[Purge] = []
    marked: list[str] | None = None  # the overflowed ones of ``tags``, read when needed
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
        wide = wider_capable(backend)
        # A backend that can only purge URL by URL (nginx) gets the first pages in the
        # request and the others from one row per tag, expanded after the response; one
        # that can purge wider gets every page up to the cap, then a wide purge.
        rows, more = expand(tags, backend.hosts, limit if wide else inline)
        expanding = more and not wide
        for n, (tag, host, path) in enumerate(rows):
            named = dataclasses.replace(origin, rule_name=f"tag {tag}"[:200])
            request = PurgeRequest(URL, path, page_host(host, backend.hosts))
            # The first pages (the changed object's own first) inside the request, the
            # others once the response is out: a save costs the editor a bounded time.
            purges.append(Purge(alias, request, named, deferred=n >= inline))
        if expanding:
            purges.extend(_expansions(tags, origin, alias, inline))
        elif more:
            why = f"over ROAN_MAX_URLS_PER_EVENT ({limit}) URLs for tag(s) {', '.join(tags)}"
            purges.extend(_wider(origin, alias, backend, why))
        elif wider_capable(backend):
            if marked is None:
                marked = overflowed(tags)
            if marked:
                bound = roan_settings.TAG_INDEX_MAX_URLS_PER_TAG
                why = (
                    f"tag(s) {', '.join(marked)} had more than ROAN_TAG_INDEX_MAX_URLS_PER_TAG "
                    f"({bound}) URLs: their oldest pages are not in the index"
                )
                purges.extend(_wider(origin, alias, backend, why))
    return purges


def wider_capable(backend: BaseBackend) -> bool:
    """Whether ``backend`` can purge more than a URL in one request (a prefix, all)."""
    return PREFIX in backend.capabilities or ALL in backend.capabilities


def _wider(origin: Cause, alias: str, backend: BaseBackend, why: str) -> list[Purge]:
    """One wide purge per host of ``backend``: a prefix purge of ``/``, else everything."""
    kind, what = (PREFIX, "the whole site") if PREFIX in backend.capabilities else (ALL, "all")
    named = dataclasses.replace(origin, rule_name=f"{what}: {why}"[:200])
    # A prefix purge names one host; a purge of everything takes no host.
    hosts = [page_host(h, backend.hosts) for h in backend.hosts] if kind == PREFIX else []
    target = "/" if kind == PREFIX else ""
    return [Purge(alias, PurgeRequest(kind, target, host), named) for host in hosts or [""]]


def _expansions(tags: Sequence[str], origin: Cause, alias: str, inline: int) -> list[Purge]:
    """One row per tag for a backend that purges URLs only: its sender, after the
    response, purges every page the index then holds for the tag, but those the request
    purged (see :mod:`roan.outbox.expansion`)."""
    why = f"more than ROAN_MAX_INLINE_TAG_URLS ({inline}) pages"
    return [
        Purge(
            alias,
            PurgeRequest(TAG, tag),
            dataclasses.replace(
                origin, rule_name=f"tag {tag}: every page in the tag index, {why}"[:200]
            ),
            deferred=True,
            expands=True,
        )
        for tag in tags
    ]


def evict_over_bound(*, batch: int = 5000, dry_run: bool = False) -> int:
    """Keep the index within ``ROAN_TAG_INDEX_MAX_ROWS`` (``roan_prune``): the URLs
    rendered longest ago beyond it are purged on every backend that reads the index,
    then forgotten, ``batch`` URLs a transaction. Returns how many URLs were (or, with
    ``dry_run``, would first be) evicted.

    Purged first: a page forgotten while still cached would be left out of its tags'
    purges (a tag purge may be wider than needed, never narrower).
    """
    limit = roan_settings.TAG_INDEX_MAX_ROWS
    if limit is None:
        return 0
    from roan.models import PurgeAttempt, TaggedURL

    aliases = [
        alias for alias, backend in backend_registry.get_backends().items()
        if TAG not in backend.capabilities
    ]  # fmt: skip
    origin = Cause(
        trigger=Trigger.COMMAND,
        rule_name="roan_prune: evicted from the tag index (over ROAN_TAG_INDEX_MAX_ROWS)",
    )
    db = router.db_for_write(TaggedURL)
    evicted = 0
    while True:
        urls = over_the_bound(limit, batch)
        if dry_run or not urls:
            return evicted + len(urls)
        purges = _url_purges(aliases, [(host, path) for _key, host, path in urls], origin)
        try:
            with transaction.atomic(using=db):
                pipeline.submit(purges, using=router.db_for_write(PurgeAttempt), capped=False)
                forget([key for key, _host, _path in urls])
        except Exception:
            # ROAN_CACHE did not answer (the notes must go first): nothing forgotten.
            logger.exception("roan: evicting from the tag index failed; the rows are kept")
            return evicted
        evicted += len(urls)


def _url_purges(
    aliases: Sequence[str], urls: Sequence[tuple[str, str]], origin: Cause
) -> list[Purge]:
    """A URL purge of each ``(host, path)`` on each backend of ``aliases`` that purges
    its host."""
    purges = []
    for alias in aliases:
        backend = backend_registry.get_backend(alias)
        for host, path in urls:
            if backend.hosts and purged_host(host, [backend]) is None:
                continue  # another site's page: this cache never had it
            request = PurgeRequest(URL, path, page_host(host, backend.hosts))
            purges.append(Purge(alias, request, origin))
    return purges


def evict_tag_overflow(*, batch: int = 5000, dry_run: bool = False) -> int:
    """Keep each tag within ``ROAN_TAG_INDEX_MAX_URLS_PER_TAG`` live URLs (``roan_prune``):
    the rows of its pages rendered longest ago beyond it are forgotten, ``batch`` a
    transaction. Returns how many rows were (with ``dry_run``: would be) forgotten.

    Never narrower: in the same transaction, the backends that purge URLs only (nginx)
    get a purge of each of those pages, and the tag is marked overflowed until the last
    of them expires, so that its purges on the backends that can purge wider (a prefix,
    everything) are wide meanwhile (:func:`tag_purges`). Backends that purge by tag do
    not read the index.
    """
    limit = roan_settings.TAG_INDEX_MAX_URLS_PER_TAG
    if limit is None:
        return 0
    over = tags_over_the_bound(limit)
    if dry_run:
        return sum(excess for _tag, excess in over)
    from roan.models import PurgeAttempt, TaggedURL

    aliases = [
        alias for alias, backend in backend_registry.get_backends().items()
        if TAG not in backend.capabilities and not wider_capable(backend)
    ]  # fmt: skip
    origin = Cause(
        trigger=Trigger.COMMAND,
        rule_name="roan_prune: evicted from the tag index (over ROAN_TAG_INDEX_MAX_URLS_PER_TAG)",
    )
    db = router.db_for_write(TaggedURL)
    evicted = 0
    for tag, excess in over:
        while excess > 0:
            rows = oldest_of(tag, min(batch, excess))
            if not rows:
                break
            # Before the rows go (and raising if it cannot): a note left behind would make
            # the next miss of such a page skip its write.
            try:
                drop_notes(list({key for _id, key, _host, _path, _expires in rows}))
            except Exception:
                logger.exception("roan: ROAN_CACHE did not answer; the tag index rows are kept")
                return evicted
            urls = list(dict.fromkeys((host, path) for _id, _key, host, path, _exp in rows))
            with transaction.atomic(using=db):
                pipeline.submit(
                    _url_purges(aliases, urls, origin),
                    using=router.db_for_write(PurgeAttempt),
                    capped=False,
                )
                mark_overflowed(tag, max(expires for *_rest, expires in rows))
                forget_rows([row[0] for row in rows])
            excess -= len(rows)
            evicted += len(rows)
    return evicted
