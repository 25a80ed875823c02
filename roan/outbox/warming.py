"""Warm what was purged: fetch each purged page through the cache, so the next reader
gets a hit instead of waiting for the origin.

A backend's optional ``WARM`` option (off by default)::

    "WARM": {
        "BASE_URL": "https://www.example.com",  # required; its host must be in HOSTS
        "RATE": 2,                              # fetches a second at most, per backend
        "TIMEOUT": 10,                          # seconds for a whole fetch
    }
    "WARM": True                                # the same, with VERIFY's BASE_URL

After a purge of a URL is confirmed (recorded ``ok`` or ``not_cached``; a CDN's
invalidation still in progress is not), the sender marks its attempts
``warming="pending"`` and hands them to this process's warming thread, which fetches
``BASE_URL + target`` with ``GET``, reads the whole page (the cache stores what it
fetched for a reader that stayed), and records ``warmed`` or ``failed``. One fetch per
(backend, host, page): a backend with several nodes behind one ``BASE_URL`` has them
filled as its load balancer sends the fetch.

Never in the editor's request: the sender may run there (inline dispatch runs on
commit), so it only queues; the thread fetches, paced by ``RATE`` (a token bucket
shared through ``ROAN_CACHE``, like ``RATE_LIMIT``: fetches wait for their turn, up to
a minute, rather than being dropped). ``roan_dispatch`` waits for the queue before it
exits. Inner caches first: the jobs of one send are queued by their backend's layer
(``AFTER``), and an outer backend's purges are only sent once its inner caches have
purged, so an outer cache is warmed from a fresh inner one.

No SSRF: the fetch goes to ``BASE_URL``, fixed in settings, whose host must be one of
the backend's ``HOSTS``; a purge for another host is not warmed; editors only choose the
path, and paths with ``.``/``..`` segments are never fetched. Redirects are not
followed, proxies and ``.netrc`` from the environment are not used.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import requests
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from roan.backends.base import NOT_CACHED, OK, URL, PurgeResult
from roan.backends.options import RateLimit, WarmOptions, parse_warm
from roan.conf import roan_settings
from roan.outbox import layers, limits
from roan.outbox.background import BackgroundQueue
from roan.retrying import retried
from roan.rules.templating import has_dot_segment
from roan.vocabulary import Warming

if TYPE_CHECKING:
    from roan.models import PurgeAttempt

logger = logging.getLogger(__name__)

#: Pages waiting for this process's warming thread at most; more are recorded failed.
QUEUE_LIMIT = 1000
#: Bytes of a page read at most: past that the fetch stops (and is recorded failed).
MAX_BODY = 8 << 20
#: Seconds a fetch waits for its turn under RATE before it is given up.
MAX_WAIT = 60.0


def options_for(alias: str) -> WarmOptions | None:
    """``alias``'s WARM options now (``None`` when off or invalid: the check says why)."""
    config = roan_settings.BACKENDS.get(alias)
    if not isinstance(config, Mapping):
        return None
    try:
        return parse_warm(alias, config)
    except ImproperlyConfigured:
        return None


def _host_name(host: str) -> str:
    """``host`` without its port, lowercase (``[::1]:8000`` -> ``[::1]``)."""
    host = host.lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def why_not(options: WarmOptions, target: str, host: str) -> str:
    """Why ``target`` on ``host`` is not fetched (``""``: it may be)."""
    if host and _host_name(host) != options.host:
        return f"the page is on host {host!r}; WARM fetches from {options.host!r}"
    if not target.startswith("/") or has_dot_segment(target):
        return "not a path roan fetches"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return "the path has spaces or control characters"
    return ""


def fetch(options: WarmOptions, target: str) -> str:
    """``GET BASE_URL + target``, the whole page read; ``""`` when the cache answered
    with a page, else why not. Never raises."""
    deadline = time.monotonic() + options.timeout
    session = requests.Session()
    session.trust_env = False  # no proxy, no .netrc from the environment
    try:
        with session.get(
            options.base_url + target,
            headers={"User-Agent": "roan-warm"},
            timeout=(options.timeout / 2, options.timeout / 2),
            allow_redirects=False,
            stream=True,
        ) as response:
            read = 0
            for chunk in response.iter_content(65536):
                read += len(chunk)
                if read > MAX_BODY:
                    return f"the page is longer than {MAX_BODY} bytes"
                if time.monotonic() > deadline:
                    return f"no whole page within {options.timeout:g} s"
            if response.status_code >= 400:
                return f"HTTP {response.status_code}"
            return ""
    except requests.RequestException as exc:
        # The exception's text holds the URL: only its kind goes in the log.
        return f"the fetch failed ({type(exc).__name__})"
    finally:
        session.close()


