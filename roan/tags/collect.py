"""Cache tags: what a response depends on while it is rendered (names: roan.tags.names).

A tag names what a cached page shows: ``blog.post:42`` for one object, ``blog.post`` for
"some set of posts" (a list, a count, a search that found nothing). The page carries its
tags in a response header (Varnish ``xkey``...) and a save purges the tags it touches.

While :func:`tracking` is active (``roan.middleware.CacheTagMiddleware`` turns it on for
GET and HEAD requests), roan records:

- every model instance built from a database row (Django's ``post_init`` signal, which
  ``Model.from_db`` sends too), as its object tag;
- every SELECT run through a queryset (iteration, ``count()``, ``exists()``,
  ``aggregate()``, ``values()``, ``first()``, ``latest()``...), as its model's list tag,
  except the query of a ``get()`` that found its one object: that page depends on the
  object, not on the set (a ``get()`` that found nothing depends on the set: a new row
  could match, so it records the list tag).

Only models that database rules may name get tags (``roan.rules.access.rule_model_refusal``:
never roan's own, accounts, sessions, content types). Outside :func:`tracking` every hook
returns at its first line, reading one context variable: threads and asyncio tasks each
see their own request.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any, TypeVar

from django.apps import apps
from django.core.exceptions import MultipleObjectsReturned, ObjectDoesNotExist
from django.db import models
from django.db.models.query import QuerySet
from django.db.models.signals import post_init
from django.db.models.sql.compiler import (
    SQLCompiler,
    SQLDeleteCompiler,
    SQLInsertCompiler,
    SQLUpdateCompiler,
)
from django.http import HttpRequest, HttpResponseBase
from django.template.response import SimpleTemplateResponse
from django.utils.cache import patch_cache_control

from roan.backends import get_backends
from roan.backends.base import TAG, BaseBackend
from roan.conf import roan_settings
from roan.outbox import render_guard
from roan.rules.access import rule_model_refusal
from roan.tags import index as tag_index
from roan.tags.names import model_tag, object_tag, tag_for

logger = logging.getLogger(__name__)

__all__ = [
    "TagCollector",
    "add_tags",
    "cache_tags",
    "current",
    "model_tag",
    "object_tag",
    "stamp",
    "tracking",
]

#: Object tags kept per model while a response renders; past this many, the model's
#: list tag stands for them all (a page iterating 100,000 rows must not hold 100,000
#: tags in memory; the header would collapse them anyway).
MAX_OBJECTS_PER_MODEL = 5000

_View = TypeVar("_View", bound=Callable[..., Any])


# -- names -----------------------------------------------------------------------------------


# -- what one response depends on ------------------------------------------------------------


class TagCollector:
    """What the code running under one :func:`tracking` block read.

    ``objects`` maps a model class (as loaded: may be a proxy) to the primary keys seen,
    ``lists`` holds models read as sets, ``extra`` the tags given by hand. :meth:`tags`
    turns them into tag names, dropping models that rules may not name.
    """

    __slots__ = ("extra", "lists", "objects", "overflowed", "settled", "started")

    def __init__(self) -> None:
        #: When the render began (``time.time()``), for ``roan.outbox.render_guard``.
        self.started = time.time()
        #: Whether :func:`settle` has finished the response.
        self.settled = False
        self.objects: dict[type[models.Model], set[Any]] = {}
        self.lists: set[type[models.Model]] = set()
        self.extra: set[str] = set()
        #: Models whose object tags went past MAX_OBJECTS_PER_MODEL.
        self.overflowed: set[type[models.Model]] = set()

    def add_object(self, model: type[models.Model], pk: Any) -> None:
        pks = self.objects.get(model)
        if pks is None:
            pks = self.objects[model] = set()
        if len(pks) < MAX_OBJECTS_PER_MODEL:
            pks.add(pk)
        elif pk not in pks:
            self.overflowed.add(model)

    def add_list(self, model: type[models.Model]) -> None:
        self.lists.add(model)

    def add(self, *items: Any) -> None:
        """Hand-given tags: strings, models, instances, querysets (see :func:`tag_for`)."""
        for item in items:
            self.extra.add(tag_for(item))

    def tags(self) -> frozenset[str]:
        """Every tag, by name: object tags, list tags and the hand-given ones."""
        allowed: dict[type[models.Model], bool] = {}

        def ok(model: type[models.Model]) -> bool:
            concrete = model._meta.concrete_model
            assert concrete is not None
            if concrete not in allowed:
                allowed[concrete] = not rule_model_refusal(concrete)
            return allowed[concrete]

        names = set(self.extra)
        names.update(model_tag(m) for m in self.lists if ok(m))
        names.update(model_tag(m) for m in self.overflowed if ok(m))
        for model, pks in self.objects.items():
            if model in self.overflowed or not ok(model):
                continue
            prefix = model_tag(model)
            names.update(f"{prefix}:{pk}" for pk in pks)
        return frozenset(names)


_current: ContextVar[TagCollector | None] = ContextVar("roan_tag_collector", default=None)
# Inside a get(): its own query is a lookup of one row, not a read of a set.
_in_get: ContextVar[bool] = ContextVar("roan_tag_in_get", default=False)


def current() -> TagCollector | None:
    """The collector of the response being rendered in this context, if any."""
    return _current.get()


@contextmanager
def tracking() -> Iterator[TagCollector]:
    """Record, in the collector it yields, what the code in the block reads.

    Nested blocks each collect for themselves and report to the enclosing one too, so a
    view decorator and the middleware can both track one request.
    """
    install()
    outer = _current.get()
    collector = TagCollector()
    token = _current.set(collector)
    try:
        yield collector
    finally:
        _current.reset(token)
        if outer is not None:
            for model, pks in collector.objects.items():
                for pk in pks:
                    outer.add_object(model, pk)
            outer.lists |= collector.lists
            outer.extra |= collector.extra
            outer.overflowed |= collector.overflowed


def add_tags(*items: Any) -> None:
    """Add tags to the response being rendered: strings (tag names without
    ``ROAN_TAG_PREFIX``, which roan adds), model instances, models, querysets.

    For what tracking cannot see: a page built from ``raw()`` SQL, ``values()`` through
    relations, data from elsewhere. Outside a tracked response it does nothing.
    """
    collector = _current.get()
    if collector is not None:
        collector.add(*items)


def cache_tags(*items: Any) -> Callable[[_View], _View]:
    """A view decorator: add ``items`` (as :func:`add_tags`) to the view's response, and
    write the tag headers on the response the view returns.

    Writing the headers inside the view matters under ``cache_page``: Django's page cache
    stores the response the view returned, headers included, and answers later requests
    from it without running the view, so without the headers those answers would carry
    no tags. Put ``cache_tags()`` *inside* ``cache_page``. ``CacheTagMiddleware`` does the
    tracking; without it (or outside GET/HEAD) this decorator does nothing.

    It also indexes the URL and runs the render guard (:func:`settle`) before
    ``cache_page`` stores the page, so that Django's page cache never keeps a page
    rendered while a change committed.
    """

    def decorator(view: _View) -> _View:
        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            collector = _current.get()
            if collector is None:
                return view(request, *args, **kwargs)
            collector.add(*items)
            response = view(request, *args, **kwargs)

            def stamp_rendered(rendered: HttpResponseBase) -> None:
                if is_cacheable(request, rendered):
                    settle(request, rendered, collector)

            if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
                # Rendered later, still inside the middleware's tracking; cache_page
                # adds its own callback after this one, so it stores the stamped page.
                response.add_post_render_callback(stamp_rendered)
            else:
                stamp_rendered(response)
            return response

        return wrapper  # type: ignore[return-value]

    return decorator


# -- the hooks -------------------------------------------------------------------------------


def _record_instance(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    collector = _current.get()
    if collector is None:
        return
    # Read the primary key from __dict__: an attribute access on a deferred field would
    # load it, from inside the instance's own __init__. An instance built in the view
    # without a pk has none and is skipped; one built with an explicit pk is tagged,
    # which purges a little more than needed, never less.
    pk = instance.__dict__.get(sender._meta.pk.attname)
    if pk is not None:
        collector.add_object(sender, pk)


_SELECTS_ONLY = (SQLInsertCompiler, SQLUpdateCompiler, SQLDeleteCompiler)


def _wrap_execute_sql(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def execute_sql(self: SQLCompiler, *args: Any, **kwargs: Any) -> Any:
        collector = _current.get()
        if collector is not None and not _in_get.get() and not isinstance(self, _SELECTS_ONLY):
            query = self.query
            for part in (query, *getattr(query, "combined_queries", ())):
                model = getattr(part, "model", None)
                if model is not None:
                    collector.add_list(model)
        return original(self, *args, **kwargs)

    return execute_sql


def _wrap_get(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def get(self: QuerySet[Any], *args: Any, **kwargs: Any) -> Any:
        collector = _current.get()
        if collector is None:
            return original(self, *args, **kwargs)
        token = _in_get.set(True)
        try:
            return original(self, *args, **kwargs)
        except (ObjectDoesNotExist, MultipleObjectsReturned):
            # Nothing (or too much) matched: a row created or changed later may change
            # the answer, so the page depends on the whole set.
            collector.add_list(self.model)
            raise
        finally:
            _in_get.reset(token)

    return get


def _wrap_earliest(original: Callable[..., Any]) -> Callable[..., Any]:
    # latest()/earliest() answer through get(), yet "the newest post" is a read of the set.
    @functools.wraps(original)
    def earliest(self: QuerySet[Any], *args: Any, **kwargs: Any) -> Any:
        collector = _current.get()
        if collector is not None:
            collector.add_list(self.model)
        return original(self, *args, **kwargs)

    return earliest


_install_lock = threading.Lock()
_originals: dict[tuple[type, str], Any] = {}


def install() -> None:
    """Connect the hooks (once per process; the middleware calls this when it is built).

    Django has no signal for "a queryset ran", and a connection's ``execute_wrapper``
    sees SQL, not models; so roan wraps ``SQLCompiler.execute_sql`` (every SELECT a
    queryset runs) and ``QuerySet.get``/``latest``/``earliest``. The wrappers read one
    context variable and call through: processes that never track pay nothing else.
    """
    if _originals:
        return
    with _install_lock:
        if _originals:
            return
        post_init.connect(
            _record_instance, dispatch_uid="roan.tags.collect.record_instance", weak=False
        )
        wrappers: list[tuple[type, str, Callable[..., Any]]] = [
            (SQLCompiler, "execute_sql", _wrap_execute_sql),
            (QuerySet, "get", _wrap_get),
            (QuerySet, "latest", _wrap_earliest),
            (QuerySet, "earliest", _wrap_earliest),
        ]
        for owner, name, wrap in wrappers:
            original = owner.__dict__[name]
            _originals[owner, name] = original
            setattr(owner, name, wrap(original))


def uninstall() -> None:
    """Undo :func:`install` (for benchmarks and tests that compare with no hooks at all)."""
    with _install_lock:
        post_init.disconnect(dispatch_uid="roan.tags.collect.record_instance")
        for (owner, name), original in _originals.items():
            setattr(owner, name, original)
        _originals.clear()


# -- the headers -----------------------------------------------------------------------------

#: Statuses a shared cache stores without explicit freshness (RFC 9110, "heuristically
#: cacheable"), plus 206: the responses roan tags.
CACHEABLE_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 404, 405, 410, 414, 501})


def _cache_control(response: HttpResponseBase) -> set[str]:
    value = response.headers.get("Cache-Control", "")
    return {part.split("=", 1)[0].strip().lower() for part in value.split(",") if part.strip()}


def is_cacheable(request: HttpRequest, response: HttpResponseBase) -> bool:
    """Whether a shared cache may keep ``response`` to ``request``: GET or HEAD, a status
    caches store, not ``private`` or ``no-store``, no cookie set, not streamed (a streamed
    body is produced after the response leaves roan, so what it reads is not seen)."""
    if request.method not in ("GET", "HEAD"):
        return False
    if response.status_code not in CACHEABLE_STATUSES or response.streaming:
        return False
    if response.cookies:
        return False
    return not ({"private", "no-store"} & _cache_control(response))


def list_tag_of(
    tag: str, known: dict[str, str | None] | None = None, prefix: str | None = None
) -> str | None:
    """The list tag an object tag collapses to (``blog.post`` for ``blog.post:42``), or
    ``None`` when ``tag`` is not the object tag of an installed model. ``known`` caches
    the answer per model label across calls; ``prefix`` is ``ROAN_TAG_PREFIX``, read
    once by a caller that asks for many tags."""
    if prefix is None:
        prefix = roan_settings.TAG_PREFIX
    if not tag.startswith(prefix):
        return None
    label, colon, pk = tag[len(prefix) :].partition(":")
    if not colon or not pk:
        return None
    if known is not None and label in known:
        return known[label]
    app_label, dot, model_name = label.partition(".")
    found: str | None = None
    if dot:
        with suppress(LookupError):
            found = model_tag(apps.get_model(app_label, model_name))
    if known is not None:
        known[label] = found
    return found


# Spaces and control characters (Unicode's too): never in a tag.
_NOT_IN_TAGS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def tag_refusal(tag: str, backend: BaseBackend) -> str:
    """Why ``tag`` cannot go in ``backend``'s tag header as it is ("" when it can)."""
    if not tag:
        return "empty"
    if len(tag) > backend.tag_max_length:
        return f"longer than {backend.tag_max_length} characters"
    if _NOT_IN_TAGS.search(tag) or not tag.isprintable():
        return "contains spaces or control characters"
    if backend.tag_separator in tag or any(ch in tag for ch in backend.tag_forbidden):
        return "contains the header's separator"
    if not tag.isascii():
        if backend.tag_ascii_only:
            return "is not ASCII text"
        try:
            # Header values go out as Latin-1 (WSGI, and Django's own encoding of them).
            tag.encode("latin-1")
        except UnicodeEncodeError:
            return "is not Latin-1 text"
    return ""


