"""The code behind roan's public functions (``roan.purge_urls``, ``roan.purge_object``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.db import models

from roan import pipeline, rules
from roan.backends.base import KINDS, PurgeRequest
from roan.conf import roan_settings
from roan.models import PurgeAttempt
from roan.templating import MAX_LENGTH, has_dot_segment

_CONTROL = {chr(c) for c in range(0x21)} | {"\x7f"}


def _column_length(name: str) -> int:
    """The ``max_length`` of an attempt's text column: what PostgreSQL would refuse."""
    field = PurgeAttempt._meta.get_field(name)
    assert isinstance(field, models.CharField) and field.max_length is not None
    return int(field.max_length)


def parse_target(value: str, kind: str) -> PurgeRequest:
    """A request from what a person or program typed: a path, a URL, a prefix or a tag.

    Raises ``ValueError`` saying what is wrong; whatever it returns fits the attempt
    table's columns, on every database.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    value = value.strip()
    if kind == "all":
        return PurgeRequest("all", "")
    if not value:
        raise ValueError("empty target")
    longest = min(MAX_LENGTH, _column_length("target"))
    if len(value) > longest:
        raise ValueError(f"longer than {longest} characters")
    if any(ch in _CONTROL for ch in value):
        raise ValueError(f"{value[:80]!r} contains spaces or control characters")
    if kind == "tag":
        return PurgeRequest("tag", value)
    host = ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"{value[:80]!r} is not an http(s) URL or a path")
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        if len(host) > (longest_host := _column_length("host")):
            raise ValueError(f"the host {host[:40]!r}... is longer than {longest_host} characters")
        value = parts.path or "/"
        if parts.query:
            value += "?" + parts.query
    if not value.startswith("/") or value.startswith("//"):
        raise ValueError(f"{value[:80]!r} is not a path starting with '/'")
    value = value.split("#", 1)[0]
    if kind == "prefix":
        value = value.removesuffix("*")
    if has_dot_segment(value):
        raise ValueError(
            f"{value[:80]!r} has a '.' or '..' segment (or %2E), which caches resolve to "
            "another path"
        )
    return PurgeRequest(kind, value, host)


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
    aliases = list(backends) if backends is not None else list(roan_settings.BACKENDS)
    longest_alias = _column_length("backend")
    for alias in aliases:
        if len(alias) > longest_alias:
            raise ValueError(f"backend alias {alias[:40]!r}... is longer than {longest_alias}")
    user_id = getattr(user, "pk", None) if user is not None else pipeline.current_user_id()
    origin = pipeline.Origin(trigger=trigger, user_id=user_id)
    return pipeline.submit(
        pipeline.Purge(alias, request, origin) for alias in aliases for request in requests
    )


def purge_object(obj: models.Model, *, trigger: str = "api", user: Any = None) -> int:
    fired: list[rules.CompiledRule] = []
    for event in rules.EVENTS:
        for rule in rules.rules_for(type(obj), event):
            if rule not in fired:
                fired.append(rule)
    user_id = getattr(user, "pk", None) if user is not None else None
    purges: list[pipeline.Purge] = []
    for rule in fired:
        requests = pipeline.render_rule(rule, obj)
        purges += pipeline.purges_for(obj, rule, requests, trigger=trigger, user_id=user_id)
    written = pipeline.submit(purges)
    if roan_settings.TAGS:
        # As if it were saved: with automatic tags, its pages are found by its tags too.
        from django.contrib.contenttypes.models import ContentType

        from roan import tag_index
        from roan.receivers import _tags_of

        origin = pipeline.Origin(
            trigger=trigger,
            content_type_id=ContentType.objects.get_for_model(obj).pk,
            object_pk=str(obj.pk),
            object_repr=pipeline._safe_repr(obj),
            user_id=user_id if user_id is not None else pipeline.current_user_id(),
        )
        tags = _tags_of(type(obj), [obj.pk])
        written += tag_index.submit_tags(tags, origin, roan_settings.BACKENDS)
    return written


def _aliases(backends: Iterable[str] | None) -> list[str]:
    aliases = list(backends) if backends is not None else list(roan_settings.BACKENDS)
    longest_alias = _column_length("backend")
    for alias in aliases:
        if len(alias) > longest_alias:
            raise ValueError(f"backend alias {alias[:40]!r}... is longer than {longest_alias}")
    return aliases


def _submit_tags(
    tags: list[str], aliases: list[str], *, trigger: str, user: Any, model: Any = None
) -> int:
    """Purge ``tags``, :data:`tag_index.LOOKUP_CHUNK` of them per event (each event has
    its own ``ROAN_MAX_URLS_PER_EVENT``), so that a script's big purge is sent whole."""
    from django.contrib.contenttypes.models import ContentType

    from roan import tag_index

    user_id = getattr(user, "pk", None) if user is not None else pipeline.current_user_id()
    origin = pipeline.Origin(
        trigger=trigger,
        user_id=user_id,
        content_type_id=ContentType.objects.get_for_model(model).pk if model else None,
    )
    written = 0
    step = tag_index.LOOKUP_CHUNK
    for start in range(0, len(tags), step):
        chunk = tags[start : start + step]
        written += tag_index.submit_tags(chunk, origin, aliases)
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
    from roan import tag_index
    from roan.tags import model_tag

    if isinstance(model, models.Model):
        model = type(model)
    # Every page that shows objects of the model carries its list tag (a list) or an
    # object tag (a detail page): the index names the object tags still cached.
    names = [model_tag(model), *tag_index.object_tags_of(model)]
    return _submit_tags(names, _aliases(backends), trigger=trigger, user=user, model=model)
