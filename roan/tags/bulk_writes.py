"""Writes that send no signals, purged after commit like a save: ``QuerySet.update()``,
``bulk_update()`` (one ``update()`` per batch), ``bulk_create()`` and deletes without
signals (``QuerySet._raw_delete()``, the collector's fast deletes).

Django sends no signal for them, so roan catches them where Django runs their SQL: it
wraps ``SQLUpdateCompiler.execute_sql`` and ``SQLInsertCompiler.execute_sql`` (every
UPDATE and INSERT an ORM write runs) and ``QuerySet._raw_delete``, as ``roan.tags.collect``
wraps the SELECT compiler to record what a page reads. After the statement ran, roan
purges, through the same path as a save (:func:`roan.receivers.tags_of`,
:func:`roan.tags.purges.submit_tags`, after commit), with the trigger ``bulk``:

- an UPDATE (or a raw DELETE): the model's list tag and the object tags of the rows it
  matched. A filter on the primary key (``filter(pk=...)``, ``filter(pk__in=[...])``,
  what ``bulk_update()`` runs) names them; otherwise roan reads the primary keys the
  statement's filter matches just before it runs it (one ``SELECT``, at most
  :data:`MAX_ROWS` keys). Past that it purges every object tag of the model the tag
  index still knows, as ``roan.purge_model()`` does;
- an INSERT (``bulk_create()``): the list tag (a new row is on no page yet, but the
  lists it joins are); an upsert (``update_conflicts=True``) also the object tags of the
  rows it wrote.

Cache tags only: URL rules are templates rendered per object, from the values before and
after a change, which a bulk write never loads; ``roan.purge_object()`` renders them.

Never twice: the SQL of ``Model.save()`` (``Model._save_table``, between ``pre_save`` and
``post_save``) runs with a context variable set, and its writes are left to the signal
receivers; a delete through the collector sends signals for the rows it deletes, with
SQL roan does not wrap, while its fast deletes (``_raw_delete``) and its ``SET_NULL`` /
``SET_DEFAULT`` updates of the rows pointing to them send none and are purged here. A
signal receiver's own ``update()`` (a counter kept in ``post_save``) runs outside that
context and is purged like any other.

Nothing is purged under ``suppress_purges()``, with ``ROAN_ENABLED = False`` or
``ROAN_TAGS`` off, for models rules may not name (roan's own, accounts,
``ROAN_RULE_MODELS``), a task queue's tables, historical models in migrations, or the
tables Django creates for many-to-many relations (their changes send ``m2m_changed``).
Raw SQL through ``connection.cursor()`` is not seen: the one gap.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import DEFAULT_DB_ALIAS, models
from django.db.models.constants import OnConflict
from django.db.models.expressions import Col
from django.db.models.lookups import Exact, In
from django.db.models.query import QuerySet
from django.db.models.sql import Query
from django.db.models.sql.compiler import SQLInsertCompiler, SQLUpdateCompiler
from django.db.models.sql.constants import NO_RESULTS
from django.db.models.sql.where import AND

from roan import receivers
from roan.conf import roan_settings
from roan.context import is_active
from roan.purges import Cause
from roan.rules.access import is_roan_model
from roan.tags import index as tag_index
from roan.tags import purges as tag_purges
from roan.vocabulary import Trigger

logger = logging.getLogger(__name__)

__all__ = ["MAX_ROWS", "patch", "unpatch"]

#: The most primary keys read before an UPDATE or a raw DELETE whose filter does not
#: name them; past this many rows roan purges what ``purge_model()`` does.
MAX_ROWS = 5000

#: Set while Django writes the rows of a save or a delete that sends signals.
_signalled: ContextVar[bool] = ContextVar("roan_bulk_signalled", default=False)
#: Set while a caught write runs: the statements it runs itself (the parent tables of a
#: multi-table model) are part of it.
_inside: ContextVar[bool] = ContextVar("roan_bulk_inside", default=False)


@contextmanager
def _flag(var: ContextVar[bool]) -> Iterator[None]:
    token = var.set(True)
    try:
        yield
    finally:
        var.reset(token)


def _wanted(model: type[models.Model] | None) -> bool:
    """Whether a write to ``model``'s table, running now, is roan's to purge."""
    if model is None or _inside.get() or not is_active() or not roan_settings.TAGS:
        return False
    if model._meta.auto_created or is_roan_model(model):
        return False  # a many-to-many table (m2m_changed says what changed), or roan's
    return bool(receivers.tags_of(model, [], lists=True))


def _direct(value: Any) -> bool:
    return isinstance(value, (int, str, uuid.UUID))


def _pks_named(query: Query) -> list[Any] | None:
    """The primary keys a filter on the primary key names (``None`` when it names none):
    the rows the statement can touch are among them."""
    where = query.where
    if where.connector != AND or where.negated:
        return None
    pk = query.get_meta().pk
    for child in where.children:
        if not isinstance(child, (Exact, In)) or not isinstance(child.lhs, Col):
            continue
        if child.lhs.target is not pk or child.lhs.alias != query.base_table:
            continue
        values = [child.rhs] if isinstance(child, Exact) else child.rhs
        if isinstance(values, (list, tuple, set, frozenset)) and all(map(_direct, values)):
            return [value for value in values if value is not None]
    return None


def _pks_matched(query: Query, model: type[models.Model], using: str) -> list[Any] | None:
    """The primary keys of the rows ``query``'s filter matches now (``None``: more than
    :data:`MAX_ROWS`)."""
    named = _pks_named(query)
    if named is not None:
        return named
    select: QuerySet[Any] = QuerySet(model=model, query=query.chain(klass=Query), using=using)
    found = list(select.order_by().values_list("pk", flat=True)[: MAX_ROWS + 1])
    return None if len(found) > MAX_ROWS else found


def _purge(
    model: type[models.Model],
    pks: list[Any] | None,
    what: str,
    using: str,
    rows: int | None = None,
) -> None:
    """Purge the tags of ``pks`` of ``model`` (or, for ``None``, every object tag of it
    the index knows) and its list tag, after commit; ``rows`` is how many rows the write
    touched, when the keys do not say."""
    from django.contrib.contenttypes.models import ContentType

    try:
        if pks is None:
            tags = receivers.tags_of(model, []) + list(tag_index.object_tags_of(model))
        else:
            tags = receivers.tags_of(model, pks)
        if rows is not None:
            count = str(rows)
        else:
            count = f"over {MAX_ROWS}" if pks is None else str(len(pks))
        if not tags:
            return
        opts = model._meta
        origin = Cause.now(
            Trigger.BULK,
            content_type_id=ContentType.objects.db_manager(using).get_for_model(model).pk,
            object_pk=str(pks[0]) if pks is not None and len(pks) == 1 else "",
            object_repr=f"{what}: {count} {opts.label_lower} rows"[:200],
        )
        tag_purges.submit_tags(tags, origin, roan_settings.BACKENDS, using=using)
    except Exception:
        # The write itself succeeded; a purge that cannot be written must not undo it.
        logger.exception("roan: could not purge after %s on %s", what, model._meta.label)


# -- the hooks -------------------------------------------------------------------------------


def _wrap_update(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def execute_sql(self: SQLUpdateCompiler, *args: Any, **kwargs: Any) -> Any:
        model = self.query.model
        if _signalled.get() or not _wanted(model):
            return original(self, *args, **kwargs)
        assert model is not None
        using = self.using or DEFAULT_DB_ALIAS
        pks = _pks_matched(self.query, model, using)
        with _flag(_inside):
            rows = original(self, *args, **kwargs)
        # With NO_RESULTS (a delete's SET_NULL updates) Django reports 0 rows whatever.
        counted = (args[0] if args else kwargs.get("result_type")) != NO_RESULTS
        if pks != [] and (rows != 0 or not counted):
            _purge(model, pks, "update()", using)
        return rows

    return execute_sql


def _wrap_insert(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def execute_sql(self: SQLInsertCompiler, *args: Any, **kwargs: Any) -> Any:
        model = self.query.model
        if _signalled.get() or not _wanted(model):
            return original(self, *args, **kwargs)
        assert model is not None
        with _flag(_inside):
            rows = original(self, *args, **kwargs)
        objs = self.query.objs
        pks: list[Any] | None = []
        if getattr(self.query, "on_conflict", None) is OnConflict.UPDATE:
            # An upsert changed the rows already there: name them by the keys given or
            # returned; when neither names every row, purge what the index knows.
            pks = [obj.pk for obj in objs if obj.pk is not None]
            fields = self.returning_fields or []
            pk_at = next((i for i, f in enumerate(fields) if f.primary_key), None)
            if pk_at is not None and rows:
                pks += [row[pk_at] for row in rows]
            if len(pks) < len(objs):
                pks = None
        _purge(model, pks, "bulk_create()", self.using or DEFAULT_DB_ALIAS, rows=len(objs))
        return rows

    return execute_sql


def _wrap_raw_delete(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _raw_delete(self: QuerySet[Any], using: str) -> Any:
        # A raw delete never sends signals, even inside a collector's delete or a save.
        model = self.model
        if not _wanted(model):
            return original(self, using)
        assert model is not None
        pks = _pks_matched(self.query, model, using)
        with _flag(_inside):
            count = original(self, using)
        if pks != [] and count != 0:
            _purge(model, pks, "delete without signals", using)
        return count

    return _raw_delete


def _wrap_signalled(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def signalled(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _flag(_signalled):
            return original(self, *args, **kwargs)

    return signalled


_lock = threading.Lock()
_originals: dict[tuple[type, str], Any] = {}


def patch() -> None:
    """Install the hooks (once per process; ``RoanConfig.ready()`` calls this)."""
    with _lock:
        if _originals:
            return
        wrappers: list[tuple[type, str, Callable[..., Any]]] = [
            (SQLUpdateCompiler, "execute_sql", _wrap_update),
            (SQLInsertCompiler, "execute_sql", _wrap_insert),
            (QuerySet, "_raw_delete", _wrap_raw_delete),
            (models.Model, "_save_table", _wrap_signalled),
        ]
        for owner, name, wrap in wrappers:
            original = owner.__dict__[name]
            _originals[owner, name] = original
            replacement = wrap(original)
            if name == "_raw_delete":
                replacement.alters_data = True
            setattr(owner, name, replacement)


def unpatch() -> None:
    """Undo :func:`patch` (for tests and benchmarks)."""
    with _lock:
        for (owner, name), original in _originals.items():
            setattr(owner, name, original)
        _originals.clear()