def header_value(tags: Iterable[str], backend: BaseBackend) -> str | None:
    """``tags`` as ``backend``'s tag header value, within its limits.

    An object tag that cannot be sent, or that does not fit, is replaced by its model's
    list tag: purged on every save of that model, so less precise, never less correct.
    Collapsing starts with the model holding most bytes of object tags. A hand-given tag
    that cannot be sent is dropped with a warning. ``None`` when nothing is left, or
    when even the list tags do not fit (logged as an error: the page is not tagged).
    """
    known: dict[str, str | None] = {}
    prefix = roan_settings.TAG_PREFIX
    sendable: set[str] = set()
    objects: dict[str, set[str]] = {}  # list tag -> its object tags in the header
    for tag in tags:
        list_tag = list_tag_of(tag, known, prefix)
        if why := tag_refusal(tag, backend):
            if list_tag is None or tag_refusal(list_tag, backend):
                logger.warning("Cache tag %r cannot be sent in %s: %s; dropped.",
                               tag[:100], backend.tag_header, why)  # fmt: skip
                continue
            sendable.add(list_tag)
        elif list_tag is not None:
            objects.setdefault(list_tag, set()).add(tag)
        else:
            sendable.add(tag)
    separator = len(backend.tag_separator)
    limit = backend.header_limit()
    # Bytes of each object group, and of the rest; a list tag counted once.
    group_bytes = {t: sum(len(o) + separator for o in group) for t, group in objects.items()}
    size = sum(len(t) + separator for t in sendable) + sum(group_bytes.values()) - separator
    # A cache that keeps only so many tags per object (CloudFront: 50) ignores the rest.
    most = backend.tag_count_limit
    count = len(sendable) + sum(map(len, objects.values()))
    # Largest group first: the fewest models lose their precision.
    for list_tag in sorted(group_bytes, key=group_bytes.__getitem__, reverse=True):
        if size <= limit and (most is None or count <= most):
            break
        size -= group_bytes[list_tag]
        count -= len(objects.pop(list_tag))
        if list_tag not in sendable:
            sendable.add(list_tag)
            size += len(list_tag) + separator
            count += 1
    every = sendable.union(*objects.values())
    if not every:
        return None
    if most is not None and count > most:
        logger.error("The page's %d tags are more than %s keeps (%d); it is not tagged.",
                     len(every), backend.tag_header, most)  # fmt: skip
        return None
    if size > limit:
        logger.error("The page's %d list tags do not fit in %s (%d bytes); it is not tagged.",
                     len(every), backend.tag_header, limit)  # fmt: skip
        return None
    return backend.tag_separator.join(sorted(every))


