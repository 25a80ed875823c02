"""What the admin's purge controls do: the plans shown on confirmation pages, then the
purges, written one way (:func:`submit_manual`); the one re-purge (:func:`repurge`), for
the log's action, the attempt page's button and the dashboard's; and the messages
saying what became of them.

Every purge started here is a person's explicit choice, so it names the user, uses the
trigger ``admin``, and is not cut at ``ROAN_MAX_URLS_PER_EVENT`` (that cap guards against
one save exploding; here the editor was shown the count and confirmed it).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import models, router, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from roan import backends as backend_registry
from roan import context
from roan.admin.common import can_purge, can_purge_all, log_url
from roan.backends.base import PREFIX, URL, PurgeRequest, purges_everything
from roan.conf import roan_settings
from roan.models import PurgeAttempt, PurgeRule
from roan.outbox import expansion, pipeline
from roan.outbox.outcome import outcome, outcome_message
from roan.purges import Cause, Purge
from roan.rules import index as rules
from roan.rules import rendering
from roan.rules.access import can_view_model
from roan.rules.templating import MANY, RELATIONS
from roan.vocabulary import Trigger

#: Objects of a rule's model rendered per query when purging a whole rule.
CHUNK = 2000


class Refused(ValueError):
    """A manual purge roan will not write at all; ``str()`` tells the editor why."""


def bounded(purges: Iterable[Purge], *, may_purge_all: bool) -> list[Purge]:
    """``purges`` as a list, or ``Refused``: above ``ROAN_MAX_MANUAL_PURGES``, or purging
    everything without ``may_purge_all``.

    Reads at most one purge past the bound, so a generator over a model's objects is
    never rendered whole.
    """
    limit = max(1, roan_settings.MAX_MANUAL_PURGES)
    taken = list(itertools.islice(purges, limit + 1))
    if len(taken) > limit:
        raise Refused(
            _(
                "This would write more than %(limit)d attempts, the most one manual purge "
                "may (ROAN_MAX_MANUAL_PURGES); nothing was purged. Purge a prefix, select "
                "less, or run roan_purge."
            )
            % {"limit": limit}
        )
    if not may_purge_all and any(purges_everything(p.request) for p in taken):
        raise Refused(
            _(
                "This purges everything (a prefix of / or a whole cache); that needs the "
                "purge_all permission. Nothing was purged."
            )
        )
    return taken


def submit_confirmed(purges: Iterable[Purge], *, may_purge_all: bool = False) -> int:
    """Write ``purges`` in one transaction and send them after it commits.

    Raises ``Refused`` (nothing written) as :func:`bounded` says. ``pipeline.submit``
    caps one call at ``ROAN_MAX_URLS_PER_EVENT``; calling it per chunk of that size lets
    a confirmed purge through whole.
    """
    taken = bounded(purges, may_purge_all=may_purge_all)
    limit = max(1, roan_settings.MAX_URLS_PER_EVENT)
    written = 0
    with transaction.atomic(using=router.db_for_write(PurgeAttempt)):
        for start in range(0, len(taken), limit):
            written += pipeline.submit(taken[start : start + limit])
    return written


@dataclasses.dataclass
class Written:
    """What one manual purge wrote, and whether it is sent from the queue."""

    rows: int
    #: More than ``ROAN_MAX_INLINE_MANUAL_PURGES``: not sent inside the request.
    queued: bool = False
    #: Pending ids this process dispatches once the response is out (inline dispatch).
    held: list[int] = dataclasses.field(default_factory=list)
    #: Every attempt row written or merged into: what the editor is told about.
    ids: list[int] = dataclasses.field(default_factory=list)
    #: Outcomes the request's own sends committed, by id (``collect_written().recorded``).
    recorded: dict[int, tuple[str, str, str]] = dataclasses.field(default_factory=dict)


def submit_manual(request: HttpRequest, purges: Iterable[Purge]) -> Written:
    """The one way an editor's purge is written: ``roan.purge_now`` checked, bounded,
    everything only with ``roan.purge_all``, and large ones sent from the queue.

    Raises ``PermissionDenied``, or ``Refused`` with nothing written.
    """
    if not can_purge(request):
        raise PermissionDenied
    taken = bounded(purges, may_purge_all=can_purge_all(request))
    with context.collect_written() as ids:
        # A tag's pages (an expansion row re-purged) are never sent in the request.
        small = len(taken) <= roan_settings.MAX_INLINE_MANUAL_PURGES
        if small and not any(purge.expands for purge in taken):
            written = Written(submit_confirmed(taken, may_purge_all=True))
        elif roan_settings.DISPATCH == "task":
            # The commit enqueues them, as for any save: a worker sends them.
            written = Written(submit_confirmed(taken, may_purge_all=True), queued=True)
        else:
            with context.hold_dispatch() as held:
                rows = submit_confirmed(taken, may_purge_all=True)
            written = Written(rows, queued=True, held=held)
    written.ids = list(dict.fromkeys(ids))
    written.recorded = ids.recorded
    return written


class SendAfterResponse(HttpResponseRedirect):
    """A redirect that dispatches held attempts when the server closes it.

    WSGI and ASGI servers call ``close()`` once the response has been sent, so the
    editor gets the page at once; rows this cannot send (the process stops first, a
    failure) stay pending for ``roan_dispatch`` and the retries.
    """

    def __init__(self, url: str, held: Sequence[int] = ()) -> None:
        super().__init__(url)
        self.held = list(held)

    def close(self) -> None:
        ids, self.held = self.held, []
        try:
            if ids:
                pipeline.dispatch(ids)
        finally:
            # Last: Django closes the request's database connections here.
            super().close()


def repurge(
    request: HttpRequest,
    attempts: Iterable[PurgeAttempt],
    *,
    back: str,
    log_url: str | None = None,
) -> HttpResponse:
    """Send the attempts' targets again as new attempts; the old rows stay as they were.

    The one re-purge, for the log's action, the attempt page's button and the dashboard's
    (:func:`repurge_view`): ``roan.purge_now``, and ``roan.purge_all`` for an attempt
    that purged everything (kind ``all``, or a prefix of ``/``), which is refused
    otherwise.
    """
    if not can_purge(request):
        raise PermissionDenied
    limit = roan_settings.MAX_MANUAL_PURGES
    rows = list(itertools.islice(attempts, limit + 1))
    if len(rows) > limit:
        messages.error(
            request,
            _("Select at most %(limit)d attempts (ROAN_MAX_MANUAL_PURGES); filter the log.")
            % {"limit": limit},
        )
        return HttpResponseRedirect(back)
    purges: dict[tuple[str, PurgeRequest], Purge] = {}
    refused = 0
    for attempt in rows:
        request_ = PurgeRequest(attempt.kind, attempt.target, attempt.host)
        if purges_everything(request_) and not can_purge_all(request):
            refused += 1
            continue
        origin = Cause(
            trigger=Trigger.ADMIN,
            rule_id=attempt.rule_id,
            rule_name=attempt.rule_name,
            content_type_id=attempt.content_type_id,
            object_pk=attempt.object_pk,
            object_repr=attempt.object_repr,
            user_id=request.user.pk,
        )
        # A row that stood for a tag's pages on a URL-only backend (nginx) is one again.
        expands = expansion.is_expansion(attempt)
        purges.setdefault(
            (attempt.backend, request_),
            Purge(attempt.backend, request_, origin, deferred=expands, expands=expands),
        )
    if refused:
        messages.error(
            request,
            ngettext(
                "%(count)d attempt purged everything; that needs the purge_all permission.",
                "%(count)d attempts purged everything; that needs the purge_all permission.",
                refused,
            )
            % {"count": refused},
        )
    if not purges:
        return HttpResponseRedirect(back)
    try:
        written = submit_manual(request, purges.values())
    except Refused as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(back)
    if len(purges) == 1:
        [(alias, one)] = purges
        lead = _("Re-purging 1 target, %(target)s on %(backend)s:") % {
            "target": f"{one.host}{one.target}" or _("everything"),
            "backend": alias,
        }
    else:
        lead = ngettext(
            "Re-purging %(count)d target:", "Re-purging %(count)d targets:", len(purges)
        ) % {"count": len(purges)}
    tell(request, lead, written, log_url=log_url)
    return SendAfterResponse(back, written.held)


def repurge_view(request: HttpRequest, pk: int, *, site: AdminSite, back: str) -> HttpResponse:
    """A POST re-purging one attempt (the attempt page's and the dashboard's buttons)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    attempt = get_object_or_404(PurgeAttempt, pk=pk)
    return repurge(request, [attempt], back=back, log_url=log_url(site))


