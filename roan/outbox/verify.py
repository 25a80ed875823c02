"""Prove a purge worked: fetch the page right after it and read the cache's status.

Backends that serve the pages where they take the purges (nginx, Varnish, an
``HTTPBackend`` whose ``URL`` ends with ``{path}``) and list ``HOSTS`` verify a sample of their
purges by default: ``ROAN_VERIFY_SAMPLE`` (0.1) of them, at most one probe a second per
backend, fetched from the node the purge went to with the page's host in ``Host``. The
draw is one ``random()`` per purge in the sender, except for the first purge a process
sends to such a backend, which is always probed (a new setup proves itself on its first
save); the rate, the probe and the row's verdict are the probe thread's, so a sampled
purge costs a save nothing more. Purges not drawn, or over the rate, stay "not
verified". ``VERIFY: False`` or ``ROAN_VERIFY_SAMPLE = 0`` turns it off.

A backend's ``VERIFY`` option asks for more: every purge (``True``, or a dict)::

    "VERIFY": {
        "BASE_URL": "https://www.example.com",  # optional; its host must be in HOSTS
        "HEADER": "X-Cache-Status",             # the cache status header (None: Age only)
        "HIT": ["HIT", "STALE", "UPDATING"],    # its values that mean "served from cache"
        "RATE": 5,                              # probes a second at most, per backend
        "TIMEOUT": 2,                           # seconds for a whole probe
        "METHOD": "HEAD",                       # or "GET"
        "SAMPLE": 1,                            # the fraction of purges probed
    }

Without ``BASE_URL`` the probe goes to the node the purge went to, as sampled. A tag
purge is verified by probing up to ``TAG_PROBES`` of the URLs the tag index
(:class:`roan.models.TaggedURL`) holds for the tag on the backend's hosts.

After an ``ok`` or ``not_cached`` purge of a URL (kind ``url``), the sender marks the
attempt ``verification="pending"`` and hands it to this process's probe thread; the
thread fetches ``BASE_URL + target`` and records ``verified`` (the cache answered MISS,
or an ``Age`` younger than the purge), ``still_cached`` (HIT, or an older ``Age``: the
purge did not reach the page's cache entry) or ``unverifiable`` (no status header, no
answer, over the rate, another host). The probe never runs in the thread that sent the
purge: inline dispatch runs in the editor's request (``on_commit``), so a probe there
would delay the save's response by up to ``TIMEOUT`` per page.

No SSRF: the probe goes to ``BASE_URL``, fixed in settings, whose host must be one of
the backend's ``HOSTS``; editors only choose the path, and paths with ``.``/``..``
segments are never sent. Probes reuse the purge transport (:mod:`roan.backends._http`):
a deadline for the whole answer, at most 64 KiB of body read, redirects not followed,
no proxies or ``.netrc`` from the environment.

A probe refills the cache (the fetch is a miss), like the first reader would. A reader
may also refill it between the purge and the probe; with an ``Age`` header that case is
told apart (the entry is younger than the purge), without one it reads as a hit, so a
busy page can show ``still_cached`` once by bad luck: look for a pattern, not one row.
"""

from __future__ import annotations

import collections
import contextvars
import dataclasses
import datetime
import logging
import math
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.translation import gettext_lazy
from requests.structures import CaseInsensitiveDict

from roan import backends as backend_registry
from roan.backends._http import Call, HTTPTransport
from roan.backends.base import NOT_CACHED, OK, TAG, URL, BaseBackend, PurgeResult
from roan.backends.options import RateLimit, VerifyOptions, parse_verify, sampled_verify
from roan.conf import roan_settings
from roan.managers import purge_of
from roan.outbox import limits
from roan.outbox.background import BackgroundQueue
from roan.retrying import retried
from roan.rules.templating import has_dot_segment
from roan.tags.index import without_port

if TYPE_CHECKING:
    from roan.models import PurgeAttempt

logger = logging.getLogger(__name__)