def tag_backends() -> dict[str, BaseBackend]:
    """One configured backend per tag header name (the strictest limit wins when two
    backends read the same header)."""
    chosen: dict[str, BaseBackend] = {}
    for backend in get_backends().values():
        name = backend.tag_header
        if not name or TAG not in backend.capabilities:
            continue  # CloudFront without its TAGS option reads no tags
        key = name.lower()
        other = chosen.get(key)
        if other is None or backend.header_limit() < other.header_limit():
            chosen[key] = backend
    return chosen


def settle(request: HttpRequest, response: HttpResponseBase, collector: TagCollector) -> None:
    """Finish a cacheable, tagged response: write its tag headers, index its URL for the
    caches that cannot purge by tag, then run the render guard (which may make it
    uncacheable: a change to what it shows committed while it rendered).

    In that order: a page indexed before the guard looked is in the index when the
    change's purge is expanded after commit, and a page the guard looked at after the
    change committed is not cached at all. Done once per request: by ``cache_tags()``
    inside the view when it is used, else by the middleware.
    """
    if collector.settled:
        return
    collector.settled = True
    found = collector.tags() | carried_tags(response)
    if not found:
        return
    stamp(response, found)
    try:
        reachable = tag_index.remember(request, response, found)
    except Exception:
        # The index only widens purges for caches without tags; the page still goes out.
        logger.exception("Could not record the cache tags of %s", request.path[:200])
        reachable = True
    if not reachable:
        # A cache that purges tags by URL would keep a copy that no purge names (a 404,
        # a tracking variant, a variant past the bound): no shared cache may keep it.
        patch_cache_control(response, private=True)
    render_guard.protect(response, found, collector.started)


def carried_tags(response: HttpResponseBase) -> frozenset[str]:
    """Tags already in ``response``'s tag headers (written inside the view by
    :func:`cache_tags`, or stored so by Django's page cache)."""
    found: set[str] = set()
    for backend in tag_backends().values():
        assert backend.tag_header is not None
        value = response.headers.get(backend.tag_header, "")
        found.update(t.strip() for t in value.split(backend.tag_separator))
    found.discard("")
    return frozenset(found)


def stamp(response: HttpResponseBase, tags: Iterable[str]) -> None:
    """Write ``tags``, with those the response carries already, in the tag header of
    every configured backend that has one."""
    every = frozenset(tags) | carried_tags(response)
    if getattr(response, "_roan_tags", None) == every:
        return  # stamped already with these (by cache_tags() inside the view)
    response._roan_tags = every  # type: ignore[attr-defined]
    for backend in tag_backends().values():
        assert backend.tag_header is not None
        value = header_value(every, backend)
        if value is None:
            response.headers.pop(backend.tag_header, None)
        else:
            response.headers[backend.tag_header] = value