def compile_rule(rule: PurgeRule) -> rules.CompiledRule:
    """``rule`` as the index would compile it, enabled or not (raises ``ValueError``)."""
    model = rule.content_type.model_class()
    if model is None:
        raise ValueError(_("The model of this rule is not installed."))
    return rules.compile_row(rule, model)


def aliases_for(rule: rules.CompiledRule) -> tuple[str, ...]:
    return rule.backends or tuple(roan_settings.BACKENDS)


@dataclasses.dataclass
class Line:
    """One row of a preview: a request on one backend, and what roan would do with it."""

    kind: str
    target: str
    backend: str
    nodes: tuple[str, ...]
    #: Why it would be recorded as skipped instead of sent ("" when it is sent).
    skipped: str


def plan_lines(purges: Iterable[Purge]) -> list[Line]:
    """What sending ``purges`` would do, without writing or sending anything."""
    lines: list[Line] = []
    for purge in purges:
        request = purge.request
        problem = getattr(request, "problem", "")
        nodes: tuple[str, ...] = ()
        if not problem:
            try:
                backend = backend_registry.get_backend(purge.backend)
            except ImproperlyConfigured as exc:
                problem = str(exc)
            else:
                problem = backend.refuse(request)
                nodes = backend.nodes
        lines.append(Line(request.kind, request.target, purge.backend, nodes, problem))
    return lines


