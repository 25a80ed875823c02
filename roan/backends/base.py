"""The contract every roan backend fulfils.

A backend is built once per process from one entry of ``ROAN_BACKENDS``. It validates its
options in ``__init__`` (raising ``ImproperlyConfigured`` with a clear message), declares
what it can purge (``capabilities``) and how many requests one call may carry
(``batch_size``), and names its nodes. roan's dispatcher then calls
:meth:`BaseBackend.purge` with the requests for one node at a time and records one
:class:`PurgeResult` per request.

Backends never raise for a cache's failure and never log or return credentials: a failure
is a ``PurgeResult`` with ``status="failed"`` and a short, redacted ``error``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from roan.conf import roan_settings
from roan.vocabulary import Kind, Status

#: What a backend may be asked to purge (:class:`roan.vocabulary.Kind`).
URL: str = Kind.URL
PREFIX: str = Kind.PREFIX
TAG: str = Kind.TAG
ALL: str = Kind.ALL
KINDS = (URL, PREFIX, TAG, ALL)


def expanded_by_roan(backend: BaseBackend, kind: str) -> bool:
    """Whether an attempt of ``kind`` on ``backend`` is a tag that roan turns into URL
    purges when it is sent: a tag on a backend that cannot purge by tag. Such a row is
    written only by a tag purge whose pages are too many for one event (one row, not a
    row per page, in the editor's transaction); anything else asking for a tag there is
    refused when written (:meth:`BaseBackend.refuse`)."""
    return kind == TAG and TAG not in backend.capabilities


#: Outcomes a backend reports (:class:`roan.vocabulary.Status`).
OK: str = Status.OK
NOT_CACHED: str = Status.NOT_CACHED
FAILED: str = Status.FAILED
GAVE_UP: str = Status.GAVE_UP
SKIPPED: str = Status.SKIPPED

#: Longest target roan sends: the attempt log's ``target`` column holds this many
#: characters, and a target is refused rather than shortened (a shortened URL purges
#: another page, and the log would claim the long one was purged).
MAX_TARGET_LENGTH = 2048
#: Longest ``Host`` an attempt records (its ``host`` column).
MAX_HOST_LENGTH = 255
#: Longest backend alias an attempt records (its ``backend`` column).
MAX_ALIAS_LENGTH = 100


@dataclasses.dataclass(frozen=True, slots=True)
class PurgeRequest:
    """One thing to purge on one backend.

    ``target`` is a path (with its query string) for ``url``, a path prefix for
    ``prefix``, a tag for ``tag`` and ``""`` for ``all``. ``host`` is the page's host
    name, sent as the ``Host`` header; ``""`` means the backend's default host.
    """

    kind: str
    target: str
    host: str = ""
    #: The attempt row this request is sent for (set by the sender; ``None`` elsewhere).
    #: Not part of equality: two requests for the same target are the same purge. A
    #: backend may derive an idempotency key from it (CloudFront's CallerReference).
    attempt: int | None = dataclasses.field(default=None, compare=False)


def purges_everything(request: PurgeRequest) -> bool:
    """True for a request that empties a whole cache: kind ``all``, or a prefix that is
    nothing but ``/`` (on any host: a ban of ``^/`` matches every page of it).

    Such a purge takes the ``roan.purge_all`` permission wherever a person asks for it.
    """
    if request.kind == ALL:
        return True
    return request.kind == PREFIX and request.target.strip("/*") == ""


@dataclasses.dataclass(slots=True)
class PurgeResult:
    """The outcome of one :class:`PurgeRequest` on one node."""

    status: str
    http_status: int | None = None
    latency_ms: float | None = None
    error: str = ""
    purge_id: str = ""
    #: Seconds the cache asked us to wait (``Retry-After``), if it said.
    retry_after: float | None = None
    #: False when sending again cannot help (a 403 means configuration, not bad luck).
    retryable: bool = True
    #: An ``ok`` the provider accepted but finishes in the background (CloudFront, Azure,
    #: Akamai): roan asks :meth:`BaseBackend.status` about ``purge_id`` after
    #: ``check_after`` seconds (see :mod:`roan.outbox.completion`).
    in_progress: bool = False
    check_after: float | None = None
    #: The provider asked roan to slow down without a 429 (CloudFront's ``Throttling``).
    throttled: bool = False
    #: The cache marked the target stale rather than dropping it (the ``SOFT`` option):
    #: it may serve the old copy once while it fetches the new one.
    soft: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """What a provider said about one asynchronous invalidation."""

    done: bool
    #: Seconds until it is worth asking again (``None``: roan's default).
    check_after: float | None = None
    #: Why the status could not be read (the check is tried again later).
    error: str = ""


class BaseBackend:
    """Base class for roan backends.

    Subclasses set ``capabilities`` and ``batch_size`` and implement :meth:`purge`.
    ``options`` is the backend's dict from ``ROAN_BACKENDS`` without ``"BACKEND"``.
    """

    #: A class attribute; a backend whose abilities depend on its options sets it in
    #: ``__init__`` (so it is not a ClassVar).
    capabilities: frozenset[str] = frozenset({URL})
    batch_size: int = 1
    #: Option names this backend accepts (besides the common ones below).
    options_accepted: ClassVar[frozenset[str]] = frozenset()
    common_options: ClassVar[frozenset[str]] = frozenset(
        {"HOSTS", "TIMEOUT", "LABEL", "TAG_HEADER_LIMIT"}
    )
    #: The response header this cache reads a page's cache tags from (``None``: it reads
    #: none), how tags are separated in it, the most bytes its value may hold, the
    #: longest tag, characters besides the separator a tag may not contain, whether a tag
    #: must be ASCII, and the most tags the cache keeps per object (``None``: no limit).
    #: ``roan.middleware.CacheTagMiddleware`` writes it for a backend that can purge by
    #: tag; see ``roan.tags``.
    tag_header: ClassVar[str | None] = None
    tag_separator: ClassVar[str] = " "
    tag_header_limit: ClassVar[int] = 8192
    tag_max_length: ClassVar[int] = 1024
    tag_forbidden: ClassVar[str] = ""
    tag_ascii_only: ClassVar[bool] = False
    tag_count_limit: ClassVar[int | None] = None

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        self.alias = alias
        unknown = set(options) - self.options_accepted - self.common_options - {"BACKEND"}
        if unknown:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]: unknown option(s) {', '.join(sorted(unknown))} "
                f"for {type(self).__name__}."
            )
        self.hosts: tuple[str, ...] = tuple(
            h.lower() for h in self._list_option(options, "HOSTS", default=())
        )
        self.connect_timeout, self.read_timeout = self._timeout_option(options)
        self.label: str = str(options.get("LABEL") or alias)
        self.tag_header_option: int | None = self._tag_header_limit_option(options)

    # -- what the dispatcher calls ------------------------------------------------------

    @property
    def nodes(self) -> tuple[str, ...]:
        """Names of the nodes one request fans out to (one attempt row each).

        Node names are shown in the admin and stored in the database, so they never
        contain credentials.
        """
        return ("default",)

    def refuse(self, request: PurgeRequest) -> str:
        """Why this backend will not send ``request`` (``""`` when it will).

        Checked before a pending row is written, so a refused request is recorded as
        ``skipped`` with this reason instead of being retried forever.
        """
        if len(request.target) > MAX_TARGET_LENGTH:
            return (
                f"the {request.kind} is {len(request.target):,} characters long; roan sends "
                f"at most {MAX_TARGET_LENGTH:,} and never shortens one"
            )
        if request.kind not in self.capabilities:
            can = ", ".join(sorted(self.capabilities))
            return f"{type(self).__name__} cannot purge by {request.kind} (it can: {can})"
        if request.host and self.hosts and request.host.lower() not in self.hosts:
            return f"host {request.host!r} is not in this backend's HOSTS"
        if request.host and not self.hosts:
            return f"host {request.host!r} given, but this backend has no HOSTS allow-list"
        return ""

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        """Send ``requests`` (at most ``batch_size``) to ``node``; one result each.

        Must not raise for anything the cache does (down, slow, an error status): that
        is a ``failed`` result. Must always use ``connect_timeout``/``read_timeout``.
        """
        raise NotImplementedError

    def status(self, node: str, purge_ids: Sequence[str]) -> dict[str, Progress]:
        """How the asynchronous invalidations ``purge_ids`` are going on ``node``.

        Only backends that return ``in_progress`` results implement it; it runs in
        ``roan_dispatch`` or a task worker, never in an editor's request. An id missing
        from the answer is asked about again later. Must not raise for the provider's
        failures.
        """
        return {}

    def close(self) -> None:
        """Release connections (called when settings change and in tests)."""

    #: The header that tells a hit from a miss on this cache as roan's shipped
    #: configuration sets it up (example/deploy/); the sampled verification reads it.
    status_header: ClassVar[str] = "X-Cache-Status"

    def probe_origin(self, node: str) -> str | None:
        """``scheme://host[:port]`` where ``node`` serves the pages it caches, for a
        verification probe (with the page's host in the ``Host`` header); ``None`` when
        the purge's server is not the pages' cache (an API, a webhook), so that only a
        ``VERIFY`` with a ``BASE_URL`` can probe this backend."""
        return None

    # -- helpers for subclasses --------------------------------------------------------

    def default_host(self) -> str:
        return self.hosts[0] if self.hosts else ""

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def _list_option(
        self, options: Mapping[str, Any], name: str, default: Iterable[str]
    ) -> tuple[str, ...]:
        value = options.get(name, default)
        if isinstance(value, str):
            value = [value]
        try:
            items = tuple(str(v) for v in value)
        except TypeError:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{self.alias!r}][{name!r}] must be a list of strings."
            ) from None
        return items

    def _tag_header_limit_option(self, options: Mapping[str, Any]) -> int | None:
        value = options.get("TAG_HEADER_LIMIT")
        if value is None:
            return None
        most = type(self).tag_header_limit
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= most:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{self.alias!r}]['TAG_HEADER_LIMIT'] must be a number of "
                f"bytes from 1 to {most} (this cache's own limit), not {value!r}."
            )
        return value

    def header_limit(self) -> int:
        """The most bytes this backend's tag header may hold: its ``TAG_HEADER_LIMIT``
        option, else ``ROAN_TAG_HEADER_LIMIT``, never more than the cache accepts."""
        if self.tag_header_option is not None:
            return self.tag_header_option
        return max(1, min(type(self).tag_header_limit, roan_settings.TAG_HEADER_LIMIT))

    def _timeout_option(self, options: Mapping[str, Any]) -> tuple[float, float]:
        """``TIMEOUT`` is seconds, or ``(connect, read)``; default ``(2, 5)``."""
        value = options.get("TIMEOUT", (2.0, 5.0))
        if isinstance(value, int | float) and not isinstance(value, bool):
            pair: tuple[Any, ...] = (value, value)
        elif isinstance(value, list | tuple) and len(value) == 2:
            pair = tuple(value)
        else:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{self.alias!r}]['TIMEOUT'] must be seconds or a "
                f"(connect, read) pair, not {value!r}."
            )
        try:
            connect, read = float(pair[0]), float(pair[1])
        except (TypeError, ValueError):
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{self.alias!r}]['TIMEOUT'] must be numbers, not {value!r}."
            ) from None
        if not (0 < connect <= 60 and 0 < read <= 300):
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{self.alias!r}]['TIMEOUT'] must be positive and at most "
                f"60 s to connect and 300 s to read (got {value!r})."
            )
        return connect, read


def is_unreachable(result: PurgeResult) -> bool:
    """A failure before any HTTP answer: the node is down or too slow."""
    return result.status == FAILED and result.http_status is None and result.retryable


def is_throttled(result: PurgeResult) -> bool:
    """A 429: the cache or provider asked roan to slow down (``retry_after`` says how)."""
    return (
        result.status == FAILED
        and (result.throttled or result.http_status == 429)
        and result.retryable
    )


def not_sent(after: PurgeResult) -> str:
    error = after.error.removeprefix("not sent: ")
    return f"not sent: {error}"


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``, without user info or query string.

    Never raises and never returns any part of a password: a URL that does not parse
    cleanly (``http://user:pa/ss@host/`` puts part of the password in the port and the
    path) is shown as ``scheme://(unparseable URL)``.
    """
    text = str(url)
    scheme = text.partition(":")[0] if ":" in text else ""
    if not scheme.isascii() or not scheme.isalpha():
        scheme = "?"
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return f"{scheme}://(unparseable URL)"
    # An "@" after the user info means the split went wrong (an unencoded "/" or "?" in
    # a password): what looks like the path may be the rest of the password.
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        return f"{parts.scheme}://(unparseable URL)"
    if port:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}{parts.path}"


class Timer:
    """``with Timer() as t: ...`` then ``t.ms``: wall time in milliseconds."""

    __slots__ = ("_start", "ms")

    def __enter__(self) -> Timer:
        self.ms = 0.0
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ms = (time.perf_counter() - self._start) * 1000.0
