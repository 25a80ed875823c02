"""Purges scheduled by content: a rule's ``schedule_fields`` name datetime fields of its
model (``publish_at``, ``expires_at``); when an object is saved with one of them in the
future, the rule's URLs for that object are written as pending attempts due at that
moment, and the sender sends them then (``roan_dispatch``, or the deferred task with
``ROAN_DISPATCH = "task"``) with no save at that time.

A save replaces what the object's earlier saves scheduled: their pending attempts (found
by the purges the rule renders for the object, before and after the save) are marked
``skipped``, and the new values are scheduled. A scheduled attempt that some save could
not find (its URL rendered from values no longer known) is sent anyway: a duplicate purge
is harmless, a lost one is not.

Bounded: at most ``MAX_SCHEDULE_FIELDS`` fields per rule, the rule's rendering bound per
field, and nothing further ahead than ``ROAN_SCHEDULE_HORIZON_DAYS`` (a save writes one
``skipped`` attempt for such a date instead, so the log says it was not scheduled).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from roan import tasks
from roan.backends.base import PurgeRequest
from roan.conf import roan_settings
from roan.context import is_active, is_capturing, suppress_purges
from roan.managers import dedup_key
from roan.outbox import pipeline
from roan.rules import rendering
from roan.rules.index import CompiledRule
from roan.vocabulary import Status, Trigger

logger = logging.getLogger(__name__)

#: What each rule rendered for an object (as :mod:`roan.receivers` keeps it).
Rendered = Sequence[tuple[CompiledRule, list[PurgeRequest]]]

#: The error of a scheduled attempt that a later save of its object replaced.
RESCHEDULED = "rescheduled: a later save of the object replaced this scheduled purge"

# The dedup keys of one SELECT (far below every database's parameter limit).
_KEYS_PER_QUERY = 500


def schedule_purges(
    instance: models.Model, before: Rendered, after: Rendered, *, using: str, created: bool
) -> int:
    """Schedule what the rules with ``schedule_fields`` render for ``instance`` after
    its save (``after``), replacing what its earlier saves scheduled (none when it was
    ``created``); return how many rows were written. Called by the ``post_save``
    receiver, in the saving transaction."""
    if not is_active() or is_capturing():
        return 0
    rules = {rule.pk: rule for rule, _ in after if rule.schedule_fields and rule.pk is not None}
    if not rules or instance.pk is None:
        return 0
    from roan.models import PurgeAttempt

    db = using
    now = timezone.now()
    rows: list[dict[str, Any]] = []
    keys: dict[int, set[str]] = {pk: set() for pk in rules}
    # What earlier saves may have scheduled: the purges of what it rendered then and now.
    for rule, requests in [] if created else [*before, *after]:
        if rule.pk in rules:
            for row in _rows(instance, rule, requests, due=None):
                keys[rule.pk].add(_key_of(row))
    for rule, requests in after:
        if rule.pk in rules:
            rows += _scheduled_rows(instance, rule, requests, now)
    pending = [row for row in rows if row["status"] == Status.PENDING]
    final = [row for row in rows if row["status"] != Status.PENDING]
    # One transaction (the save's, or one of its own after an autocommit save): never the
    # old times cancelled without the new ones written, and one commit instead of two.
    with transaction.atomic(using=db, savepoint=False):
        if not created:
            _cancel_earlier(instance, keys, now, db)
        ids = PurgeAttempt.objects.write(pending, using=db)
        if final:
            PurgeAttempt.objects.write(final, using=db)
    if ids and roan_settings.DISPATCH == "task":
        due = [(pk, row["next_attempt_at"]) for pk, row in zip(ids, pending, strict=True)]
        transaction.on_commit(lambda: _enqueue(due), using=db, robust=True)
    return len(rows)


def _rows(
    instance: models.Model,
    rule: CompiledRule,
    requests: list[PurgeRequest],
    *,
    due: datetime.datetime | None,
) -> list[dict[str, Any]]:
    """The pending attempt rows of ``requests`` (one per backend node), due at ``due``;
    requests that did not render or that a backend refuses are left out (the save's own
    attempts record them)."""
    usable = [r for r in requests if not getattr(r, "problem", "")]
    purges = rendering.purges_for(instance, rule, usable, trigger=Trigger.SCHEDULED)
    rows = []
    for purge in purges:
        for row in pipeline.rows_for(purge, ""):
            if row["status"] == Status.PENDING:
                rows.append({**row, "next_attempt_at": due})
    return rows


def _scheduled_rows(
    instance: models.Model, rule: CompiledRule, requests: list[PurgeRequest], now: datetime.datetime
) -> list[dict[str, Any]]:
    horizon = now + datetime.timedelta(days=roan_settings.SCHEDULE_HORIZON_DAYS)
    rows: list[dict[str, Any]] = []
    seen: set[datetime.datetime] = set()
    for name in rule.schedule_fields:
        when = _moment(getattr(instance, name, None))
        if when is None or when <= now or when in seen:
            continue  # none, or past: this save's own purge is the one
        seen.add(when)
        if when > horizon:
            rows += _beyond_horizon(instance, rule, requests, name, when)
            continue
        rows += _rows(instance, rule, requests, due=when)
    return rows


def _beyond_horizon(
    instance: models.Model,
    rule: CompiledRule,
    requests: list[PurgeRequest],
    name: str,
    when: datetime.datetime,
) -> list[dict[str, Any]]:
    """One ``skipped`` row (the first purge) telling that ``when`` is too far ahead."""
    rows = _rows(instance, rule, requests, due=None)[:1]
    reason = (
        f"{name} ({when.isoformat(timespec='minutes')}) is more than "
        f"ROAN_SCHEDULE_HORIZON_DAYS ({roan_settings.SCHEDULE_HORIZON_DAYS}) days ahead: "
        f"not scheduled; a save within that horizon schedules it"
    )
    return [
        {**row, "status": Status.SKIPPED, "error": reason[:500], "finished_at": timezone.now()}
        for row in rows
    ]


def _moment(value: object) -> datetime.datetime | None:
    if not isinstance(value, datetime.datetime):
        return None
    if timezone.is_naive(value):
        # USE_TZ = False: naive values are local time, as Django stores them.
        value = timezone.make_aware(value)
    return value


def _key_of(row: dict[str, Any]) -> str:
    return dedup_key(row["backend"], row["node"], row["host"], row["kind"], row["target"])


def _cancel_earlier(
    instance: models.Model, keys: dict[int, set[str]], now: datetime.datetime, db: str
) -> None:
    """Mark ``skipped`` the pending scheduled attempts of ``instance`` for these rules
    and purges that are not yet due and that no sender holds.

    The rows are found by their dedup keys (an index serves it) with a plain read, then
    updated by primary key: the editor's transaction locks only its own object's rows,
    never the scheduled rows of other objects that share a URL (a list page).
    """
    from django.contrib.contenttypes.models import ContentType

    from roan.models import PurgeAttempt

    content_type = ContentType.objects.db_manager(db).get_for_model(instance)
    manager = PurgeAttempt.objects.db_manager(db)
    found: list[int] = []
    for rule_pk, rule_keys in keys.items():
        ordered = sorted(rule_keys)
        for start in range(0, len(ordered), _KEYS_PER_QUERY):
            found += manager.filter(
                dedup_key__in=ordered[start : start + _KEYS_PER_QUERY],
                status=Status.PENDING,
                trigger=Trigger.SCHEDULED,
                content_type_id=content_type.pk,
                object_pk=str(instance.pk),
                rule_id=rule_pk,
                next_attempt_at__gt=now,
                claimed_until__isnull=True,
            ).values_list("pk", flat=True)
    if found:
        manager.filter(pk__in=found, status=Status.PENDING, claimed_until__isnull=True).update(
            status=Status.SKIPPED, error=RESCHEDULED, finished_at=now, updated_at=now
        )


def _enqueue(due: list[tuple[int, datetime.datetime]]) -> None:
    """Enqueue a deferred send per due time (after commit). Never raises: the rows keep
    their due time, and ``roan_dispatch`` sends them then."""
    by_time: dict[datetime.datetime, list[int]] = {}
    for pk, when in due:
        by_time.setdefault(when, []).append(pk)
    try:
        # The task's own row is no content: saving it must not purge cache tags.
        with suppress_purges():
            for when, ids in sorted(by_time.items()):
                if not tasks.enqueue_send_at(ids, when):
                    logger.info(
                        "roan: task backend %r cannot defer; %d scheduled purge(s) wait for "
                        "roan_dispatch",
                        roan_settings.TASK_BACKEND,
                        len(due),
                    )
                    return
    except Exception:
        logger.exception("roan: could not enqueue %d scheduled purge(s)", len(due))