PENDING = "pending"
VERIFIED = "verified"
STILL_CACHED = "still_cached"
UNVERIFIABLE = "unverifiable"

#: Shown with every ``still_cached`` attempt: the usual cause, and where to look.
HINT = gettext_lazy(
    "The purge did not reach the page's cache entry: check the cache key (scheme, host, "
    "$request_uri) of the purge location; it must build the same key as the location "
    "that caches the page."
)

#: Attempts waiting for this process's probe thread at most; more are not probed.
QUEUE_LIMIT = 1000

#: Pages of the tag index probed for one tag purge at most.
TAG_PROBES = 3
#: Pages of the tag index read for one tag purge, to draw ``TAG_PROBES`` from.
TAG_CANDIDATES = 50


def options_for(alias: str) -> VerifyOptions | None:
    """``alias``'s VERIFY options now (``None`` when off or invalid: the check says why).

    A backend without the option gets the sampled verification when it can be probed
    (:meth:`~roan.backends.base.BaseBackend.probe_origin`) and lists ``HOSTS``.
    """
    config = roan_settings.BACKENDS.get(alias)
    if not isinstance(config, Mapping):
        return None
    try:
        if config.get("VERIFY") is None:
            return _sampled(alias)
        return parse_verify(alias, config)
    except ImproperlyConfigured:
        return None


def _sampled(alias: str) -> VerifyOptions | None:
    sample = roan_settings.VERIFY_SAMPLE
    if sample <= 0:
        return None
    backend = backend_registry.get_backend(alias)
    node = backend.nodes[0] if backend.nodes else ""
    if not backend.hosts or backend.probe_origin(node) is None:
        return None
    return sampled_verify(sample, backend.status_header)


# -- reading the answer ------------------------------------------------------------------


def _age(value: str | None) -> int | None:
    if value is None or not re.fullmatch(r"[0-9]{1,10}", value.strip()):
        return None
    return int(value.strip())


def classify(
    options: VerifyOptions, headers: Mapping[str, str], since_purge: float
) -> tuple[str, str]:
    """``(verdict, detail)`` for the probe's answer headers, ``since_purge`` seconds after
    the purge was recorded.

    An ``Age`` older than the purge means the purge missed the page, whatever the status
    header says; a hit whose ``Age`` is younger than the purge was refilled since.
    """
    status = headers.get(options.header) if options.header else None
    age = _age(headers.get("Age"))
    seen = "; ".join(
        part
        for part in (
            f"{options.header}: {status[:60]}" if status is not None else "",
            f"Age: {age}" if age is not None else "",
        )
        if part
    )
    # Age is whole seconds; an entry stored after the purge is at most this old.
    fresh_age = math.floor(max(0.0, since_purge))
    if age is not None and age > fresh_age:
        return STILL_CACHED, f"the cache served a copy older than the purge ({seen})"
    if status is not None:
        tokens = {t for t in re.split(r"[\s,]+", status.strip().upper()) if t}
        if tokens & options.hit:
            # A hit is a refill only when its Age proves it is younger than the purge:
            # Age counts whole seconds, so within the purge's second a hit is the old copy.
            if age is not None and age < fresh_age:
                return VERIFIED, f"refilled after the purge ({seen})"
            return STILL_CACHED, f"the cache served its copy ({seen})"
        return VERIFIED, f"fetched fresh ({seen})"
    if age is not None:
        return VERIFIED, f"fetched fresh ({seen})"
    wanted = f"{options.header} or Age" if options.header else "Age"
    return UNVERIFIABLE, f"the answer had no {wanted} header"


# -- probing ---------------------------------------------------------------------------------

#: The probe's answer headers, filled by the transport's interpreter on this thread.
_answer: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "roan_verify_answer", default=None
)


def _keep_headers(status: int, latency_ms: float, headers: Mapping[str, str]) -> PurgeResult:
    answer = _answer.get()
    if answer is not None:
        answer.update({name: str(value) for name, value in headers.items()})
    return PurgeResult(OK, http_status=status, latency_ms=latency_ms)