# -- the sender's side ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    pks: tuple[int, ...]
    backend: str
    target: str
    using: str


def after_send(
    attempts: Iterable[PurgeAttempt], results: Mapping[int, PurgeResult], *, using: str
) -> list[Job]:
    """Queue a warming fetch for each page whose purge was just recorded ``ok`` or
    ``not_cached`` on a backend with WARM; returns the jobs queued. Never raises, never
    fetches itself."""
    try:
        return _after_send(list(attempts), results, using=using)
    except Exception:
        logger.exception("roan: cannot queue warming fetches")
        return []


def _after_send(
    attempts: list[PurgeAttempt], results: Mapping[int, PurgeResult], *, using: str
) -> list[Job]:
    pages: dict[tuple[str, str, str], list[int]] = collections.defaultdict(list)
    found: dict[str, WarmOptions | None] = {}
    for attempt in attempts:
        if attempt.kind != URL or attempt.status not in (OK, NOT_CACHED):
            continue
        result = results.get(attempt.pk)
        if result is not None and result.in_progress:
            continue  # not confirmed yet: the CDN still serves the old copy
        if attempt.backend not in found:
            found[attempt.backend] = options_for(attempt.backend)
        options = found[attempt.backend]
        if options is None or why_not(options, attempt.target, attempt.host):
            continue
        pages[(attempt.backend, attempt.host, attempt.target)].append(attempt.pk)
    if not pages:
        return []
    order = layers.layers()
    jobs = [Job(tuple(pks), alias, target, using) for (alias, _host, target), pks in pages.items()]
    # Inner caches first (AFTER): a stable sort keeps each backend's pages in order.
    jobs.sort(key=lambda job: order.get(job.backend, 0))
    _mark([pk for job in jobs for pk in job.pks], Warming.PENDING, using=using)
    refused = warmer.put(jobs)
    if refused:
        logger.warning("roan: the warming queue is full; %d page(s) not warmed", len(refused))
        _mark([pk for job in refused for pk in job.pks], Warming.FAILED, using=using)
    return jobs


def _mark(pks: Sequence[int], state: str, *, using: str, only_pending: bool = False) -> int:
    from roan.models import PurgeAttempt

    rows = PurgeAttempt.objects.using(using).filter(pk__in=list(pks))
    if only_pending:
        rows = rows.filter(warming=Warming.PENDING)
    # Outside a transaction (the warming thread, after a send): tried again on a deadlock.
    return retried(lambda: rows.update(warming=state), using=using, what="recording a warming")


def _wait_turn(alias: str, options: WarmOptions) -> bool:
    """Wait until ``alias``'s WARM rate gives a fetch a token; False after ``MAX_WAIT``."""
    bucket = RateLimit(options.rate, max(1.0, options.rate))
    give_up = time.monotonic() + MAX_WAIT
    while True:
        given, _level = limits.take(f"{alias}:warm", bucket, 1)
        if given:
            return True
        if time.monotonic() > give_up:
            return False
        time.sleep(min(1.0, 1.0 / options.rate))


def run_job(job: Job) -> str:
    """Fetch one queued page and record the outcome on its rows; returns it."""
    options = options_for(job.backend)
    if options is None:
        why = "WARM was turned off before the fetch"
    elif not _wait_turn(job.backend, options):
        why = f"over WARM's RATE ({options.rate:g} a second) for a minute"
    else:
        why = fetch(options, job.target)
    state = Warming.FAILED if why else Warming.WARMED
    _mark(job.pks, state, using=job.using, only_pending=True)
    if why:
        logger.warning("roan: %s on %s was not warmed: %s", job.target, job.backend, why)
    return state


#: This process's queue (one thread, started by the first job).
warmer: BackgroundQueue[Job] = BackgroundQueue(
    "roan-warm", run_job, QUEUE_LIMIT, "roan: a warming fetch failed: %r"
)


def expire_warming(*, older_than: float = 600.0, using: str | None = None) -> int:
    """Record ``failed`` on fetches still pending ``older_than`` seconds after their purge
    (their process ended first): a late fetch would warm what readers refilled already."""
    from roan.models import PurgeAttempt

    cutoff = timezone.now() - datetime.timedelta(seconds=older_than)
    rows = PurgeAttempt.objects.db_manager(using).filter(
        warming=Warming.PENDING, finished_at__lt=cutoff
    )
    return rows.update(warming=Warming.FAILED)