@dataclasses.dataclass
class BackendLine:
    """Where one target goes: a backend, its nodes, or why it is skipped there."""

    alias: str
    nodes: tuple[str, ...]
    skipped: str

    @property
    def attempts(self) -> int:
        """Rows written: one per node, or one skipped row."""
        return 1 if self.skipped else max(1, len(self.nodes))


@dataclasses.dataclass
class TargetLine:
    """One target an object's rules render, shown once: the rules that name it and the
    backends it goes to."""

    kind: str
    target: str
    host: str
    rules: list[str]
    backends: list[BackendLine]

    @property
    def attempts(self) -> int:
        return sum(b.attempts for b in self.backends)


def unique_purges(purges: Iterable[Purge]) -> list[Purge]:
    """``purges`` without repeats of a (backend, request): the first rule's origin wins,
    as it does when they are written in one transaction."""
    found: dict[tuple[str, PurgeRequest], Purge] = {}
    for purge in purges:
        found.setdefault((purge.backend, purge.request), purge)
    return list(found.values())


def plan_targets(purges: Sequence[Purge]) -> list[TargetLine]:
    """``purges`` grouped by target, each with its rules and backends; nothing sent."""
    targets: dict[tuple[str, str, str], TargetLine] = {}
    seen: set[tuple[str, PurgeRequest]] = set()
    for purge, line in zip(purges, plan_lines(purges), strict=True):
        request = purge.request
        key = (request.kind, request.target, request.host)
        item = targets.setdefault(key, TargetLine(*key, rules=[], backends=[]))
        name = purge.cause.rule_name
        if name and name not in item.rules:
            item.rules.append(name)
        if (purge.backend, request) not in seen:
            seen.add((purge.backend, request))
            item.backends.append(BackendLine(purge.backend, line.nodes, line.skipped))
    return list(targets.values())


def plan_digest(lines: Iterable[TargetLine]) -> str:
    """A fingerprint of what a confirmation page showed, posted back with the form."""
    shown = [
        (line.kind, line.target, line.host, [(b.alias, b.skipped) for b in line.backends])
        for line in lines
    ]
    return hashlib.sha256(repr(shown).encode()).hexdigest()


