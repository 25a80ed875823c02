"""Which backends are paused, and how many attempts wait for them.

A backend is paused by its ``PAUSED = True`` option (a deploy) or by a
:class:`roan.models.BackendState` row (the admin's switch, seen by every process). Its
attempts stay pending and unclaimed; the sender skips them until :func:`resume` sends
what queued (each target once, however many rows wait for it). The list of paused
aliases is kept in ``ROAN_CACHE`` (deleted whenever a switch flips), so the sender reads
no table per batch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from django.db import connections, models, router, transaction
from django.utils import timezone

from roan.conf import roan_settings
from roan.retrying import retried
from roan.shared_cache import cache as _cache
from roan.shared_cache import is_shared, outage
from roan.signals import backend_resumed
from roan.vocabulary import Status

logger = logging.getLogger(__name__)


PAUSED_KEY = "roan:paused:v1"


#: How long a shared cache keeps the paused list (toggles delete it at once).
PAUSED_SHARED_SECONDS = 60.0


def paused_backends() -> frozenset[str]:
    """Aliases whose attempts must not be sent now (by option or by the admin toggle)."""
    return paused_backends_by_option() | _paused_by_toggle()


def paused_if_known() -> frozenset[str] | None:
    """:func:`paused_backends` if the paused list is in ``ROAN_CACHE``, else ``None``:
    for a save, which never reads the switches from the database."""
    cached = _cached_toggles()
    if cached is None:
        return None
    return frozenset(cached) | paused_backends_by_option()


def paused_backends_by_option() -> frozenset[str]:
    return frozenset(alias for alias in roan_settings.BACKENDS if paused_by_option(alias))


def _cached_toggles() -> list[str] | None:
    if outage.down():
        return None
    try:
        cached: list[str] | None = _cache().get(PAUSED_KEY)
    except Exception:
        outage.failed()
        return None
    return cached


def _paused_by_toggle() -> set[str]:
    cached = _cached_toggles()
    if cached is not None:
        return set(cached)
    cache = _cache()
    from roan.models import BackendState

    db = router.db_for_read(BackendState)
    # Inside a transaction, a savepoint keeps a failed read (the table not migrated yet)
    # from breaking the caller's transaction on PostgreSQL.
    guard = (
        transaction.atomic(using=db)
        if connections[db].in_atomic_block
        else contextlib.nullcontext()
    )

    def read() -> list[str]:
        with guard:
            rows = BackendState.objects.using(db).filter(paused=True)
            return list(rows.values_list("alias", flat=True))

    try:
        # Outside a transaction, a read that lost a lock race (SQLite's "database is
        # locked") is tried again: an empty list would send a paused backend's purges.
        aliases = retried(read, using=db, what="reading the pause switches")
    except Exception:
        # Before migrate (the table is missing) nothing can have been paused by hand.
        logger.debug("roan: cannot read the pause switches", exc_info=True)
        return set()
    # A shared cache forgets the list when a switch flips; a process-local one cannot
    # hear that, so it keeps the list no longer than rule edits take to arrive.
    timeout = PAUSED_SHARED_SECONDS if is_shared() else roan_settings.RULES_TTL
    if outage.down():
        return set(aliases)
    try:
        cache.set(PAUSED_KEY, aliases, timeout=timeout)
    except Exception:
        outage.failed()
        logger.debug("roan: cannot cache the paused list", exc_info=True)
    return set(aliases)


def forget_paused() -> None:
    try:
        _cache().delete(PAUSED_KEY)
    except Exception:
        logger.warning("roan: could not clear the paused list in cache %r", roan_settings.CACHE)


def paused_by_option(alias: str) -> bool:
    config = roan_settings.BACKENDS.get(alias)
    return isinstance(config, Mapping) and config.get("PAUSED") is True


def queued(alias: str, *, using: str | None = None) -> int:
    """Attempts of ``alias`` waiting to be sent (pending, or failed and to be retried)."""
    from roan.models import PurgeAttempt

    return (
        PurgeAttempt.objects.using(using or router.db_for_read(PurgeAttempt))
        .filter(models.Q(status=Status.PENDING) | models.Q(status=Status.FAILED), backend=alias)
        .count()
    )


def pause(alias: str, *, user: Any = None, using: str | None = None) -> None:
    """Stop sending for ``alias``: its attempts queue as pending until :func:`resume`."""
    from roan.models import BackendState

    db = using or router.db_for_write(BackendState)
    user_id = getattr(user, "pk", None)
    BackendState.objects.using(db).update_or_create(
        alias=alias,
        defaults={"paused": True, "paused_at": timezone.now(), "paused_by_id": user_id},
    )
    transaction.on_commit(forget_paused, using=db)


def resume(alias: str, *, using: str | None = None) -> int:
    """Send for ``alias`` again, and send (or enqueue) what queued while it was paused.

    Returns how many queued attempts were handed to the sender (after commit): the
    pipeline hears of them by :data:`roan.signals.backend_resumed`.
    """
    from roan.models import BackendState, PurgeAttempt

    db = using or router.db_for_write(BackendState)
    BackendState.objects.using(db).update_or_create(
        alias=alias, defaults={"paused": False, "paused_at": None, "paused_by_id": None}
    )
    ids = list(
        PurgeAttempt.objects.db_manager(db)
        .due()
        .filter(backend=alias)
        .order_by("id")
        .values_list("id", flat=True)
    )

    def drain() -> None:
        # The list first, or this very send would still find the backend paused.
        forget_paused()
        for start in range(0, len(ids), 1000):
            batch = ids[start : start + 1000]
            backend_resumed.send(sender=BackendState, alias=alias, ids=batch, using=db)

    transaction.on_commit(drain, using=db)
    return len(ids)