#: Cache status values that mean "served stale": what a soft purge leaves, once.
STALE = frozenset({"STALE", "UPDATING"})


def _where(
    alias: str, options: VerifyOptions, host: str, node: str
) -> tuple[str, dict[str, str]] | str:
    """The base URL and headers to fetch a page of ``host`` with, or why not."""
    if options.base_url:
        if host and host.lower() != options.host:
            return f"the page is on host {host!r}; VERIFY fetches from {options.host!r}"
        return options.base_url, {}
    try:
        backend = backend_registry.get_backend(alias)
    except ImproperlyConfigured:
        return "the backend is no longer configured"
    origin = backend.probe_origin(node or (backend.nodes[0] if backend.nodes else ""))
    page_host = (host or backend.default_host()).lower()
    if origin is None:
        return "the backend's node does not serve pages; give VERIFY a BASE_URL"
    # Only hosts of HOSTS (settings, never a rule or a model) go in the Host header.
    if not page_host or page_host not in backend.hosts:
        return f"the page's host {page_host!r} is not in the backend's HOSTS"
    return origin, {"Host": page_host}


def probe(
    alias: str,
    options: VerifyOptions,
    target: str,
    host: str,
    since_purge: float,
    *,
    node: str = "",
    soft: bool = False,
) -> tuple[str, str]:
    """Fetch ``target`` from the VERIFY base URL (none: from ``node``, the one the purge
    went to, with the page's host) and classify the answer. Never raises.

    After a ``soft`` purge a stale answer is the purge working (the copy is marked stale
    and served once while the cache refetches), not the purge missing the page."""
    where = _where(alias, options, host, node)
    if isinstance(where, str):
        return UNVERIFIABLE, where
    base_url, headers = where
    if not target.startswith("/") or has_dot_segment(target):
        return UNVERIFIABLE, "not a path roan fetches"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return UNVERIFIABLE, "the path has spaces or control characters"
    half = options.timeout / 2
    # Half the deadline to connect, half for the whole answer: the probe takes at most
    # TIMEOUT (the transport enforces the answer's deadline, not just per recv()).
    owner = BaseBackend(f"{alias} VERIFY", {"TIMEOUT": (half, half)})
    transport = HTTPTransport(owner, interpret=_keep_headers)
    answer: dict[str, str] = {}
    token = _answer.set(answer)
    try:
        call = Call(
            options.method, base_url + target, {**headers, "User-Agent": "roan-verify"}, target
        )
        result = transport.send("verify", call)
    finally:
        _answer.reset(token)
        transport.close()
    if result.status != OK:
        return UNVERIFIABLE, f"the probe failed: {result.error}"[:300]
    answered = CaseInsensitiveDict(answer)
    status = answered.get(options.header) if options.header else None
    if soft and status is not None and set(re.split(r"[\s,]+", status.strip().upper())) & STALE:
        detail = f"marked stale by the soft purge ({options.header}: {status[:60]})"
        return VERIFIED, f"probe answered HTTP {result.http_status}: {detail}"[:300]
    verdict, detail = classify(options, answered, since_purge)
    return verdict, f"probe answered HTTP {result.http_status}: {detail}"[:300]


# -- the sender's side ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    pk: int
    backend: str
    target: str
    host: str
    finished_at: datetime.datetime
    using: str
    kind: str = URL
    node: str = ""
    #: Drawn by the sampled verification: the probe thread takes the rate's token, and
    #: writes nothing unless it probed.
    sampled: bool = False
    #: The purge only marked the page stale (``SOFT``).
    soft: bool = False