def object_purges(
    obj: models.Model,
    *,
    user_id: int | None,
    viewer: Any = None,
    left_out: list[tuple[str, str]] | None = None,
) -> list[Purge]:
    """What ``roan.purge_object(obj)`` sends: every rule of its model, as it is now.

    With ``viewer``, a rule reading a model the viewer may not view (``{author.email}``
    without ``view_author``) is not rendered: its (name, reason) goes to ``left_out``.
    Its URLs would show, and be written to the log, data the viewer cannot see.
    """
    fired: list[rules.CompiledRule] = []
    for event in rules.EVENTS:
        for rule in rules.rules_for(type(obj), event):
            if rule not in fired:
                fired.append(rule)
    purges: list[Purge] = []
    for rule in fired:
        hidden = unviewable(viewer, rule) if viewer is not None else None
        if hidden is not None:
            if left_out is not None and (rule.name, cannot_view(hidden)) not in left_out:
                left_out.append((rule.name, cannot_view(hidden)))
            continue
        requests = rendering.render_rule(rule, obj)
        purges += rendering.purges_for(obj, rule, requests, trigger=Trigger.ADMIN, user_id=user_id)
    return purges


# -- "Purge now" on rules ------------------------------------------------------------------


@dataclasses.dataclass
class RulePlan:
    """How much purging a set of rules "now" sends, counted without rendering."""

    #: (rule, compiled rule, URLs it renders over all objects)
    rules: list[tuple[PurgeRule, rules.CompiledRule, int]]
    broken: list[tuple[PurgeRule, str]]
    objects: int
    #: True when a template crosses a many-to-many relation: it may render more URLs.
    at_least: bool
    #: The objects of a model the plan renders (default: every row of it).
    rows: Callable[[type[models.Model]], models.QuerySet[Any]] | None = None

    def objects_of(self, model: type[models.Model]) -> models.QuerySet[Any]:
        return self.rows(model) if self.rows is not None else model._default_manager.all()

    @property
    def urls(self) -> int:
        return sum(n for _r, _c, n in self.rules)

    @property
    def attempts(self) -> int:
        """Attempt rows, one per URL per backend (before fan-out to nodes)."""
        return sum(n * len(aliases_for(c)) for _r, c, n in self.rules)

    @property
    def over_limit(self) -> bool:
        return self.urls > roan_settings.MAX_URLS_PER_EVENT

    @property
    def too_many(self) -> bool:
        """More attempts than one manual purge may write: refused, not confirmed."""
        return self.attempts > roan_settings.MAX_MANUAL_PURGES

    @property
    def everything(self) -> list[PurgeRule]:
        """The rules with a template that purges everything (``/*``)."""
        return [
            rule
            for rule, compiled, _n in self.rules
            if any(
                purges_everything(PurgeRequest(PREFIX, str(t.parts[0])))
                for t in compiled.templates
                if t.is_static and t.prefix
            )
        ]


def plan_rules(
    queryset: Iterable[PurgeRule],
    *,
    user: Any = None,
    rows: Callable[[type[models.Model]], models.QuerySet[Any]] | None = None,
) -> RulePlan:
    """What purging ``queryset`` now sends; with ``user``, a rule on a model the user
    may not view is left out (purging every object of it would reveal how many there are
    and send URLs rendered from data the user cannot see). ``rows`` gives the objects of
    a model to count and render (the admin passes the rows its model admin shows)."""
    planned: list[tuple[PurgeRule, rules.CompiledRule, int]] = []
    broken: list[tuple[PurgeRule, str]] = []
    counts: dict[type[models.Model], int] = {}
    at_least = False
    for rule in queryset:
        try:
            compiled = compile_rule(rule)
        except ValueError as exc:  # TemplateErrors is a ValueError too
            broken.append((rule, str(exc)))
            continue
        hidden = unviewable(user, compiled) if user is not None else None
        if hidden is not None:
            broken.append((rule, cannot_view(hidden)))
            continue
        templated = [t for t in compiled.templates if not t.is_static]
        urls = len(compiled.templates) - len(templated)
        if templated:
            if compiled.model not in counts:
                objects = rows(compiled.model) if rows else compiled.model._default_manager
                counts[compiled.model] = objects.order_by().count()
            urls += len(templated) * counts[compiled.model]
            at_least = at_least or any(
                step.kind in MANY for t in templated for p in t.placeholders for step in p.steps
            )
        planned.append((rule, compiled, urls))
    return RulePlan(planned, broken, sum(counts.values()), at_least, rows)


