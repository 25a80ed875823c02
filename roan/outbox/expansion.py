"""A tag's pages, purged one by one after the response: the rows that stand for them.

A backend that purges URLs only (nginx) learns a tag's pages from the tag index. When a
change's tags reach more pages than ``ROAN_MAX_INLINE_TAG_URLS``, the editor's
transaction does not write a row per page (a list tag on a busy site can carry tens of
thousands): it writes a row for each of the first pages (the changed object's own
first), sent inside the request, and one row per tag and node, kind ``tag`` on that
backend (see :func:`roan.backends.base.expanded_by_roan`), sent after the response. The
sender that claims such a row reads the tag's pages from the index then, writes a
pending URL attempt for each page the request did not purge already (the log shows
every page, as for a small tag), records the tag's row ``ok`` and sends the URL
attempts. Reading the index after the response also finds the pages rendered from the
old content and indexed while the change committed.

What a process that dies leaves: before the URL rows are written, the tag's row stays
claimed and is expanded again after its lease; after, those rows are pending and the
tag's row is expanded again too (each page then purged twice: wider, never narrower).
A row expanded by another process than the one that wrote it (a worker, or
``roan_dispatch``) purges the pages sent inside the request again, a "not cached" each.
A failed read of the index is retried like any failed purge.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from roan import backends as backend_registry
from roan.backends.base import (
    FAILED,
    MAX_TARGET_LENGTH,
    OK,
    SKIPPED,
    URL,
    BaseBackend,
    PurgeRequest,
    PurgeResult,
    expanded_by_roan,
)
from roan.tags.index import expand, page_host

if TYPE_CHECKING:
    from roan.models import PurgeAttempt

logger = logging.getLogger(__name__)


def is_expansion(attempt: PurgeAttempt) -> bool:
    """Whether ``attempt`` stands for a tag's pages (see above)."""
    if attempt.kind == URL:
        return False
    try:
        backend = backend_registry.get_backend(attempt.backend)
    except ImproperlyConfigured:
        return False  # sent as any row: it fails with the configuration's error
    return expanded_by_roan(backend, attempt.kind)


def split(attempts: Iterable[PurgeAttempt]) -> tuple[list[PurgeAttempt], list[PurgeAttempt]]:
    """``attempts`` as (those sent to a cache, those that stand for a tag's pages)."""
    sent: list[PurgeAttempt] = []
    expanded: list[PurgeAttempt] = []
    for attempt in attempts:
        (expanded if is_expansion(attempt) else sent).append(attempt)
    return sent, expanded


#: Expansion row id -> the pages (host, path) by backend that the change which wrote the
#: row purged inside its request: this process expands the row after the response, and
#: leaves those out (their own rows, written with the change, purge them and are
#: retried like any). Bounded: the oldest are forgotten first (then purged twice).
_inline: collections.OrderedDict[int, dict[str, set[tuple[str, str]]]] = collections.OrderedDict()
_INLINE_KEPT = 1000


def purged_inline(ids: Iterable[int], pages: dict[str, set[tuple[str, str]]]) -> None:
    """Note that the change which wrote the expansion rows ``ids`` purged ``pages``
    (by backend) inside its request (see ``roan.tags.purges``)."""
    if not pages:
        return
    for pk in ids:
        _inline[pk] = pages
    while len(_inline) > _INLINE_KEPT:
        _inline.popitem(last=False)


def page_rows(
    attempts: Iterable[PurgeAttempt], *, using: str
) -> tuple[list[int], dict[int, PurgeResult]]:
    """Write a pending URL attempt for each page the index holds for each tag row of
    ``attempts`` (a page once per backend and node); return the ids written and each
    tag row's result."""
    from roan.models import PurgeAttempt

    attempts = list(attempts)
    results: dict[int, PurgeResult] = {}
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str, str]] = set()
    # What each page's row copies of its tag's row, read in one query: a claimed row
    # holds only what sending needs.
    try:
        origins = {
            row["id"]: row
            for row in PurgeAttempt.objects.using(using)
            .filter(pk__in=[a.pk for a in attempts])
            .values("id", *_ORIGIN)
        }
    except Exception:  # each row then reads its own columns
        logger.exception("roan: cannot read the tag rows being expanded")
        origins = {}
    for attempt in attempts:
        started = time.monotonic()
        try:
            backend = backend_registry.get_backend(attempt.backend)
            pages, _more = expand([attempt.target], backend.hosts, None)
        except Exception as exc:
            logger.exception("roan: cannot read the pages of tag %r", attempt.target)
            results[attempt.pk] = PurgeResult(
                status=FAILED, error=f"reading the tag index failed: {type(exc).__name__}"
            )
            continue
        done = _inline.pop(attempt.pk, {}).get(attempt.backend, set())
        for _tag, stored, path in pages:
            host = page_host(stored, backend.hosts)
            key = (attempt.backend, attempt.node, host, path)
            if (host, path) in done:
                continue
            if key not in seen:
                seen.add(key)
                rows.append(_row(attempt, origins.get(attempt.pk, {}), backend, host, path))
        results[attempt.pk] = PurgeResult(status=OK, latency_ms=(time.monotonic() - started) * 1000)
    written = [attempt for attempt in attempts if results[attempt.pk].status == OK]
    try:
        ids = PurgeAttempt.objects.write(rows, using=using)
    except Exception as exc:
        logger.exception("roan: cannot write the pages of %d tag(s)", len(written))
        for attempt in written:
            results[attempt.pk] = PurgeResult(
                status=FAILED, error=f"writing the tag's pages failed: {type(exc).__name__}"
            )
        return [], results
    pending = [pk for pk, row in zip(ids, rows, strict=True) if row["status"] == "pending"]
    return pending, results


#: The columns a page's row copies from its tag's row.
_ORIGIN = ("trigger", "rule_id", "content_type_id", "object_pk", "object_repr", "user_id")


def _row(
    attempt: PurgeAttempt, origin: dict[str, Any], backend: BaseBackend, host: str, path: str
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "backend": attempt.backend,
        "node": attempt.node,
        "host": host,
        "kind": URL,
        "target": path[:MAX_TARGET_LENGTH],
        # The tag's row read just now; else (deleted meanwhile) from the claimed row.
        **{name: origin[name] if origin else getattr(attempt, name) for name in _ORIGIN},
        # "tag ..." as for any page of a tag, so that the log and the Host trap's check
        # (roan.outbox.key_misses) read it the same way.
        "rule_name": f"tag {attempt.target}, one of its pages (row #{attempt.pk})"[:200],
        "status": "pending",
    }
    reason = backend.refuse(PurgeRequest(URL, path, host))
    if not reason and len(path) > MAX_TARGET_LENGTH:
        reason = f"the target is longer than {MAX_TARGET_LENGTH} characters"
    if reason:
        row.update(status=SKIPPED, error=reason[:500], finished_at=timezone.now())
    return row
