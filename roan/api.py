"""The code behind roan's public functions (``roan.purge_urls``, ``roan.purge_object``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models

from roan import context, receivers
from roan.backends.base import PurgeRequest
from roan.conf import roan_settings
from roan.outbox import pipeline
from roan.purges import Cause, Purge
from roan.rules import index as rules
from roan.rules import rendering
from roan.rules.targets import check_alias
from roan.rules.targets import parse_target as parse_target
from roan.tags import index as tag_index
from roan.tags import purges as tag_purges
from roan.tags.names import model_tag


def purge_urls(
    urls: Iterable[str] | str,
    *,
    backends: Iterable[str] | None = None,
    kind: str = "url",
    trigger: str = "api",
    user: Any = None,
) -> int:
    if isinstance(urls, str):
        urls = [urls]
    requests = list(dict.fromkeys(parse_target(url, kind) for url in urls))
    if kind == "all" and not requests:
        requests = [PurgeRequest("all", "")]
    aliases = _aliases(backends)
    user_id = getattr(user, "pk", None) if user is not None else context.current_user_id()
    origin = Cause(trigger=trigger, user_id=user_id)
    return pipeline.submit(
        Purge(alias, request, origin) for alias in aliases for request in requests
    )


def purge_object(obj: models.Model, *, trigger: str = "api", user: Any = None) -> int:
    fired: list[rules.CompiledRule] = []
    for event in rules.EVENTS:
        for rule in rules.rules_for(type(obj), event):
            if rule not in fired:
                fired.append(rule)
    user_id = getattr(user, "pk", None) if user is not None else None
    purges: list[Purge] = []
    for rule in fired:
        requests = rendering.render_rule(rule, obj)
        purges += rendering.purges_for(obj, rule, requests, trigger=trigger, user_id=user_id)
    written = pipeline.submit(purges)
    if roan_settings.TAGS:
        # As if it were saved: with automatic tags, its pages are found by its tags too.
        origin = Cause.of_object(trigger, obj, user_id=user_id)
        tags = receivers.tags_of(type(obj), [obj.pk])
        written += tag_purges.submit_tags(tags, origin, roan_settings.BACKENDS)
    return written


def _aliases(backends: Iterable[str] | None) -> list[str]:
    aliases = list(backends) if backends is not None else list(roan_settings.BACKENDS)
    for alias in aliases:
        check_alias(alias)
    return aliases


def _submit_tags(
    tags: list[str], aliases: list[str], *, trigger: str, user: Any, model: Any = None
) -> int:
    """Purge ``tags``, :data:`tag_index.LOOKUP_CHUNK` of them per event (each event has
    its own ``ROAN_MAX_URLS_PER_EVENT``), so that a script's big purge is sent whole."""
    from django.contrib.contenttypes.models import ContentType

    user_id = getattr(user, "pk", None) if user is not None else context.current_user_id()
    origin = Cause(
        trigger=trigger,
        user_id=user_id,
        content_type_id=ContentType.objects.get_for_model(model).pk if model else None,
    )
    written = 0
    step = tag_index.LOOKUP_CHUNK
    for start in range(0, len(tags), step):
        chunk = tags[start : start + step]
        written += tag_purges.submit_tags(chunk, origin, aliases)
    return written


def purge_tags(
    tags: Iterable[str] | str,
    *,
    backends: Iterable[str] | None = None,
    trigger: str = "api",
    user: Any = None,
) -> int:
    if isinstance(tags, str):
        tags = [tags]
    names = list(dict.fromkeys(parse_target(tag, "tag").target for tag in tags))
    return _submit_tags(names, _aliases(backends), trigger=trigger, user=user)


def purge_model(
    model: type[models.Model],
    *,
    backends: Iterable[str] | None = None,
    trigger: str = "api",
    user: Any = None,
) -> int:
    if isinstance(model, models.Model):
        model = type(model)
    # Every page that shows objects of the model carries its list tag (a list) or an
    # object tag (a detail page): the index names the object tags still cached.
    names = [model_tag(model), *tag_index.object_tags_of(model)]
    return _submit_tags(names, _aliases(backends), trigger=trigger, user=user, model=model)