def rule_purges(plan: RulePlan, *, user_id: int | None) -> Iterator[Purge]:
    """Static templates once per rule; templated ones for every object of the model."""
    for rule, compiled, _urls in plan.rules:
        aliases = aliases_for(compiled)
        origin = Cause(trigger=Trigger.ADMIN, rule_id=rule.pk, rule_name=rule.name, user_id=user_id)
        for template in compiled.templates:
            if template.is_static:
                request = PurgeRequest(PREFIX if template.prefix else URL, str(template.parts[0]))
                for alias in aliases:
                    yield Purge(alias, request, origin)
        templated = dataclasses.replace(
            compiled, templates=tuple(t for t in compiled.templates if not t.is_static)
        )
        if not templated.templates:
            continue
        objects = plan.objects_of(compiled.model)
        for obj in objects.order_by("pk").iterator(chunk_size=CHUNK):
            requests = rendering.render_rule(templated, obj)
            yield from rendering.purges_for(
                obj, templated, requests, trigger=Trigger.ADMIN, user_id=user_id
            )


# -- the rule preview and its test purge ----------------------------------------------------


def models_read(rule: rules.CompiledRule) -> list[type[models.Model]]:
    """The rule's model, then every model its placeholders step into, forward or reverse."""
    found = [rule.model]
    for template in rule.templates:
        for placeholder in template.placeholders:
            current = rule.model
            for step in placeholder.steps:
                if step.kind not in RELATIONS:
                    break
                related = current._meta.get_field(step.name).related_model
                assert isinstance(related, type)  # parse() refused generic relations
                current = related
                if current not in found:
                    found.append(current)
    return found


def unviewable(user: Any, rule: rules.CompiledRule) -> type[models.Model] | None:
    """The first model ``rule`` reads that ``user`` may not view (``None``: all viewable).

    A preview or a purge shows what the rule renders, so through ``{author.email}`` it
    would list the e-mail of every author: the related models count too.
    """
    for model in models_read(rule):
        if not can_view_model(user, model):
            return model
    return None


def cannot_view(model: type[models.Model]) -> str:
    return _("You do not have permission to view %(models)s.") % {
        "models": model._meta.verbose_name_plural
    }


def preview_rule(rule: PurgeRule, obj: models.Model) -> list[Line]:
    compiled = compile_rule(rule)
    requests = rendering.render_rule(compiled, obj)
    return plan_lines(rendering.purges_for(obj, compiled, requests, trigger=Trigger.ADMIN))


def send_test_purge(
    rule: PurgeRule, obj: models.Model, *, user_id: int | None, may_purge_all: bool = False
) -> list[PurgeAttempt]:
    """Really send what ``rule`` renders for ``obj``; return the attempts it wrote.

    A rendered purge of everything (``/*``) is sent only when ``may_purge_all``; else
    ``Refused`` is raised and nothing is written.
    """
    compiled = compile_rule(rule)
    requests = rendering.render_rule(compiled, obj)
    started = timezone.now() - datetime.timedelta(seconds=1)
    with context.acting_user_lookup(user_id):
        submit_confirmed(
            rendering.purges_for(obj, compiled, requests, trigger=Trigger.ADMIN, user_id=user_id),
            may_purge_all=may_purge_all,
        )
    # Found by what wrote them (the rule, the object, this moment): every request has a
    # row of its own, whatever the sender merged.
    return list(
        PurgeAttempt.objects.filter(
            rule_id=rule.pk,
            trigger=Trigger.ADMIN,
            object_pk=str(obj.pk),
            updated_at__gte=started,
        ).order_by("backend", "node", "target")
    )


# -- telling the editor what happened ---------------------------------------------------------


def tell(request: HttpRequest, lead: str, written: Written, *, log_url: str | None) -> None:
    """Add the message saying what became of a manual purge."""
    text, level = outcome_message(
        lead, outcome(written.ids, written.recorded), log_url=log_url, queued=written.queued
    )
    messages.add_message(request, level, text)
