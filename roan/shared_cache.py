"""What this process knows about the health of the cache named by ``ROAN_CACHE``.

The rule stamp (:mod:`roan.rules.index`), the rate-limit buckets and the pause list
(:mod:`roan.outbox.limits`) live there, and each is read while a save runs or just after it.
A cache that hangs would cost its whole timeout at each of those reads, on every save;
one that refuses connections would be asked again at each. So when one read fails, the
others keep away from it until ``ROAN_RULES_TTL`` seconds have passed, and fall back
(to the database, to sending unlimited): an outage costs one timeout per TTL.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import setting_changed
from django.dispatch import receiver

from roan.conf import roan_settings


class Outage:
    """When ``ROAN_CACHE`` last failed in this process (``None``: not known to)."""

    def __init__(self) -> None:
        self.since: float | None = None

    def down(self) -> bool:
        """Whether the cache failed less than ``ROAN_RULES_TTL`` seconds ago."""
        since = self.since
        if since is None:
            return False
        if time.monotonic() - since < roan_settings.RULES_TTL:
            return True
        self.since = None  # time to try it again
        return False

    def failed(self) -> None:
        self.since = time.monotonic()


outage = Outage()


@receiver(setting_changed, dispatch_uid="roan.shared_cache.setting_changed")
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {"ROAN_CACHE", "CACHES"}:
        outage.since = None  # another cache now


# Used when ROAN_CACHE keeps nothing (DummyCache): limits and pauses then hold per process.
_fallback_cache = LocMemCache("roan-limits", {})


def cache() -> BaseCache:
    """The cache named by ``ROAN_CACHE``; a process-local one when it keeps nothing."""
    try:
        found = caches[roan_settings.CACHE]
    except InvalidCacheBackendError:
        return _fallback_cache
    return _fallback_cache if isinstance(found, DummyCache) else found


def is_shared() -> bool:
    """Whether the buckets and the paused list are seen by every process."""
    return not isinstance(cache(), LocMemCache)


# Caches whose add and incr are atomic across processes (Django's own and django-redis).
ATOMIC_CACHE_MODULES = (
    "django.core.cache.backends.redis",
    "django.core.cache.backends.memcached",
    "django_redis.",
)


def is_atomic() -> bool:
    """Whether concurrent senders in different processes update a bucket safely."""
    module = type(cache()).__module__
    return is_shared() and module.startswith(ATOMIC_CACHE_MODULES)


#: Where the purge dashboard keeps its counts of closed hours (roan.admin.rollup).
DASHBOARD_KEY = "roan:dashboard:hours:1"


def forget_dashboard() -> None:
    """Drop the dashboard's kept hours: attempts of the last week were deleted."""
    try:
        cache().delete(DASHBOARD_KEY)
    except Exception:  # a cache that is down keeps nothing worth dropping for long
        outage.failed()
