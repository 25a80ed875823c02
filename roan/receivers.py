"""Signal receivers: ask ``rules`` what fires, render, hand the requests to the pipeline.

They are connected for every model (the rules are data, so any model may gain one at run
time); for a model without rules each costs one dictionary lookup. Values before a change
are rendered in the ``pre_*`` signal and kept on the instance until the ``post_*`` one,
so a changed slug purges the old URL too. Fixture loading (``raw=True``) purges nothing.

A template through a reverse relation (``/posts/{post.slug}/`` on Author) reads the
related rows as they are when it renders: a save of the author purges its posts' URLs
now, and a delete renders in ``pre_delete``, before a cascade or ``SET_NULL`` touches
them. A post moved to another author is the post's own change: its rule purges it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.apps import apps as global_apps
from django.db import models
from django.db.models.signals import (
    m2m_changed,
    post_delete,
    post_init,
    post_save,
    pre_delete,
    pre_save,
)

from roan import context
from roan.backends.base import PurgeRequest
from roan.conf import roan_settings
from roan.outbox import pipeline, schedule
from roan.purges import Cause, Purge
from roan.rules import index as rules
from roan.rules import rendering
from roan.rules.access import rule_model_refusal
from roan.rules.index import CompiledRule
from roan.tags import purges as tag_purges
from roan.tags.collect import model_tag, object_tag

_OLD = "_roan_before"
_LOADED = "_roan_loaded"


#: What each rule rendered for an object before a change, kept until after it.
Rendered = list[tuple[CompiledRule, list[PurgeRequest]]]


def _stash(instance: models.Model, key: object, value: Any) -> None:
    instance.__dict__.setdefault(_OLD, {})[key] = value


def _unstash(instance: models.Model, key: object, default: Any = None) -> Any:
    return instance.__dict__.get(_OLD, {}).pop(key, default)


_Receiver = TypeVar("_Receiver", bound=Callable[..., None])


def while_purging(*, forget: object = None) -> Callable[[_Receiver], _Receiver]:
    """Run the receiver only while roan collects purges: not inside ``suppress_purges()``
    (or with ``ROAN_ENABLED = False``), not for fixture loading (``raw=True``). When it
    does not run, the values its ``pre_*`` twin kept under ``forget`` are dropped."""

    def decorate(receiver: _Receiver) -> _Receiver:
        @functools.wraps(receiver)
        def guarded(*args: Any, raw: bool = False, **kwargs: Any) -> None:
            if raw or not context.is_active():
                if forget is not None and "instance" in kwargs:
                    _unstash(kwargs["instance"], forget)
                return
            receiver(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def _render_all(active: tuple[CompiledRule, ...], instance: models.Model) -> Rendered:
    return [(rule, rendering.render_rule(rule, instance)) for rule in active]


def _submit(
    instance: models.Model,
    before: Rendered,
    *,
    after: tuple[CompiledRule, ...] = (),
    trigger: str,
    using: str,
) -> Rendered:
    """Purge what ``before`` rendered and what the ``after`` rules render now; return
    the latter."""
    # "before" keeps the rules it was rendered with: the index may have been reloaded
    # between the pre_ and post_ signals.
    now = _render_all(after, instance)
    purges: list[Purge] = []
    for rule, requests in before + now:
        purges += rendering.purges_for(instance, rule, requests, trigger=trigger)
    pipeline.submit(purges, using=using)
    return now


#: Apps whose rows are machinery, never content on a page: a task queue's results (with
#: tags on them, the task sending a purge would save a row that asks for the next one).
UNTAGGED_APPS = frozenset({"django_tasks_db", "django_tasks", "django_celery_results"})


def tags_of(model: type[models.Model], pks: Iterable[Any], *, lists: bool = True) -> list[str]:
    """The object tags of ``pks`` and the list tag of ``model`` and of its concrete
    parents (a page that loaded the parent rows carries their tags); none for a model
    rules may not name (accounts, sessions, roan's own tables), a task queue's, or one
    outside the app registry (historical models in migrations, the migration log)."""
    opts = model._meta
    if opts.apps is not global_apps or opts.app_label in UNTAGGED_APPS:
        return []
    if rule_model_refusal(model):
        return []
    lineage = [model, *model._meta.get_parent_list()]
    tags = [object_tag(each, pk) for each in lineage for pk in pks if pk is not None]
    if lists:
        tags += [model_tag(each) for each in lineage]
    return list(dict.fromkeys(tags))


def _submit_tags(instance: models.Model, tags: list[str], *, trigger: str, using: str) -> None:
    """Purge ``tags`` on every backend after commit (one event: its own bound)."""
    if not tags:
        return
    origin = Cause.of_object(trigger, instance, using=using)
    tag_purges.submit_tags(tags, origin, roan_settings.BACKENDS, using=using)


def _purge_object_tags(
    model: type[models.Model], instance: models.Model, *, trigger: str, using: str, created: bool
) -> None:
    if not roan_settings.TAGS:
        return
    # A new object is on no page yet, but the lists it joins are.
    tags = tags_of(model, [] if created else [instance.pk])
    _submit_tags(instance, tags, trigger=trigger, using=using)


def track_model(model: type[models.Model]) -> None:
    """Keep the loaded values of ``model``'s objects from now on (see ``on_post_init``)."""
    post_init.connect(
        on_post_init, sender=model, dispatch_uid=f"roan.post_init.{model._meta.label}"
    )


def on_post_init(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    _remember(sender, instance)


def _remember(model: type[models.Model], instance: models.Model) -> None:
    names = rules.tracked_attnames(model)
    if names:
        values = instance.__dict__
        values[_LOADED] = {name: values[name] for name in names if name in values}


def _as_loaded(instance: models.Model, loaded: dict[str, Any]) -> models.Model:
    """A stand-in for ``instance`` with the values it was loaded with."""
    # A shallow stand-in for rendering only (cheaper than copy.copy of a model).
    old = type(instance).__new__(type(instance))
    old.__dict__.update(instance.__dict__)
    old._state = copy.copy(instance._state)
    old._state.fields_cache = dict(instance._state.fields_cache)
    for name, value in loaded.items():
        if old.__dict__.get(name) != value:
            old.__dict__[name] = value
            # A changed foreign key: forget the cached new object, load the old one lazily.
            for field in type(instance)._meta.concrete_fields:
                if field.attname == name and field.is_relation:
                    old._state.fields_cache.pop(field.name, None)
    return old


@while_purging()
def on_pre_save(
    sender: type[models.Model], instance: models.Model, using: str = "default", **kwargs: Any
) -> None:
    active = rules.rules_for(sender, rules.SAVE)
    if not active or all(rule.is_static for rule in active):
        return
    if instance.pk is None:
        return
    # The URLs the object had are stale after this save. Its values as loaded tell them
    # without a query; otherwise (created with an explicit pk, deferred fields, loaded
    # before the rules were) read the row as it is in the database now.
    old = None
    loaded = instance.__dict__.get(_LOADED)
    if (
        not instance._state.adding
        and loaded is not None
        and rules.tracked_attnames(sender) <= loaded.keys()
    ):
        values = instance.__dict__
        if not any(rule.reads_any_field for rule in active) and all(
            values.get(name) == value for name, value in loaded.items()
        ):
            return  # nothing the URLs depend on changed: before and after are the same
        old = _as_loaded(instance, loaded)
    if old is None:
        old = sender._base_manager.using(using).filter(pk=instance.pk).first()
    if old is not None:
        _stash(instance, rules.SAVE, _render_all(active, old))


@while_purging(forget=rules.SAVE)
def on_post_save(
    sender: type[models.Model], instance: models.Model, using: str = "default", **kwargs: Any
) -> None:
    active = rules.rules_for(sender, rules.SAVE)
    created = bool(kwargs.get("created", False))
    if active:
        before = _unstash(instance, rules.SAVE, [])
        after = _submit(instance, before, after=active, trigger="save", using=using)
        if any(rule.schedule_fields for rule in active):
            schedule.schedule_purges(instance, before, after, using=using, created=created)
        _remember(sender, instance)  # the next save's "before" is this save's "after"
    _purge_object_tags(sender, instance, trigger="save", using=using, created=created)


@while_purging()
def on_pre_delete(
    sender: type[models.Model], instance: models.Model, using: str = "default", **kwargs: Any
) -> None:
    active = rules.rules_for(sender, rules.DELETE)
    if active:
        # Render now, while the row, its relations and the rows that point to it still
        # exist: Django sends every pre_delete before it cascades or sets null.
        _stash(instance, rules.DELETE, _render_all(active, instance))


@while_purging(forget=rules.DELETE)
def on_post_delete(
    sender: type[models.Model], instance: models.Model, using: str = "default", **kwargs: Any
) -> None:
    before = _unstash(instance, rules.DELETE, [])
    if before:
        _submit(instance, before, trigger="delete", using=using)
    _purge_object_tags(sender, instance, trigger="delete", using=using, created=False)


def _m2m_rules(model: type[models.Model], field_name: str | None) -> tuple[CompiledRule, ...]:
    """Rules of ``model`` that a change of relation ``field_name`` fires."""
    fired = list(rules.rules_for(model, rules.M2M))
    if field_name:
        fired += [
            rule
            for rule in rules.rules_for(model, rules.SAVE)
            if rule.uses_relation(field_name) and rule not in fired
        ]
    return tuple(fired)


def _m2m_field(
    sender: type[models.Model], instance: models.Model, model: type[models.Model], reverse: bool
) -> models.ManyToManyField[Any, Any] | None:
    owner = model if reverse else type(instance)
    for field in owner._meta.many_to_many:
        if field.remote_field.through is sender:
            return field
    return None


@while_purging()
def on_m2m_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str = "default",
    **kwargs: Any,
) -> None:
    if action not in {
        "pre_add",
        "post_add",
        "pre_remove",
        "post_remove",
        "pre_clear",
        "post_clear",
    }:
        return
    field = _m2m_field(sender, instance, model, reverse)
    if field is None:
        return
    if roan_settings.TAGS:
        _m2m_tags(field, sender, instance, action, reverse, model, pk_set, using)
    # Templates name the relation by the field's name on the side that declares it, and
    # by its query name (``related_query_name``, as in ``{posts.slug}``) on the other.
    forward_name, reverse_name = field.name, field.related_query_name()
    own_name = reverse_name if reverse else forward_name
    other_name = forward_name if reverse else reverse_name
    key = ("m2m", sender, instance.pk)
    if action.startswith("pre_"):
        if action == "pre_clear":
            pk_set = set(_related_pks(field, instance, reverse, using))
        mine = _m2m_rules(type(instance), own_name)
        theirs = _m2m_rules(model, other_name)
        others = (
            list(model._base_manager.using(using).filter(pk__in=pk_set or ())) if theirs else []
        )
        _stash(
            instance,
            key,
            (
                _render_all(mine, instance),
                [(other, _render_all(theirs, other)) for other in others],
            ),
        )
        return
    mine_before, others_before = _unstash(instance, key, ([], []))
    mine = _m2m_rules(type(instance), own_name)
    if mine or mine_before:
        _submit(instance, mine_before, after=mine, trigger="m2m", using=using)
    theirs = _m2m_rules(model, other_name)
    for other, rendered in others_before:
        # Re-read the other side: its relation has changed in the database.
        _submit(other, rendered, after=theirs, trigger="m2m", using=using)


def _m2m_tags(
    field: Any,
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str,
) -> None:
    """Purge the tags of both sides of an m2m change: the instance, and each object
    added, removed or cleared (their pages list, or no longer list, each other)."""
    key = ("m2m-tags", sender, instance.pk)
    if action == "pre_clear":
        # After the clear the rows are gone: read who was related now.
        _stash(instance, key, set(_related_pks(field, instance, reverse, using)))
        return
    if action.startswith("pre_"):
        return
    if action == "post_clear":
        pk_set = _unstash(instance, key, set())
    if not pk_set:
        return  # nothing was added or removed
    tags = tags_of(type(instance), [instance.pk]) + tags_of(model, sorted(pk_set, key=str))
    _submit_tags(instance, tags, trigger="m2m", using=using)


def _related_pks(field: Any, instance: models.Model, reverse: bool, using: str) -> list[Any]:
    through = field.remote_field.through
    source, target = field.m2m_field_name(), field.m2m_reverse_field_name()
    if reverse:
        source, target = target, source
    return list(
        through._base_manager.using(using)
        .filter(**{f"{source}_id": instance.pk})
        .values_list(f"{target}_id", flat=True)
    )


def on_rule_changed(sender: type[models.Model], using: str = "default", **kwargs: Any) -> None:
    rules.invalidate_on_commit(using=using)


def connect() -> None:
    """Connect every receiver once (called from ``RoanConfig.ready``)."""
    from roan.models import PurgeRule

    rules.connect_migration_signals()
    rules.track_hook = track_model
    post_save.connect(on_rule_changed, sender=PurgeRule, dispatch_uid="roan.rule_saved")
    post_delete.connect(on_rule_changed, sender=PurgeRule, dispatch_uid="roan.rule_deleted")
    pre_save.connect(on_pre_save, dispatch_uid="roan.pre_save")
    post_save.connect(on_post_save, dispatch_uid="roan.post_save")
    pre_delete.connect(on_pre_delete, dispatch_uid="roan.pre_delete")
    post_delete.connect(on_post_delete, dispatch_uid="roan.post_delete")
    m2m_changed.connect(on_m2m_changed, dispatch_uid="roan.m2m_changed")
