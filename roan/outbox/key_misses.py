"""Purges that answer "not cached" for pages known to be cached: the Host trap, seen.

A URL purge expanded from the tag index (its ``rule_name`` is ``"tag <tag>"``) names a
page the tag middleware saw rendered, and cached, less than ``ROAN_TAG_INDEX_TTL`` ago.
Such a purge may find nothing now and then (the page expired or was purged already),
but when most of a backend's recent ones do, its purges do not reach the cached copies:
the cache key probably differs from what the purge sends (``HOSTS``, the purge
location, the scheme in the key). "not cached" counts as a success everywhere else, so
this is said here: a log warning from the sender (at most once per
``WARN_INTERVAL`` seconds per backend and process) and a line on the dashboard.

The query reads at most ``SAMPLE`` rows of one backend from the last ``WINDOW``, through
the ``(backend, node, -created_at)`` index.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.utils import timezone

from roan.backends.base import NOT_CACHED, OK, URL

if TYPE_CHECKING:
    from roan.models import PurgeAttempt

logger = logging.getLogger(__name__)

#: How far back, and how many of a backend's newest indexed-URL purges, are looked at.
WINDOW = datetime.timedelta(hours=24)
SAMPLE = 50
#: Fewer answered purges than this say nothing either way.
MIN_SAMPLE = 10
#: Seconds between two looks (and so warnings) for one backend in one process.
WARN_INTERVAL = 600.0
#: What the dashboard and the log say.
MESSAGE = (
    "purges of pages known to be cached answer 404: the cache key probably differs: "
    "check HOSTS and the purge location"
)
#: The rule_name prefix of purges expanded from the tag index (roan.tags.purges).
INDEXED = "tag "


@dataclasses.dataclass(frozen=True, slots=True)
class Misses:
    backend: str
    not_cached: int
    answered: int

    @property
    def keys_differ(self) -> bool:
        """Whether most of the purges of indexed pages found nothing."""
        return self.answered >= MIN_SAMPLE and self.not_cached * 2 > self.answered


def misses(
    backend: str, *, using: str | None = None, now: datetime.datetime | None = None
) -> Misses:
    """How the newest purges of indexed pages on ``backend`` were answered."""
    from roan.models import PurgeAttempt

    since = (now or timezone.now()) - WINDOW
    qs = PurgeAttempt.objects.all() if using is None else PurgeAttempt.objects.using(using)
    statuses = list(
        qs.filter(
            backend=backend,
            created_at__gte=since,
            kind=URL,
            status__in=(OK, NOT_CACHED),
            rule_name__startswith=INDEXED,
        )
        .order_by("-created_at")
        .values_list("status", flat=True)[:SAMPLE]
    )
    return Misses(backend, statuses.count(NOT_CACHED), len(statuses))


_lock = threading.Lock()
_looked: dict[str, float] = {}


def after_record(attempts: Iterable[PurgeAttempt], *, using: str) -> None:
    """Called by the sender once outcomes are recorded: warn about a backend whose
    purges of indexed pages mostly found nothing. Never raises."""
    aliases = {
        a.backend
        for a in attempts
        if a.status == NOT_CACHED and a.kind == URL and a.rule_name.startswith(INDEXED)
    }
    for alias in sorted(aliases):
        now = time.monotonic()
        with _lock:
            last = _looked.get(alias)
            if last is not None and now - last < WARN_INTERVAL:
                continue
            _looked[alias] = now
        try:
            found = misses(alias, using=using)
        except Exception:
            logger.exception("roan: cannot count the purges of %r that found nothing", alias)
            continue
        if found.keys_differ:
            logger.warning(
                "roan: backend %r: %d of its last %d purges of pages known to be cached "
                "answered 'not cached': %s.",
                alias,
                found.not_cached,
                found.answered,
                MESSAGE,
            )


def reset() -> None:
    """Forget when each backend was looked at (tests)."""
    with _lock:
        _looked.clear()