def after_send(attempts: Iterable[PurgeAttempt], *, using: str) -> list[Job]:
    """Queue a probe for each attempt just recorded ``ok``/``not_cached`` for a URL (or
    ``ok`` for a tag) on a backend that verifies (all of them with VERIFY, a sample
    without); returns the jobs queued. Never raises, never probes itself.

    Each backend's ``RATE`` is a token bucket (shared through ``ROAN_CACHE``, like
    ``RATE_LIMIT``): attempts over it are recorded ``unverifiable`` at once rather than
    probed late, when a reader may have refilled the page.
    """
    try:
        return _after_send(list(attempts), using=using)
    except Exception:
        logger.exception("roan: cannot queue verification probes")
        return []


#: Backend alias -> when this process may queue its next sampled probe (monotonic).
_next_sampled: dict[str, float] = {}


def _after_send(attempts: list[PurgeAttempt], *, using: str) -> list[Job]:
    groups: dict[str, list[PurgeAttempt]] = collections.defaultdict(list)
    seen: set[tuple[str, ...]] = set()
    for attempt in attempts:
        probed = (attempt.kind == URL and attempt.status in (OK, NOT_CACHED)) or (
            # An invalidation a CDN finishes later is probed by nobody yet: too early.
            attempt.kind == TAG and attempt.status == OK and not attempt.completion
        )
        if probed:
            # Twins were one request: one probe tells it (on the row that was sent).
            key = purge_of(attempt)
            if key not in seen:
                seen.add(key)
                groups[attempt.backend].append(attempt)
    jobs: list[Job] = []
    sampled: list[Job] = []
    now = timezone.now()
    for alias, group in groups.items():
        options = options_for(alias)
        if options is None:
            continue
        # A process's first purge on a sampled backend is always probed: a new setup
        # (or a new deploy) is proved, or found wrong, on its first save.
        first = options.sampled and alias not in _next_sampled
        if options.sample < 1 and not first:
            group = [a for a in group if random.random() < options.sample]
        if options.sampled:
            # Nothing else here: this may be the editor's request. A process queues no
            # more than the rate lets through anyway (the shared bucket, taken on the
            # probe thread, has the last word): no thread woken for nothing.
            clock = time.monotonic()
            if group and clock >= _next_sampled.get(alias, 0.0):
                _next_sampled[alias] = clock + 1 / options.rate
                sampled.append(_job(group[0], using, now, sampled=True))
            continue
        if not group:
            continue
        bucket = RateLimit(options.rate, max(1.0, options.rate))
        given, _ = limits.take(f"{alias}:verify", bucket, len(group))
        over = group[given:]
        if over:
            detail = f"not probed: over VERIFY's RATE ({options.rate:g} a second)"
            _mark([a.pk for a in over], UNVERIFIABLE, detail, using=using)
        if given:
            _mark([a.pk for a in group[:given]], PENDING, "", using=using)
            jobs.extend(_job(a, using, now) for a in group[:given])
    if sampled:
        verifier.put(sampled)  # refused ones stay "not verified", like those not drawn
    if jobs:
        refused = verifier.put(jobs)
        if refused:
            _mark(
                [j.pk for j in refused],
                UNVERIFIABLE,
                "not probed: the probe queue is full",
                using=using,
            )
    return jobs


def _job(
    attempt: PurgeAttempt, using: str, now: datetime.datetime, *, sampled: bool = False
) -> Job:
    return Job(
        attempt.pk,
        attempt.backend,
        attempt.target,
        attempt.host,
        attempt.finished_at or now,
        using,
        kind=attempt.kind,
        node=attempt.node,
        sampled=sampled,
        soft=attempt.soft,
    )


def _mark(
    pks: Sequence[int],
    verdict: str,
    detail: str,
    *,
    using: str,
    only_pending: bool = False,
    only_unverified: bool = False,
) -> int:
    from roan.models import PurgeAttempt

    rows = PurgeAttempt.objects.using(using).filter(pk__in=list(pks))
    if only_pending:
        rows = rows.filter(verification=PENDING)
    if only_unverified:
        rows = rows.filter(verification="")
    # Outside a transaction (the probe thread, after a send): tried again on a deadlock.
    return retried(
        lambda: rows.update(verification=verdict, verification_detail=detail[:300]),
        using=using,
        what="recording a verification",
    )


