"""The rule index: every enabled rule, compiled, keyed by model and event.

Database rules (``PurgeRule``) and code rules (roan 0.1's ``purge(url).on_save(Model)``)
are compiled into one in-process index, so finding the rules for a save costs no query.
Freshness works in two ways:

* every ``ROAN_RULES_TTL`` seconds a process compares its index with a version stamp
  kept in the cache named by ``ROAN_CACHE``; any rule write bumps the stamp after commit,
  so every process sees an edit within the TTL;
* when that cache is local to the process (locmem, dummy), the stamp cannot travel, so
  the check asks the database for a cheap fingerprint of the rule table instead.

Nothing else in roan reads ``PurgeRule`` rows for dispatch; this module owns the index.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import setting_changed
from django.db import connections, models, router, transaction
from django.db.models import Count, Max
from django.dispatch import receiver

from roan.access import ModelNotAllowed, check_rule_model
from roan.conf import roan_settings
from roan.templating import Template, TemplateErrors, parse_lines

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


class _Registry:
    def __init__(self) -> None:
        self._index: RuleIndex | None = None
        self._lock = threading.Lock()
        self._table_exists = False
        #: True between pre_migrate and post_migrate: the schema may be half built.
        self.migrating = False

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
        index = self._index
        now = time.monotonic()
        if index is not None and now - index.checked_at < roan_settings.RULES_TTL:
            return index
        if not self.table_exists():
            # roan is not migrated yet (first migrate, a test database being built).
            return _EMPTY
        stamp = current_stamp()
        if index is None or stamp != index.stamp:
            with self._lock:
                index = self._index = load_index(stamp)
        index.checked_at = now
        return index

    def forget(self) -> None:
        self._index = None


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
    """The version of the rules as this process can see it without loading them."""
    if stamp_is_shared():
        cache = _stamp_cache()
        stamp = cache.get(STAMP_KEY)
        if stamp is None:
            # Evicted or never set: start a new version, which makes everyone reload.
            stamp = uuid.uuid4().hex
            cache.add(STAMP_KEY, stamp, timeout=None)
            stamp = cache.get(STAMP_KEY, stamp)
        return stamp
    return _database_fingerprint()


def _database_fingerprint() -> object:
    from roan.models import PurgeRule

    db = router.db_for_write(PurgeRule)
    row = PurgeRule.objects.using(db).aggregate(n=Count("pk"), latest=Max("updated_at"))
    return (row["n"], row["latest"], len(_code_rules))


def invalidate() -> None:
    """Make every process reload its rules: now in this one, within the TTL elsewhere."""
    _registry.forget()
    cache = _stamp_cache()
    if cache is not None:
        try:
            cache.set(STAMP_KEY, uuid.uuid4().hex, timeout=None)
        except Exception:  # a cache that is down must not break a rule edit
            logger.warning("roan: could not bump the rule stamp in cache %r", roan_settings.CACHE)


def invalidate_on_commit(using: str | None = None) -> None:
    """Invalidate after the current transaction commits (at once outside one).

    This process also forgets its index right away, so later saves in the same
    transaction see the edit.
    """
    _registry.forget()
    transaction.on_commit(invalidate, using=using)


def compile_row(row: PurgeRule, model: type[models.Model]) -> CompiledRule:
    """A rule row compiled for ``model``.

    Raises ``ModelNotAllowed`` when database rules may not name ``model``
    (``ROAN_RULE_MODELS``) and ``TemplateErrors`` for a bad template; both are
    ``ValueError``.
    """
    check_rule_model(model)
    events = {
        e for e, on in ((SAVE, row.on_save), (DELETE, row.on_delete), (M2M, row.on_m2m)) if on
    }
    return CompiledRule(
        name=row.name,
        model=model,
        templates=tuple(parse_lines(row.templates, model)),
        events=frozenset(events),
        backends=tuple(row.backends or ()),
        pk=row.pk,
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
        except (ModelNotAllowed, TemplateErrors) as exc:
            # A row written past validation (the shell, loaddata, an older roan, a
            # narrowed ROAN_RULE_MODELS) never fires; the admin lists it as broken.
            broken[row.name] = str(exc)
            logger.error("roan: rule %r is not used: %s", row.name, exc)
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
    index = _registry._index
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

    pre_migrate.connect(_pre_migrate, dispatch_uid="roan.rules.pre_migrate")
    post_migrate.connect(_post_migrate, dispatch_uid="roan.rules.post_migrate")


@receiver(setting_changed, dispatch_uid="roan.rules.setting_changed")
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
