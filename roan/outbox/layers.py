"""Layered caches: a backend's ``AFTER`` option names the caches purged before it.

With Django's page cache behind nginx, purging both at once lets a reader refill nginx
from the page cache's old copy in the moment between the two purges, and nginx then keeps
that stale page for its whole lifetime. ``"nginx": {..., "AFTER": ["django"]}`` makes the
sender purge ``django`` first, and nginx only once every ``django`` attempt for the same
(host, kind, target) has answered ``ok`` or ``not_cached``.

How the sender (:func:`roan.outbox.pipeline.send`) applies it:

- The claimed attempts are sent layer by layer, innermost first (layer 0 has no
  ``AFTER``; an outer backend's layer is one more than its deepest inner one's). Due
  inner attempts for the targets of claimed outer ones are claimed too, so a batch that
  happens to hold only the outer rows still purges in order.
- Before a layer goes, each of its attempts is checked against the database: while an
  inner attempt for its target is still ``pending`` or ``failed`` (unsent, held by a
  rate limit, paused, in flight with another sender, or waiting for its retry), the
  outer attempt is not sent. It goes back to the queue with its status and tries
  unchanged, ``next_attempt_at`` set to when the inner one is due again, and the reason
  in its error column ("waiting for django (inner cache) to purge first").
- When an inner attempt ends (``ok``, ``not_cached`` or ``gave_up``), the outer attempts
  waiting for its target are claimed and sent next, in the same call, whatever their
  ``next_attempt_at``: an inner retry that succeeds releases its outer twins at once.

Two cases are decided here rather than left to chance:

- An inner attempt recorded ``skipped`` (roan will never send it: the inner cache cannot
  purge that kind, the host is not in its ``HOSTS``...) does not hold the outer one:
  the inner cache will not change, so waiting would only keep the outer copy stale.
- An inner attempt that ``gave_up`` releases the outer one, which is sent. The outer
  copy is stale in any case; purged, it is refetched from the inner cache, which is fresh
  as soon as its own copy expires or is purged by hand, whereas holding the outer purge
  back would keep the outer copy stale for its whole lifetime. The inner attempt's row
  says it gave up, and the dashboard counts it.

``AFTER`` orders purges that exist; it adds none: a rule that names only the outer
backend purges it at once. It is a sender option (like ``RATE_LIMIT`` and ``PAUSED``),
so backends never see it.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils import timezone

from roan.backends.base import GAVE_UP, NOT_CACHED, OK
from roan.backends.options import after_option, layer_order
from roan.conf import roan_settings
from roan.outbox import limits
from roan.vocabulary import Status

if TYPE_CHECKING:
    from roan.managers import PurgeAttemptQuerySet
    from roan.models import PurgeAttempt

#: How long an outer attempt waits before it looks again when its inner attempt has no
#: time of its own (a paused inner backend): resuming it sends the outer one at once.
RECHECK_SECONDS = 60.0
#: Inner outcomes after which the outer attempt may go (see the module docstring).
_RELEASING = frozenset({OK, NOT_CACHED, GAVE_UP})
_CHUNK = 500

Key = tuple[str, str, str]  # (host, kind, target)


def _after(alias: str) -> tuple[str, ...]:
    config = roan_settings.BACKENDS.get(alias)
    try:
        return after_option(alias, config)
    except ImproperlyConfigured:
        return ()  # reported by the system check and when the backends are built


def layers() -> dict[str, int]:
    """The layer of each configured alias (all 0 when no backend has ``AFTER``)."""
    backends = roan_settings.BACKENDS
    if not any(isinstance(c, Mapping) and c.get("AFTER") for c in backends.values()):
        return dict.fromkeys(backends, 0)
    try:
        return layer_order(backends)
    except ImproperlyConfigured:
        # A bad AFTER stops the backends from being built at all (get_backends), so
        # nothing is sent; this keeps the sender itself from raising meanwhile.
        return dict.fromkeys(backends, 0)


def _outer_of(alias: str) -> list[str]:
    return [outer for outer in roan_settings.BACKENDS if alias in _after(outer)]


def _key(attempt: PurgeAttempt) -> Key:
    return (attempt.host, attempt.kind, attempt.target)


def _rows(aliases: Collection[str], keys: Collection[Key], *, using: str) -> PurgeAttemptQuerySet:
    """Rows of ``aliases`` still to send, for the targets of ``keys`` (a superset: the
    caller matches host and kind)."""
    from roan.models import PurgeAttempt

    return (
        PurgeAttempt.objects.get_queryset()
        .using(using)
        .filter(
            models.Q(status=Status.PENDING) | models.Q(status=Status.FAILED),
            backend__in=list(aliases),
            target__in=list({target for _host, _kind, target in keys}),
        )
    )


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def pull_inner(
    attempts: Sequence[PurgeAttempt], *, using: str, exclude_backends: Collection[str]
) -> list[PurgeAttempt]:
    """Claim the due inner attempts for the targets of the outer ones in ``attempts``
    (and theirs in turn), so that they are sent first in this batch; returns them."""
    from roan.models import PurgeAttempt

    pulled: list[PurgeAttempt] = []
    have = {a.pk for a in attempts}
    wave = list(attempts)
    while wave:
        wanted: dict[str, set[Key]] = defaultdict(set)
        for attempt in wave:
            for inner in _after(attempt.backend):
                if inner not in exclude_backends:
                    wanted[inner].add(_key(attempt))
        ids: list[int] = []
        for inner, keys in wanted.items():
            for chunk in _chunks(sorted(keys)):
                for pk, host, kind, target in (
                    _rows([inner], chunk, using=using)
                    .due()
                    .values_list("pk", "host", "kind", "target")
                ):
                    if (host, kind, target) in keys and pk not in have:
                        ids.append(pk)
        wave = PurgeAttempt.objects.claim(ids, limit=len(ids), using=using) if ids else []
        have.update(a.pk for a in wave)
        pulled += wave
    return pulled


def _blocking(
    attempts: Sequence[PurgeAttempt], *, using: str, paused: Collection[str]
) -> dict[tuple[str, Key], datetime.datetime]:
    """``(inner alias, key)`` for each inner attempt still to send for the targets of
    ``attempts``, with when it is due again (the latest, when it has several nodes)."""
    waiting: dict[str, set[Key]] = defaultdict(set)
    for attempt in attempts:
        for inner in _after(attempt.backend):
            waiting[inner].add(_key(attempt))
    now = timezone.now()
    blocked: dict[tuple[str, Key], datetime.datetime] = {}
    for inner, keys in waiting.items():
        for chunk in _chunks(sorted(keys)):
            rows = _rows([inner], chunk, using=using).values_list(
                "host", "kind", "target", "next_attempt_at", "claimed_until"
            )
            for host, kind, target, next_at, claimed in rows:
                key = (host, kind, target)
                if key not in keys:
                    continue
                if inner in paused:
                    at = now + datetime.timedelta(seconds=RECHECK_SECONDS)
                else:
                    # In flight with another sender: when its lease ends at the latest
                    # (that sender releases this attempt as soon as it has recorded).
                    live = claimed if claimed is not None and claimed > now else None
                    at = max(t for t in (next_at, live, now) if t is not None)
                blocked[(inner, key)] = max(at, blocked.get((inner, key), at))
    return blocked


def _waits(
    attempt: PurgeAttempt, blocked: Mapping[tuple[str, Key], datetime.datetime]
) -> list[tuple[datetime.datetime, str]]:
    key = _key(attempt)
    return [(blocked[(i, key)], i) for i in _after(attempt.backend) if (i, key) in blocked]


def hold_outer(
    attempts: Sequence[PurgeAttempt], *, using: str, paused: Collection[str]
) -> list[PurgeAttempt]:
    """Return the ``attempts`` whose inner caches have all purged their target; put the
    others back in the queue, due when their inner attempt is, with the reason."""
    from roan.backends import get_backend
    from roan.models import PurgeAttempt

    if not any(_after(attempt.backend) for attempt in attempts):
        return list(attempts)
    blocked = _blocking(attempts, using=using, paused=paused)
    now = timezone.now()
    send: list[PurgeAttempt] = []
    held: list[tuple[PurgeAttempt, datetime.datetime]] = []
    for attempt in attempts:
        waits = _waits(attempt, blocked)
        if not waits:
            send.append(attempt)
            continue
        at, inner = max(waits)
        try:
            label = get_backend(inner).label
        except ImproperlyConfigured:
            label = inner
        state = "; it is paused" if inner in paused else ""
        attempt.error = f"waiting for {label} (inner cache) to purge first{state}"[:500]
        # Never due "now" while the inner one is still unsent: a sender that finds them
        # both due claims the inner one with it (pull_inner), so a second is plenty.
        held.append((attempt, max(at, now + datetime.timedelta(seconds=1))))
    if not held:
        return send
    limits.release_held(held, using=using, also=("error",))
    # Another sender may have recorded the inner attempt between the look above and the
    # release: it then found these still claimed by us and left them. Looking once more,
    # after the release, one of the two senders always sees the other's write.
    again = _blocking([a for a, _at in held], using=using, paused=paused)
    free = [attempt.pk for attempt, _at in held if not _waits(attempt, again)]
    if free:
        send += PurgeAttempt.objects.claim(free, limit=len(free), using=using, any_time=True)
    return send


def release_waiting(
    attempts: Sequence[PurgeAttempt], *, using: str, exclude_backends: Collection[str]
) -> list[PurgeAttempt]:
    """Claim the outer attempts waiting for those of ``attempts`` that ended (``ok``,
    ``not_cached``, ``gave_up``), whatever their ``next_attempt_at``; returns them."""
    from roan.models import PurgeAttempt

    ended: dict[str, set[Key]] = defaultdict(set)
    for attempt in attempts:
        if attempt.status in _RELEASING:
            for outer in _outer_of(attempt.backend):
                if outer not in exclude_backends:
                    ended[outer].add(_key(attempt))
    ids: list[int] = []
    now = timezone.now()
    for outer, keys in ended.items():
        for chunk in _chunks(sorted(keys)):
            rows = _rows([outer], chunk, using=using).filter(
                models.Q(claimed_until__isnull=True) | models.Q(claimed_until__lt=now)
            )
            for pk, host, kind, target in rows.values_list("pk", "host", "kind", "target"):
                if (host, kind, target) in keys:
                    ids.append(pk)
    if not ids:
        return []
    return PurgeAttempt.objects.claim(ids, limit=len(ids), using=using, any_time=True)
