"""Collect purges per transaction, write them as pending attempts, send them after commit.

The flow, for every route in (signals, admin, commands, the public API):

1. :func:`submit` takes purge requests for one event. It drops what this transaction
   already asked for, caps the event at ``ROAN_MAX_URLS_PER_EVENT``, expands each
   request to the backend's nodes, and writes the attempt rows in the same transaction
   (pending, or skipped with the reason). The audit log is the outbox. What one event
   writes is bounded: at most the cap of purges, the skipped ones its templates could
   not render, and one skipped row per backend that counts the purges over the cap.
2. ``transaction.on_commit`` hands the pending ids to :func:`dispatch`: sent right away
   (``ROAN_DISPATCH = "inline"``) or by a task (``"task"``). Nothing is sent before commit,
   and a rollback leaves neither rows nor purges.
3. :func:`roan.outbox.sender.send` claims the rows, fans out to every node in parallel with
   strict timeouts, and records each outcome on its row. Failures never raise into the
   caller.

What comes before: :mod:`roan.rules.rendering` turns a rule and an object into purges, and
:mod:`roan.context` holds what the running code asked for (``suppress_purges()``, the
acting user, ``hold_dispatch()``).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router, transaction
from django.dispatch import receiver
from django.utils import timezone

from roan import backends as backend_registry
from roan import pauses
from roan.backends.base import (
    MAX_TARGET_LENGTH,
    SKIPPED,
    BaseBackend,
)
from roan.conf import roan_settings
from roan.context import capturing, held_ids, is_active, suppress_purges, written_ids
from roan.outbox import limits, render_guard
from roan.outbox.sender import SEND_BATCH, outcomes_after_response, send_claimed, send_ids
from roan.purges import Purge
from roan.signals import backend_resumed

if TYPE_CHECKING:
    from roan.models import PurgeAttempt

logger = logging.getLogger(__name__)


# -- collecting ----------------------------------------------------------------------------


class _TransactionState:
    """What one database transaction has asked to purge so far."""

    __slots__ = ("changed", "claimed", "claiming", "flushed", "hooks", "ids", "seen", "using")

    def __init__(self, using: str, hooks: object) -> None:
        self.using = using
        self.hooks = hooks
        self.seen: set[tuple[str, str, str, str]] = set()
        self.ids: list[int] = []
        #: Attempts written claimed by this process, sent by it after the commit.
        self.claimed: list[PurgeAttempt] = []
        #: How many more writes may claim their rows in the transaction (see submit).
        self.claiming = _CLAIMING_WRITES
        #: Cache tags this transaction purges, for the render guard.
        self.changed: set[str] = set()
        self.flushed = False

    def flush(self) -> None:
        # One hook is registered per write so that a rolled-back savepoint cannot take
        # them all with it; the first that runs sends everything, the others do nothing.
        if self.flushed:
            return
        self.flushed = True
        if self.changed:
            # Committed, not yet purged: renders still running from now on are not cached.
            render_guard.mark_changed(self.changed)
        if self.claimed:
            _send_own(self.claimed, self.using)
        if self.ids:
            # Inside a request, the outcomes of a change's purges are written once the
            # response is out (roan.outbox.sender.outcomes_after_response).
            with outcomes_after_response():
                dispatch(self.ids, using=self.using)


def _state(using: str) -> _TransactionState:
    connection = connections[using]
    state: _TransactionState | None = getattr(connection, "_roan_state", None)
    # Django replaces its list of commit hooks at every commit, rollback and savepoint
    # rollback, so a new list means a new transaction (or a partly rolled-back one, where
    # forgetting what was seen costs at most a twin row, sent once with it).
    if not connection.in_atomic_block:
        # Autocommit: each write is its own transaction, and Django keeps the same list
        # of commit hooks across them, so nothing here may outlive the write.
        return _TransactionState(using, connection.run_on_commit)
    if state is None or state.flushed or state.hooks is not connection.run_on_commit:
        state = _TransactionState(using, connection.run_on_commit)
        connection._roan_state = state  # type: ignore[attr-defined]
    return state


def note_changed(tags: Iterable[str], *, using: str) -> None:
    """Tell the render guard, when the transaction commits and before its purges are
    sent, that what ``tags`` name changed (at once outside a transaction)."""
    if not is_active() or capturing.get() is not None:
        return
    if not connections[using].in_atomic_block:
        render_guard.mark_changed(tags)
        return
    state = _state(using)
    state.changed.update(tags)
    transaction.on_commit(state.flush, using=using, robust=True)


def submit(purges: Iterable[Purge], *, using: str | None = None, capped: bool = True) -> int:
    """Record ``purges`` (one event's worth) and send them after commit.

    The first ``ROAN_MAX_URLS_PER_EVENT`` new purges are written; the rest are not, and
    each backend that had some gets one ``skipped`` row (its first dropped target) that
    says how many. Returns how many attempt rows were written. ``capped=False`` writes
    them all: a tag's expansion past the limit, which must not be dropped
    (:func:`roan.tags.purges.submit_tags` sends those after the response).
    """
    if not is_active():
        return 0
    purges = list(purges)
    captured = capturing.get()
    if captured is not None:
        captured.extend(purges)
        return 0
    from roan.models import PurgeAttempt

    db = using or router.db_for_write(PurgeAttempt)
    state = _state(db)
    rows: list[dict[str, Any]] = []
    limit = roan_settings.MAX_URLS_PER_EVENT
    kept = 0
    # Purges over the cap, per backend: the first one, and how many there were.
    dropped: dict[str, tuple[Purge, int]] = {}
    for purge in purges:
        key = (purge.backend, purge.request.kind, purge.request.target, purge.request.host)
        if key in state.seen:
            continue
        reason = getattr(purge.request, "problem", "")
        if not reason:
            if capped and kept >= limit:
                # One row per backend tells the whole overflow: a row per dropped purge
                # would make one save write as many rows as it was kept from sending.
                first, count = dropped.get(purge.backend, (purge, 0))
                dropped[purge.backend] = (first, count + 1)
                continue
            kept += 1
        state.seen.add(key)
        rows.extend(rows_for(purge, reason))
    for first, count in dropped.values():
        reason = (
            f"over ROAN_MAX_URLS_PER_EVENT ({limit}) for one event: this and {count - 1} "
            f"more purge(s) on this backend were not sent"
        )
        rows.extend(rows_for(first, reason))
    if not rows:
        return 0
    pending = [row for row in rows if row["status"] == "pending"]
    final = [row for row in rows if row["status"] != "pending"]
    held = held_ids.get()
    paused = _claims_as_written(db, state) if pending and held is None else None
    if paused is not None:
        ids, final_ids = _write_claimed(pending, final, paused, state, db)
    else:
        ids = PurgeAttempt.objects.write(pending, using=db)
        final_ids = PurgeAttempt.objects.write(final, using=db) if final else []
        if ids and held is not None:
            held.extend(ids)
        elif ids:
            state.ids.extend(ids)
            transaction.on_commit(state.flush, using=db, robust=True)
    collected = written_ids.get()
    if collected is not None:
        collected.extend(ids + final_ids)
    return len(rows)


# Writes of one transaction whose rows are written claimed for this process: the send
# after the commit then needs no claim. The rows of a bigger transaction are claimed after
# it, a batch at a time, with their twins from other transactions (see dispatch()).
_CLAIMING_WRITES = 8


def _claims_as_written(db: str, state: _TransactionState) -> frozenset[str] | None:
    """Whether the rows written now are sent by this process, which writes them claimed;
    if so, the paused backends (whose rows are written unclaimed).

    Inline dispatch, and either no transaction (an autocommit save has committed already:
    this process is the sender now) or the first few writes of one that no savepoint can
    take them out of without the whole transaction (a rolled-back savepoint would leave
    their purges sent and no row). A save never reads the pause switches from the
    database: it leaves out the backends it knows to be paused (by option, or by the list
    in ``ROAN_CACHE``).
    """
    if roan_settings.DISPATCH != "inline":
        return None
    connection = connections[db]
    if not connection.in_atomic_block:
        return pauses.paused_backends()
    if state.claiming <= 0 or any(sid is not None for sid in connection.savepoint_ids):
        return None
    known = pauses.paused_if_known()
    # Not cached: the rows of a backend paused by the admin's switch are claimed too, and
    # released by the send after the commit, which reads the switches (_send_own).
    return known if known is not None else pauses.paused_backends_by_option()


def _write_claimed(
    pending: list[dict[str, Any]],
    final: list[dict[str, Any]],
    paused: frozenset[str],
    state: _TransactionState,
    db: str,
) -> tuple[list[int], list[int]]:
    """Write the rows, the pending ones claimed for this process (one INSERT, no claim of
    their own after the commit), and send them: at once after an autocommit save, else
    when the transaction commits. Return the ids written.

    A process that dies before it records the outcomes leaves the rows claimed; once the
    lease ends, ``roan_dispatch`` or a retry sends them. Rows of a ``paused`` backend are
    written unclaimed, for ``resume()``.
    """
    from roan.models import PurgeAttempt

    autocommit = not connections[db].in_atomic_block
    try:
        ids, claimed = PurgeAttempt.objects.write_claimed(
            pending + final, using=db, exclude_backends=paused
        )
    except Exception:
        if not autocommit:
            raise  # as for any write: the rows are the outbox
        # Nothing was written (one transaction): write them plainly, and dispatch them.
        logger.exception("roan: cannot claim %d new attempt(s); dispatching them", len(pending))
        ids = PurgeAttempt.objects.write(pending, using=db)
        final_ids = PurgeAttempt.objects.write(final, using=db) if final else []
        dispatch(ids, using=db)
        return ids, final_ids
    pending_ids, final_ids = ids[: len(pending)], ids[len(pending) :]
    mine = {attempt.pk for attempt in claimed}
    # A paused backend's rows.
    rest = [pk for pk in pending_ids if pk not in mine]
    if autocommit:
        _send_own(claimed, db)
    else:
        state.claiming -= 1
        state.claimed += claimed
        state.ids += rest
        transaction.on_commit(state.flush, using=db, robust=True)
    return pending_ids, final_ids


def _send_own(claimed: list[PurgeAttempt], db: str) -> None:
    """Send attempts this process claimed as it wrote them, a batch at a time. Never
    raises. A lease near its end (a transaction that lasted) is renewed first; the rows
    of a backend found paused are released, pending again for ``resume()``."""
    from roan.models import PurgeAttempt

    margin = datetime.timedelta(seconds=float(roan_settings.RETRY["LEASE"]) / 2)
    try:
        for start in range(0, len(claimed), SEND_BATCH):
            batch = claimed[start : start + SEND_BATCH]
            paused = pauses.paused_backends()
            stopped = [attempt for attempt in batch if attempt.backend in paused]
            if stopped:
                now = timezone.now()
                limits.release_held([(attempt, now) for attempt in stopped], using=db)
                batch = [attempt for attempt in batch if attempt.backend not in paused]
            leases = [a.claimed_until for a in batch if a.claimed_until is not None]
            if leases and timezone.now() + margin > min(leases):
                batch = PurgeAttempt.objects.renew(batch, using=db)
            if batch:
                with outcomes_after_response():  # as in flush()
                    send_claimed(batch, using=db, paused=paused)
    except Exception:
        # As dispatch(): the rows stay claimed until the lease ends, then roan_dispatch
        # or a retry sends them. The editor's save goes on.
        logger.exception("roan: sending %d attempt(s) failed; they stay queued", len(claimed))


def rows_for(purge: Purge, reason: str) -> list[dict[str, Any]]:
    request, origin = purge.request, purge.cause
    base: dict[str, Any] = {
        "backend": purge.backend,
        "host": request.host,
        "kind": request.kind,
        "target": request.target[:MAX_TARGET_LENGTH],
        "trigger": origin.trigger,
        "rule_id": origin.rule_id,
        "rule_name": origin.rule_name[:200],
        "content_type_id": origin.content_type_id,
        "object_pk": origin.object_pk[:255],
        "object_repr": origin.object_repr[:200],
        "user_id": origin.user_id,
    }
    try:
        backend: BaseBackend | None = backend_registry.get_backend(purge.backend)
    except ImproperlyConfigured as exc:
        backend = None
        reason = reason or str(exc)
    if backend is not None and not reason and not purge.expands:
        # (A tag the sender expands into URL purges is not for the backend to refuse.)
        reason = backend.refuse(request)
    if not reason and len(request.target) > MAX_TARGET_LENGTH:
        # The column keeps 2,048 characters; a shortened target is another URL, so it
        # is recorded, never sent (also for a backend whose refuse() does not check).
        reason = f"the target is longer than {MAX_TARGET_LENGTH} characters"
    now = timezone.now()
    if reason or backend is None:
        return [{**base, "node": "", "status": SKIPPED, "error": reason[:500], "finished_at": now}]
    return [{**base, "node": node[:200], "status": "pending"} for node in backend.nodes]


# -- dispatching ---------------------------------------------------------------------------


def dispatch(ids: Sequence[int], *, using: str | None = None) -> None:
    """Hand committed pending attempts to the configured sender. Never raises."""
    try:
        if roan_settings.DISPATCH == "task":
            from roan.tasks import enqueue_send

            # The task's own row is no content: saving it must not purge cache tags.
            with suppress_purges():
                enqueue_send(list(ids))
        else:
            send_ids(ids, using=using)
    except Exception:
        # The rows stay pending (or claimed until the lease ends): roan_dispatch, a
        # retry task or the next dispatch picks them up. The editor's save goes on.
        logger.exception("roan: dispatching %d attempt(s) failed; they stay queued", len(ids))


@receiver(backend_resumed, dispatch_uid="roan.outbox.pipeline.backend_resumed")
def _on_backend_resumed(*, ids: Sequence[int], using: str | None = None, **kwargs: Any) -> None:
    dispatch(ids, using=using)
