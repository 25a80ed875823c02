"""From a rule and an object to purge requests: render the rule's templates, refuse what
must not be sent, and wrap the requests for each of the rule's backends."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from django.db import models

from roan.backends.base import PREFIX, URL, PurgeRequest, purges_everything
from roan.conf import roan_settings
from roan.purges import Cause, Purge
from roan.rules.index import CompiledRule
from roan.rules.templating import RenderError, Template, has_dot_segment, render
from roan.vocabulary import EVENT_TRIGGERS, Trigger

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Unrenderable(PurgeRequest):
    """A template that rendered to no usable path; recorded as ``skipped`` with why."""

    problem: str = ""


def render_rule(
    rule: CompiledRule, obj: models.Model, *, limit: int | None = None
) -> list[PurgeRequest]:
    """The requests ``rule`` makes for ``obj`` as it is now (no host: the backend's own).

    Each template renders at most ``limit`` paths (``ROAN_MAX_URLS_PER_EVENT`` unless
    given); one that has more stops there and adds one ``Unrenderable`` saying so. A
    template whose rendering raises anything (a ``get_absolute_url`` raising
    ``NoReverseMatch``, a dangling foreign key) becomes one ``Unrenderable`` with the
    reason: the other templates and rules still purge, and the save goes on.
    """
    cap = roan_settings.MAX_URLS_PER_EVENT if limit is None else limit
    requests: list[PurgeRequest] = []
    for template in rule.templates:
        try:
            # One more than the cap tells "exactly the cap" from "more than the cap".
            paths = render(template, obj, limit=max(0, cap) + 1)
        except Exception as exc:
            problem = _render_problem(exc)
            logger.warning(
                "roan: rule %r cannot render %r: %s", rule.name, template.source, problem
            )
            requests.append(Unrenderable(URL, template.source, problem=problem))
            continue
        kind = PREFIX if template.prefix else URL
        cut = len(paths) > cap
        for path in paths[:cap]:
            request = PurgeRequest(kind, path)
            problem = _refused_path(template, request)
            if problem:
                logger.warning("roan: rule %r rendered %r: %s", rule.name, path, problem)
                request = Unrenderable(kind, path, problem=problem)
            requests.append(request)
        if cut:
            problem = (
                f"renders more than ROAN_MAX_URLS_PER_EVENT ({cap}) paths for this object; "
                f"the first {cap} were kept, the others not rendered"
            )
            requests.append(Unrenderable(kind, template.source, problem=problem))
    return requests


def _render_problem(exc: Exception) -> str:
    """Why a template did not render, short enough for the attempt's error column."""
    if isinstance(exc, RenderError):
        return str(exc)
    # The object's own code raised: its type says most; the message is cut short.
    message = " ".join(str(exc).split())[:300]
    name = type(exc).__name__
    return f"rendering raised {name}: {message}" if message else f"rendering raised {name}"


def _refused_path(template: Template, request: PurgeRequest) -> str:
    """Why a rendered path is not sent (``""`` when it is): values come from content."""
    if has_dot_segment(request.target):
        return "the path has a '.' or '..' segment, which caches resolve to another path"
    if purges_everything(request) and not template.is_static:
        # Only the literal template "/*" purges everything, and only a user with
        # roan.purge_all may save it; "{get_absolute_url}*" of a home page may not.
        return "the prefix is '/', which purges everything; only the template '/*' may"
    return ""


def purges_for(
    obj: models.Model,
    rule: CompiledRule,
    requests: Iterable[PurgeRequest],
    *,
    trigger: str,
    user_id: int | None = None,
) -> list[Purge]:
    """Wrap ``requests`` for every backend of ``rule``, with ``obj`` as their origin."""
    origin = Cause.of_object(
        # A save or delete that fires a roan 0.1 rule says so in the log.
        Trigger.CODE_RULE if rule.is_code_rule and trigger in EVENT_TRIGGERS else trigger,
        obj,
        user_id=user_id,
        rule_id=rule.pk,
        rule_name=rule.name,
    )
    aliases = rule.backends or tuple(roan_settings.BACKENDS)
    unique = list(dict.fromkeys(requests))
    return [Purge(alias, request, origin) for alias in aliases for request in unique]
