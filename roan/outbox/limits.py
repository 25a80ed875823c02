"""Hold purges back: a rate limit per backend.

It acts in the sender (:func:`roan.outbox.sender.send`), never in ``save()``: a save only
writes pending rows, so it costs the editor no query.

**Rate limit.** A backend's ``RATE_LIMIT = {"RATE": 50, "BURST": 100}`` is a token
bucket: one token per attempt (one target on one node), ``RATE`` tokens a second, at most
``BURST`` saved up. The bucket lives in the cache named by ``ROAN_CACHE`` so that every
process sending for the backend (inline senders, task workers, ``roan_dispatch``) draws
from the same one. It is kept as counters of tokens spent per time slot (``BURST / RATE /
SLOTS`` seconds each), written only with ``add`` and ``incr``, which Redis and Memcached
do atomically; the tokens available are worked out from the last ``SLOTS`` counters,
starting from an empty bucket, so a reader can under-count tokens but never over-count
them. Attempts over the limit are not failures and are not counted as tries: they are
released from their claim with ``next_attempt_at`` set to when their tokens come.

Pauses are in :mod:`roan.pauses`; ``pause()``, ``resume()`` and ``paused_backends()`` are
importable from here too, as in earlier releases.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from roan import shared_cache
from roan.backends.options import SLOTS, RateLimit, parse_rate_limit
from roan.conf import roan_settings
from roan.managers import purge_of
from roan.shared_cache import outage

if TYPE_CHECKING:
    from roan.models import PurgeAttempt

logger = logging.getLogger(__name__)


def rate_limit(alias: str) -> RateLimit | None:
    """The backend's ``RATE_LIMIT``; without the option, its class's
    ``default_rate_limit`` (a CDN's published bucket), if it has one. ``RATE_LIMIT =
    None`` turns even that off."""
    config = roan_settings.BACKENDS.get(alias)
    if not isinstance(config, Mapping):
        return None
    value = config["RATE_LIMIT"] if "RATE_LIMIT" in config else _default_rate_limit(config)
    try:
        return parse_rate_limit(alias, value)
    except ImproperlyConfigured:
        return None  # reported by the system check and when the backend is built


def _default_rate_limit(config: Mapping[str, Any]) -> Any:
    try:
        # The class only, never an instance: this runs for every batch sent.
        cls = import_string(str(config.get("BACKEND", "")))
    except Exception:  # an unimportable BACKEND: roan.E002 says so
        return None
    pick = getattr(cls, "default_rate_limit_for", None)
    if callable(pick):
        return pick(config)
    return getattr(cls, "default_rate_limit", None)


# -- the token bucket ---------------------------------------------------------------------


def take(alias: str, limit: RateLimit, wanted: int, now: float | None = None) -> tuple[int, float]:
    """Take up to ``wanted`` tokens from ``alias``'s bucket.

    Returns how many were given and what the bucket holds after that (a fraction of a
    token, or less than nothing when other senders got there first).
    """
    if wanted <= 0:
        return 0, 0.0
    now = time.time() if now is None else now
    width = limit.slot_seconds
    slot = math.floor(now / width)
    keys = [f"roan:rate:{alias}:{s}" for s in range(slot - SLOTS, slot + 1)]
    # Keep a slot's counter while later slots still read it, and a little longer.
    expiry = max(2, math.ceil(width * (SLOTS + 2)))
    cache = shared_cache.cache()
    if outage.down():
        return wanted, 0.0  # as below, without waiting for the cache again
    try:
        spent = cache.get_many(keys)
        # The level at the start of this slot: refill each slot, minus what it spent.
        level = 0.0
        for key in keys[:-1]:
            level = max(0.0, min(limit.burst, level + limit.rate * width) - int(spent.get(key, 0)))
        level = min(limit.burst, level + limit.rate * width)
        current = keys[-1]
        cache.add(current, 0, timeout=expiry)
        after = cache.incr(current, wanted)
        # The epsilon keeps float sums like 10 * 0.3 from losing a whole token.
        given = max(0, min(wanted, math.floor(level - (after - wanted) + 1e-9)))
        if given < wanted:
            # Hand back what this call could not use; another sender that saw the
            # counter high meanwhile was refused too early, which errs on the safe side.
            cache.decr(current, wanted - given)
    except Exception:
        # A cache that is down must not stop purging: the cache's own limit (a 429 with
        # Retry-After) still reaches the retry path.
        outage.failed()
        logger.warning("roan: rate limit cache %r failed; sending unlimited", roan_settings.CACHE)
        return wanted, 0.0
    return given, level - (after - wanted) - given


def next_token_at(limit: RateLimit, position: int, left: float, now: float) -> float:
    """When the ``position``-th (0-based) missing token comes, as a timestamp.

    ``left`` is what the bucket held after the last take. Tokens come at slot starts,
    so the answer is rounded up to one; other senders may still take it first, and then
    the attempt simply waits again.
    """
    width = limit.slot_seconds
    wait = max(0.0, position + 1 - max(left, 0.0)) / limit.rate
    return (math.floor((now + wait) / width) + 1) * width


def hold_back(attempts: Sequence[PurgeAttempt], *, using: str) -> list[PurgeAttempt]:
    """Return the claimed ``attempts`` that may be sent now; release the others.

    An attempt over its backend's rate limit keeps its status and tries; its claim ends
    and ``next_attempt_at`` is set to when its token comes.
    """
    by_backend: dict[str, list[PurgeAttempt]] = defaultdict(list)
    for attempt in attempts:
        by_backend[attempt.backend].append(attempt)
    now = time.time()
    send: list[PurgeAttempt] = []
    held: list[tuple[PurgeAttempt, datetime.datetime]] = []
    for alias, group in by_backend.items():
        limit = rate_limit(alias)
        if limit is None:
            send.extend(group)
            continue
        # Twins (the same purge from several transactions) are sent once: one token.
        purges: dict[tuple[str, ...], list[PurgeAttempt]] = defaultdict(list)
        for attempt in group:
            purges[purge_of(attempt)].append(attempt)
        given, left = take(alias, limit, len(purges), now)
        for position, same in enumerate(purges.values()):
            if position < given:
                send.extend(same)
                continue
            at = next_token_at(limit, position - given, left, now)
            when = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
            held.extend((attempt, when) for attempt in same)
    if held:
        release_held(held, using=using)
    send_ids = {a.pk for a in send}
    return [a for a in attempts if a.pk in send_ids]


def release_held(
    held: list[tuple[PurgeAttempt, datetime.datetime]], *, using: str, also: Sequence[str] = ()
) -> None:
    """End the claim of ``held`` attempts, each due again at its time (``also``: more
    columns set on the objects to write, e.g. the reason in ``error``)."""
    from roan.models import PurgeAttempt

    now = timezone.now()
    for attempt, at in held:
        attempt.claimed_until = None
        attempt.next_attempt_at = at
        attempt.updated_at = now
    fields = ["claimed_until", "next_attempt_at", "updated_at", *also]
    with transaction.atomic(using=using):
        PurgeAttempt.objects.using(using).bulk_update(
            [attempt for attempt, _at in held], fields, batch_size=500
        )


# -- the pause switch ---------------------------------------------------------------------
