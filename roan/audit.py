"""Is what the cache serves what the site renders now? The freshness audit.

The URL<->tag index (:mod:`roan.tags.index`) lists the pages a cache may hold. For a
sample of them (or all), :func:`run` fetches each page through the cache and from the
origin (rendered in this process with Django's test client, or fetched from an uncached
server), removes the volatile parts (CSRF tokens, and the patterns of
``ROAN_AUDIT_IGNORE``) from both, and compares status and body. A page that differs, and
still differs when fetched again a moment later (an edit may have committed between the
two fetches), is stale; it is reported with its tags and the last purges that named it.
``manage.py roan_audit`` runs it; the last result is kept in ``ROAN_CACHE`` for the
dashboard.

Only the cache's address is connected to, never a host read from the index: that comes
from the operator (``--cache-url``) or from the backends' own ``LOCATION``/``NODES``. The
index's hosts only go in the ``Host`` header, and only those the backends purge (their
``HOSTS``, or Django's ``ALLOWED_HOSTS`` for a backend without them).
"""

from __future__ import annotations

import datetime
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.test import Client
from django.utils import timezone

from roan import context, shared_cache
from roan.backends._pipelined import HTTPNodesBackend
from roan.backends.base import BaseBackend, redact_url
from roan.managers import dedup_key
from roan.models import PurgeAttempt, TaggedURL
from roan.tags import index as tag_index

logger = logging.getLogger(__name__)

#: Where the last audit's summary is kept (in ``ROAN_CACHE``), for the dashboard.
LAST_AUDIT_KEY = "roan:audit:last:1"
#: The most bytes read of one page (each side): a bigger page is compared by its start.
MAX_BODY = 5 * 1024 * 1024
#: The last purges shown for a stale page.
LAST_PURGES = 5
#: CSRF tokens differ on every render: always ignored (form fields, meta tags, JS).
CSRF = (
    r"(?i)csrfmiddlewaretoken[\"']?\s+value=[\"'](?P<volatile>[^\"']*)",
    r"(?i)name=[\"']csrf-token[\"']\s+content=[\"'](?P<volatile>[^\"']*)",
)


@dataclass(frozen=True)
class Page:
    """One indexed URL: the ``host`` it was cached under and its ``path`` (with query)."""

    url_key: str
    host: str
    path: str


@dataclass(frozen=True)
class Cache:
    """Where pages are fetched through: a base URL, and the hosts it may be asked for
    (empty: those of Django's ``ALLOWED_HOSTS``)."""

    url: str
    hosts: tuple[str, ...]

    @property
    def name(self) -> str:
        """The address to show: never with the credentials a node URL may carry."""
        return redact_url(self.url)


@dataclass
class Stale:
    page: Page
    cache: str
    cached_status: int
    origin_status: int
    cache_header: str
    tags: list[str] = field(default_factory=list)
    purges: list[PurgeAttempt] = field(default_factory=list)


@dataclass
class Result:
    pages: int = 0
    checked: int = 0
    stale: list[Stale] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: datetime.datetime = field(default_factory=timezone.now)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "at": self.started.isoformat(),
            "pages": self.pages,
            "checked": self.checked,
            "stale": len(self.stale),
            "errors": len(self.errors),
            "seconds": round(self.seconds, 1),
        }


class AuditError(Exception):
    """The audit cannot run as asked (no cache to fetch through, a bad pattern)."""


# -- where to fetch --------------------------------------------------------------------