def tagged_pages(alias: str, options: VerifyOptions, tag: str, using: str) -> list[tuple[str, str]]:
    """Up to ``TAG_PROBES`` (host, path) pages the tag index holds for ``tag`` on hosts
    this backend's probe may fetch, drawn at random."""
    from roan.models import TaggedURL

    if options.base_url:
        hosts: Sequence[str] = [options.host]
    else:
        hosts = backend_registry.get_backend(alias).hosts
    rows = TaggedURL.objects.using(using).filter(tag=tag, expires_at__gt=timezone.now())
    pages: list[tuple[str, str]] = []
    for host, path in rows.values_list("host", "path")[:TAG_CANDIDATES]:
        # The index keeps the host as Django saw it; the cache keys it as HOSTS names it.
        for named in (host.lower(), without_port(host.lower())):
            if named in hosts:
                pages.append((named, path))
                break
    return random.sample(pages, min(TAG_PROBES, len(pages)))


def _probe_job(job: Job, options: VerifyOptions) -> tuple[str, str] | None:
    """The verdict for ``job``'s purge, or ``None`` when a tag has no page to probe."""
    since = (timezone.now() - job.finished_at).total_seconds()
    if job.kind != TAG:
        return probe(
            job.backend, options, job.target, job.host, since, node=job.node, soft=job.soft
        )
    pages = tagged_pages(job.backend, options, job.target, job.using)
    if not pages:
        return None
    found = [
        (path, probe(job.backend, options, path, host, since, node=job.node, soft=job.soft))
        for host, path in pages
    ]
    for verdict in (STILL_CACHED, VERIFIED):
        hits = [(path, detail) for path, (v, detail) in found if v == verdict]
        if hits:
            path, detail = hits[0]
            return verdict, f"{len(hits)} of {len(found)} tagged page(s); {path}: {detail}"[:300]
    path, (verdict, detail) = found[0]
    return verdict, f"{path}: {detail}"[:300]


def run_job(job: Job) -> str:
    """Probe one queued attempt and record the verdict on its row; returns the verdict
    ("" for a sampled one not probed)."""
    options = options_for(job.backend)
    if job.sampled:
        if options is None or not options.sampled:
            return ""
        bucket = RateLimit(options.rate, max(1.0, options.rate))
        if limits.take(f"{job.backend}:verify", bucket, 1)[0] < 1:
            return ""
    if options is None:
        outcome: tuple[str, str] | None = UNVERIFIABLE, "VERIFY was turned off before the probe"
    else:
        outcome = _probe_job(job, options)
    if outcome is None:
        if job.sampled:
            return ""
        outcome = UNVERIFIABLE, "the tag index holds no page with this tag on these hosts"
    verdict, detail = outcome
    _mark(
        [job.pk],
        verdict,
        detail,
        using=job.using,
        only_pending=not job.sampled,
        only_unverified=job.sampled,
    )
    if verdict == STILL_CACHED:
        logger.warning(
            "roan: %s on %s is still cached after its purge: %s", job.target, job.backend, detail
        )
    return verdict


#: This process's queue (one thread, started by the first job).
verifier: BackgroundQueue[Job] = BackgroundQueue(
    "roan-verify", run_job, QUEUE_LIMIT, "roan: a verification probe failed: %r"
)


def expire_pending(*, older_than: float = 300.0, using: str | None = None) -> int:
    """Record ``unverifiable`` on probes still pending ``older_than`` seconds after their
    purge (their process ended before probing): a late probe proves nothing."""
    from roan.models import PurgeAttempt

    cutoff = timezone.now() - datetime.timedelta(seconds=older_than)
    rows = PurgeAttempt.objects.db_manager(using).filter(
        verification=PENDING, finished_at__lt=cutoff
    )
    return rows.update(
        verification=UNVERIFIABLE,
        verification_detail="not probed: the process that sent the purge ended first",
    )
