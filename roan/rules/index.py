"""The rule index: every enabled rule, compiled, keyed by model and event.

Database rules (``PurgeRule``) and code rules (roan 0.1's ``purge(url).on_save(Model)``)
are compiled into one in-process index, so finding the rules for a save costs no query.
Freshness works in two ways:

* every ``ROAN_RULES_TTL`` seconds a process compares its index with a version stamp
  kept in the cache named by ``ROAN_CACHE``; any rule write bumps the stamp after commit,
  so every process sees an edit within the TTL;
* when that cache is local to the process (locmem, dummy), the stamp cannot travel, so
  the check asks the database for a cheap fingerprint of the rule table instead; so it
  does while the shared cache is down (a failed read keeps roan away from it for a TTL,
  and a stamp bump it refused is made when it answers again), so an outage never
  raises into a save and costs one cache timeout per TTL at most.

Rules written inside a transaction are not the process's until it commits: the thread
that wrote them reads them through an index of its own until then, and a rollback (an
import's dry run) leaves nothing behind. A row that cannot be compiled, whatever is wrong
with it, is left out and reported in ``broken``.

Nothing else in roan reads ``PurgeRule`` rows for dispatch; this module owns the index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections, models, router, transaction
from django.db.models import Count, Max
from django.dispatch import receiver

from roan.conf import roan_settings
from roan.rules.access import check_rule_model
from roan.rules.templating import Template, parse_lines
from roan.rules.validation import schedule_field_problems
from roan.shared_cache import outage
from roan.signals import rules_changed

if TYPE_CHECKING:
    from roan.models import PurgeRule

logger = logging.getLogger(__name__)

SAVE = "save"
DELETE = "delete"
M2M = "m2m"
EVENTS = (SAVE, DELETE, M2M)

STAMP_KEY = "roan:rules:stamp"


@dataclasses.dataclass(frozen=True)
class CompiledRule:
    """A rule ready to render: what the receivers and the preview use."""

    name: str
    model: type[models.Model]
    templates: tuple[Template, ...]
    events: frozenset[str]
    #: Backend aliases; empty means every configured backend.
    backends: tuple[str, ...]
    #: The ``PurgeRule`` primary key, or ``None`` for a code rule.
    pk: int | None = None
    #: Datetime fields whose future values schedule these purges again (roan.outbox.schedule).
    schedule_fields: tuple[str, ...] = ()

    @property
    def is_code_rule(self) -> bool:
        return self.pk is None

    @functools.cached_property
    def local_attnames(self) -> frozenset[str]:
        return frozenset().union(*(t.local_attnames for t in self.templates))

    @functools.cached_property
    def reads_any_field(self) -> bool:
        """Whether a template renders ``{get_absolute_url}``, which may read any field."""
        return any(
            len(p.steps) == 1 and p.steps[0].kind == "url"
            for t in self.templates
            for p in t.placeholders
        )

    @functools.cached_property
    def is_static(self) -> bool:
        return all(t.is_static for t in self.templates)

    def uses_relation(self, name: str) -> bool:
        return any(p.steps[0].name == name for t in self.templates for p in t.placeholders)


@dataclasses.dataclass(slots=True)
class RuleIndex:
    stamp: object
    by_key: dict[tuple[str, str], tuple[CompiledRule, ...]]
    #: Rule name -> why it could not be compiled (shown by checks and the admin).
    broken: dict[str, str]
    #: Model label -> columns whose loaded values the receivers keep, to render the URLs
    #: an object had before a save without reading the row again.
    tracked: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    checked_at: float = 0.0

    def get(self, model: type[models.Model], event: str) -> tuple[CompiledRule, ...]:
        return self.by_key.get((model._meta.concrete_model._meta.label_lower, event), ())  # type: ignore[union-attr]


# -- code rules (roan 0.1) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CodeRule:
    url: str
    model: type[models.Model] | str
    event: str


_code_rules: list[CodeRule] = []
_code_rules_lock = threading.Lock()


def register_code_rule(url: str, model: type[models.Model] | str, event: str) -> None:
    """Register a rule from code; takes effect in this process at once."""
    with _code_rules_lock:
        rule = CodeRule(url, model, event)
        if rule not in _code_rules:
            _code_rules.append(rule)
    _registry.forget()


def code_rules() -> list[CodeRule]:
    return list(_code_rules)


# -- the index ----------------------------------------------------------------------------


_EMPTY = RuleIndex(stamp=None, by_key={}, broken={})


class _TransactionRules(threading.local):
    """Per thread: a transaction with uncommitted rule writes, and the index it reads.

    An index loaded inside such a transaction holds rules that may yet be rolled back
    (an import's dry run always is), so it is kept here, for this thread and this
    transaction only, never as the process's index.
    """

    #: The connection whose transaction wrote rules, and its list of commit hooks then.
    connection: Any = None
    hooks: Any = None
    index: RuleIndex | None = None
    #: Nesting depth of ``batched_rule_writes()``, and whether a write happened in it
    #: outside any transaction.
    batching = 0
    owed = False


class _Registry:
    def __init__(self) -> None:
        self._index: RuleIndex | None = None
        self._lock = threading.Lock()
        #: Held by the one thread checking the stamp; the others use the index they have.
        self._checking = threading.Lock()
        self._table_exists = False
        #: True between pre_migrate and post_migrate: the schema may be half built.
        self.migrating = False
        #: A stamp bump the cache refused: retried at the next check that reaches it.
        self.bump_owed = False
        self.local = _TransactionRules()

    def table_exists(self) -> bool:
        if not self._table_exists:
            from roan.models import PurgeRule

            db = router.db_for_write(PurgeRule)
            with connections[db].cursor() as cursor:
                names = connections[db].introspection.table_names(cursor)
            self._table_exists = PurgeRule._meta.db_table in names
        return self._table_exists

    def index(self) -> RuleIndex:
        if self.migrating:
            return _EMPTY
        if self.local.connection is not None and self.uncommitted() is not None:
            local = self.local
            if local.index is None:
                local.index = load_index(stamp=None)
            return local.index
        index = self._index
        if index is not None and time.monotonic() - index.checked_at < roan_settings.RULES_TTL:
            return index
        if not self.table_exists():
            # roan is not migrated yet (first migrate, a test database being built).
            return _EMPTY
        if index is not None and not self._checking.acquire(blocking=False):
            # Another thread is asking the cache: a slow cache costs one wait, not one
            # per thread.
            return index
        if index is None:
            self._checking.acquire()
        try:
            index = self._index
            if index is not None and time.monotonic() - index.checked_at < roan_settings.RULES_TTL:
                return index  # checked by the thread this one waited for
            stamp, shared = _read_stamp()
            if shared and self.bump_owed:
                stamp = _bump_stamp() or stamp
            if index is None or stamp != index.stamp:
                with self._lock:
                    index = self._index = load_index(stamp)
            # Stamped after the check: a cache that took its whole timeout to fail is
            # not asked again before the TTL has passed.
            index.checked_at = time.monotonic()
            return index
        finally:
            self._checking.release()

    def uncommitted(self) -> Any:
        """This thread's connection if its transaction has uncommitted rule writes."""
        local = self.local
        connection = local.connection
        if connection is None:
            return None
        if connection.in_atomic_block:
            hooks = connection.run_on_commit
            if hooks is local.hooks:
                return connection
            # Django gives the connection a new list of commit hooks at every commit,
            # rollback and savepoint rollback. After the last, rule writes outside the
            # savepoint stand if the hook they registered survived.
            if any(entry[1] is _rules_committed for entry in hooks):
                local.hooks = hooks
                local.index = None
                return connection
        local.connection = local.hooks = local.index = None
        return None

    def loaded(self) -> RuleIndex | None:
        """The index this thread reads, as loaded (no freshness check)."""
        if self.local.connection is not None and self.uncommitted() is not None:
            return self.local.index
        return self._index

    def forget(self) -> None:
        self._index = None
        self.local.index = None


_registry = _Registry()


def rules_for(model: type[models.Model], event: str) -> tuple[CompiledRule, ...]:
    """The enabled rules for ``event`` on ``model`` (no query in the steady state)."""
    return _registry.index().get(model, event)


def get_index() -> RuleIndex:
    return _registry.index()


def _stamp_cache() -> Any:
    try:
        return caches[roan_settings.CACHE]
    except InvalidCacheBackendError:
        return None


def stamp_is_shared() -> bool:
    """Whether the stamp cache is seen by other processes (not locmem or dummy)."""
    cache = _stamp_cache()
    return cache is not None and not isinstance(cache, LocMemCache | DummyCache)


def current_stamp() -> object:
    """The version of the rules as this process can see it without loading them.

    Never raises for a stamp cache that is down: the database's fingerprint stands in.
    """
    return _read_stamp()[0]


def _read_stamp() -> tuple[object, bool]:
    """The stamp, and whether the shared cache gave it."""
    if stamp_is_shared() and not outage.down():
        cache = _stamp_cache()
        try:
            stamp = cache.get(STAMP_KEY)
            if stamp is None:
                # Evicted or never set: start a new version, which makes everyone reload.
                stamp = uuid.uuid4().hex
                cache.add(STAMP_KEY, stamp, timeout=None)
                stamp = cache.get(STAMP_KEY, stamp)
        except Exception as exc:
            # A cache outage must not break saves: the rules are read from the database
            # until it answers again (and it is asked once per ROAN_RULES_TTL at most).
            outage.failed()
            logger.warning(
                "roan: rule stamp cache %r failed (%s); checking the rules in the database",
                roan_settings.CACHE,
                type(exc).__name__,
            )
        else:
            return stamp, True
    return _database_fingerprint(), False


def _bump_stamp() -> str | None:
    """Write a new stamp; return it, or ``None`` (logged, owed) if the cache refused."""
    cache = _stamp_cache()
    if cache is None:
        _registry.bump_owed = False
        return None
    stamp = uuid.uuid4().hex
    # Other processes go on comparing the old stamp: bump it when the cache is back.
    if outage.down():
        _registry.bump_owed = True
        return None
    try:
        cache.set(STAMP_KEY, stamp, timeout=None)
    except Exception as exc:  # a cache that is down must not break a rule edit
        outage.failed()
        _registry.bump_owed = True
        logger.warning(
            "roan: could not bump the rule stamp in cache %r (%s); retried later",
            roan_settings.CACHE,
            type(exc).__name__,
        )
        return None
    _registry.bump_owed = False
    return stamp


def _database_fingerprint() -> object:
    from roan.models import PurgeRule

    db = router.db_for_write(PurgeRule)
    row = PurgeRule.objects.using(db).aggregate(n=Count("pk"), latest=Max("updated_at"))
    return (row["n"], row["latest"], len(_code_rules))


def invalidate() -> None:
    """Make every process reload its rules: now in this one, within the TTL elsewhere."""
    _registry.forget()
    try:
        _bump_stamp()
    except Exception:  # a cache alias that cannot even be built
        logger.exception("roan: could not bump the rule stamp")


def _rules_committed() -> None:
    """The commit hook of a transaction that wrote rules (one per transaction)."""
    invalidate()


def invalidate_on_commit(using: str | None = None) -> None:
    """Invalidate after the current transaction commits (at once outside one).

    Until then this thread reads its rules through an index of its own, loaded inside
    the transaction, so later saves in it see the edit; nobody else sees rules that may
    yet be rolled back, and a rollback leaves nothing behind. However many rules the
    transaction writes, it registers one hook.
    """
    connection = connections[using or DEFAULT_DB_ALIAS]
    local = _registry.local
    if not connection.in_atomic_block:
        if local.batching:
            local.owed = True
        else:
            invalidate()
        return
    if not local.batching:
        local.index = None
    if _registry.uncommitted() is connection:
        return  # this transaction's hook is registered already
    transaction.on_commit(_rules_committed, using=connection.alias)
    local.connection, local.hooks, local.index = connection, connection.run_on_commit, None


@contextlib.contextmanager
def batched_rule_writes() -> Iterator[None]:
    """Write many rules in the block at the cost of one invalidation.

    Inside, a rule write does not make this thread reload its rules (saves of other
    models in the block may use the rules as they were when it started); at the end
    they are reloaded once, and other processes are told once, on commit.
    """
    local = _registry.local
    local.batching += 1
    try:
        yield
    finally:
        local.batching -= 1
        if not local.batching:
            local.index = None
            if local.owed:
                local.owed = False
                invalidate()


class RuleError(ValueError):
    """A rule row that cannot be compiled for a reason other than its templates."""


def compile_row(row: PurgeRule, model: type[models.Model]) -> CompiledRule:
    """A rule row compiled for ``model``.

    Raises ``ModelNotAllowed`` when database rules may not name ``model``
    (``ROAN_RULE_MODELS``), ``TemplateErrors`` for a bad template and ``RuleError`` for a
    malformed field; all are ``ValueError``.
    """
    check_rule_model(model)
    events = {
        e for e, on in ((SAVE, row.on_save), (DELETE, row.on_delete), (M2M, row.on_m2m)) if on
    }
    backends = row.backends or []
    if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
        # A JSON column takes anything from loaddata or SQL; "edge" would be 4 aliases.
        raise RuleError(f"backends must be a list of aliases, not {str(row.backends)[:100]!r}")
    schedule = row.schedule_names
    problems = schedule_field_problems(model, schedule)
    if problems:
        raise RuleError(" ".join(problems))
    return CompiledRule(
        name=row.name,
        model=model,
        templates=tuple(parse_lines(row.templates, model)),
        events=frozenset(events),
        backends=tuple(backends),
        pk=row.pk,
        schedule_fields=tuple(schedule),
    )


def load_index(stamp: object) -> RuleIndex:
    from roan.models import PurgeRule

    by_key: dict[tuple[str, str], list[CompiledRule]] = defaultdict(list)
    broken: dict[str, str] = {}
    db = router.db_for_write(PurgeRule)
    rows = PurgeRule.objects.using(db).filter(enabled=True).select_related("content_type")
    for row in rows:
        model = row.content_type.model_class()
        if model is None:
            broken[row.name] = (
                f"model {row.content_type.app_label}.{row.content_type.model} is gone"
            )
            continue
        try:
            compiled = compile_row(row, model)
        except Exception as exc:
            # Any bad row (a model ROAN_RULE_MODELS refuses, a template that no longer
            # compiles, a malformed field written by loaddata or SQL) is left out and
            # reported; the other rules still work.
            reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            broken[row.name] = reason
            logger.error("roan: rule %r is not used: %s", row.name, reason)
            continue
        _add(by_key, compiled)
    for code in _compile_code_rules():
        _add(by_key, code)
    index = RuleIndex(stamp=stamp, by_key={k: tuple(v) for k, v in by_key.items()}, broken=broken)
    for (label, event), compiled_rules in index.by_key.items():
        if event == SAVE:
            names = frozenset().union(*(rule.local_attnames for rule in compiled_rules))
            if names:
                index.tracked[label] = names
    if track_hook is not None:
        for label in index.tracked:
            track_hook(apps.get_model(label))
    return index


#: Called with each model whose loaded values should be kept (set by ``receivers``).
track_hook: Callable[[type[models.Model]], None] | None = None


def tracked_attnames(model: type[models.Model]) -> frozenset[str]:
    """Columns to keep for ``model`` per the index as loaded (no freshness check)."""
    index = _registry.loaded()
    if index is None:
        return frozenset()
    return index.tracked.get(model._meta.concrete_model._meta.label_lower, frozenset())  # type: ignore[union-attr]


def _add(by_key: dict[tuple[str, str], list[CompiledRule]], rule: CompiledRule) -> None:
    label = rule.model._meta.concrete_model._meta.label_lower  # type: ignore[union-attr]
    for event in rule.events:
        by_key[(label, event)].append(rule)


def _compile_code_rules() -> Iterable[CompiledRule]:
    for code in code_rules():
        model = apps.get_model(code.model) if isinstance(code.model, str) else code.model
        # roan 0.1 URLs are literal paths: no placeholders, so nothing can go wrong here.
        template = Template(source=code.url, parts=(code.url,), prefix=False)
        yield CompiledRule(
            name=f"{code.url} on {code.event} of {model._meta.label}",
            model=model,
            templates=(template,),
            events=frozenset({code.event}),
            backends=(),
        )


def _pre_migrate(**kwargs: Any) -> None:
    _registry.migrating = True


def _post_migrate(**kwargs: Any) -> None:
    _registry.migrating = False
    _registry.forget()


def connect_migration_signals() -> None:
    from django.db.models.signals import post_migrate, pre_migrate

    pre_migrate.connect(_pre_migrate, dispatch_uid="roan.rules.index.pre_migrate")
    post_migrate.connect(_post_migrate, dispatch_uid="roan.rules.index.post_migrate")


@receiver(rules_changed, dispatch_uid="roan.rules.index.rules_changed")
def _on_rules_changed(*, using: str | None = None, **kwargs: Any) -> None:
    invalidate_on_commit(using=using)


@receiver(setting_changed, dispatch_uid="roan.rules.index.setting_changed")
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {
        "ROAN_CACHE",
        "ROAN_RULES_TTL",
        "CACHES",
        "ROAN_RULE_MODELS",
        "ROAN_PRIVATE_FIELDS",
        "AUTH_USER_MODEL",
    }:
        _registry.forget()