def _root(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def caches_of(backends: Iterable[BaseBackend]) -> list[Cache]:
    """The caches the URL-purging ``backends`` purge, as addresses pages can be fetched
    through: each node of an HTTP backend (nginx, Varnish), at its root."""
    found: dict[str, Cache] = {}
    for backend in backends:
        if not isinstance(backend, HTTPNodesBackend):
            continue  # Django's page cache, a webhook: nothing to fetch pages through
        for node in backend.nodes:
            root = _root(backend.node_url(node))
            known = found.get(root)
            hosts = backend.hosts if known is None else known.hosts + backend.hosts
            found[root] = Cache(root, tuple(dict.fromkeys(hosts)))
    return list(found.values())


def given_cache(url: str, backends: Sequence[BaseBackend]) -> Cache:
    """``--cache-url``: any host a URL-purging backend purges may be asked of it."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise AuditError(f"the cache URL must be http:// or https:// with a host, not {url!r}")
    if any(not b.hosts for b in backends):
        hosts: tuple[str, ...] = ()  # one backend takes any host Django allows
    else:
        hosts = tuple(dict.fromkeys(h for b in backends for h in b.hosts))
    return Cache(_root(url), hosts)


def host_allowed(host: str, cache: Cache) -> bool:
    if not host:
        return False
    if cache.hosts:
        return host.lower() in cache.hosts or tag_index.without_port(host) in cache.hosts
    domain, _port = split_domain_port(host)
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


# -- which pages -----------------------------------------------------------------------


def _pages_from(start: str, *, below: str | None = None, chunk: int = 2000) -> Iterator[Page]:
    """The live URLs from the key ``start`` (up to ``below``), read ``chunk`` rows at a
    time by key (no cursor stays open while the pages are fetched and rendered)."""
    last, first = "", True
    while True:
        rows = TaggedURL.objects.filter(expires_at__gt=timezone.now())
        rows = rows.filter(url_key__gte=start) if first else rows.filter(url_key__gt=last)
        if below is not None:
            rows = rows.filter(url_key__lt=below)
        found = list(rows.order_by("url_key").values_list("url_key", "host", "path")[:chunk])
        for key, host, path in found:
            if key != last:  # one row per tag: a URL's rows are adjacent
                last = key
                yield Page(key, host, path)
        if len(found) < chunk:
            return
        first = False


def indexed_pages(sample: int | None) -> Iterator[Page]:
    """``sample`` live URLs of the index picked at random (all with ``None``), each once.

    The keys are digests, so the URLs after a random key are a random sample, read in
    one range of the unique index without counting or sorting the table.
    """
    if sample is None:
        yield from _pages_from("")
        return
    start = secrets.token_hex(32)
    taken = 0
    for part in (_pages_from(start), _pages_from("", below=start)):
        for page in part:
            if taken >= sample:
                return
            taken += 1
            yield page


# -- fetching and comparing ------------------------------------------------------------


Fetched = tuple[int, str, str]  # status, body, the cache's hit/miss header


def _read(response: requests.Response) -> str:
    body = b""
    for chunk in response.iter_content(64 * 1024):
        body += chunk
        if len(body) >= MAX_BODY:
            break
    return body[:MAX_BODY].decode(response.encoding or "utf-8", errors="replace")


def fetch_http(
    session: requests.Session, base: str, page: Page, timeout: tuple[float, float]
) -> Fetched:
    with session.get(
        base + page.path,
        headers={"Host": page.host},
        timeout=timeout,
        allow_redirects=False,
        stream=True,
    ) as response:
        header = response.headers.get("X-Cache-Status") or response.headers.get("X-Cache", "")
        return response.status_code, _read(response), header[:40]


def render_here(page: Page, secure: bool, client: Client | None = None) -> Fetched:
    """The page rendered by this process, as a cookie-less visitor asks for it.

    Pass the same ``client`` for many pages: building one loads the middleware.
    """
    client = client or Client(raise_request_exception=False)
    client.cookies.clear()  # what the last page set is not this visitor's
    # No cache keeps this copy: its rows in the index must not be lengthened.
    with context.unindexed():
        response = client.get(page.path, secure=secure, HTTP_HOST=page.host)
    # Not response.content: a streamed page has none.
    content = b"".join(response) if response.streaming else response.content
    charset = response.charset or "utf-8"
    return response.status_code, content[:MAX_BODY].decode(charset, errors="replace"), ""


def ignored_patterns(extra: Sequence[str]) -> list[re.Pattern[str]]:
    patterns = []
    for pattern in (*CSRF, *extra):
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            raise AuditError(
                f"ROAN_AUDIT_IGNORE: {pattern!r} is no regular expression: {exc}"
            ) from exc
    return patterns


def _without_volatile(match: re.Match[str]) -> str:
    # A pattern with a group named "volatile" drops that group only (a token's value,
    # not the name of its field); any other pattern drops its whole match.
    if "volatile" not in match.re.groupindex:
        return ""
    start, end = match.span("volatile")
    whole = match.group(0)
    offset = match.start()
    return whole[: start - offset] + whole[end - offset :] if start >= 0 else whole


def normalized(fetched: Fetched, patterns: Sequence[re.Pattern[str]]) -> tuple[int, str]:
    status, body, _header = fetched
    for pattern in patterns:
        body = pattern.sub(_without_volatile, body)
    return status, body


# -- what the log says -----------------------------------------------------------------


def tags_of(pages: Sequence[Page]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    rows = TaggedURL.objects.filter(
        url_key__in=[p.url_key for p in pages], expires_at__gt=timezone.now()
    ).order_by("tag")
    for key, tag in rows.values_list("url_key", "tag"):
        found.setdefault(key, []).append(tag)
    return found


def last_purges(page: Page, backends: Sequence[BaseBackend]) -> list[PurgeAttempt]:
    """The newest attempts that purged ``page`` on ``backends``, found through the
    attempts' purge key (an index), not by scanning the log for the path."""
    hosts = {page.host, tag_index.without_port(page.host), ""}
    keys = [
        dedup_key(backend.alias, node, host, "url", page.path)
        for backend in backends
        for node in backend.nodes
        for host in hosts
    ]
    return list(
        PurgeAttempt.objects.filter(dedup_key__in=keys).order_by("-created_at", "-id")[:LAST_PURGES]
    )


# -- the audit -------------------------------------------------------------------------


def run(
    caches: Sequence[Cache],
    backends: Sequence[BaseBackend],
    *,
    sample: int | None,
    origin: str | None = None,
    timeout: float = 10.0,
    recheck_after: float = 1.0,
    ignore: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> Result:
    """Audit ``sample`` indexed pages (all: ``None``) through each of ``caches`` against
    the origin (``origin``'s URL, else rendered in this process)."""
    patterns = ignored_patterns(ignore)
    result = Result()
    started = time.monotonic()
    limits = (min(timeout, 5.0), timeout)
    client = Client(raise_request_exception=False)
    with requests.Session() as session:
        for page in indexed_pages(sample):
            result.pages += 1
            for cache in caches:
                if not host_allowed(page.host, cache):
                    continue

                def both(cache: Cache = cache, page: Page = page) -> tuple[Fetched, Fetched]:
                    cached = fetch_http(session, cache.url, page, limits)
                    if origin:
                        fresh = fetch_http(session, origin, page, limits)
                    else:
                        fresh = render_here(page, cache.url.startswith("https:"), client)
                    return cached, fresh

                try:
                    cached, fresh = both()
                    if normalized(cached, patterns) != normalized(fresh, patterns):
                        time.sleep(recheck_after)  # an edit between the two fetches?
                        cached, fresh = both()
                except requests.RequestException as exc:
                    # The exception's text names the address, never its user info.
                    why = type(exc).__name__
                    result.errors.append(f"{page.host}{page.path} via {cache.name}: {why}")
                    continue
                result.checked += 1
                if normalized(cached, patterns) != normalized(fresh, patterns):
                    result.stale.append(Stale(page, cache.name, cached[0], fresh[0], cached[2]))
                if progress and result.checked % 100 == 0:
                    progress(f"{result.checked} checked, {len(result.stale)} stale")
    tags = tags_of([s.page for s in result.stale])
    for stale in result.stale:
        stale.tags = tags.get(stale.page.url_key, [])
        stale.purges = last_purges(stale.page, backends)
    result.seconds = time.monotonic() - started
    remember(result)
    return result


def remember(result: Result) -> None:
    try:
        shared_cache.cache().set(LAST_AUDIT_KEY, result.summary(), None)
    except Exception:  # the audit's own answer matters more than the dashboard's copy
        logger.warning("roan: the audit's result could not be kept in ROAN_CACHE")
        shared_cache.outage.failed()


def last() -> dict[str, Any] | None:
    """The last audit's summary (``at`` as a datetime), or ``None``."""
    if shared_cache.outage.down():
        return None
    try:
        kept = shared_cache.cache().get(LAST_AUDIT_KEY)
    except Exception:
        shared_cache.outage.failed()
        return None
    if not isinstance(kept, dict):
        return None
    try:
        return {**kept, "at": datetime.datetime.fromisoformat(kept["at"])}
    except (KeyError, TypeError, ValueError):
        return None
