"""Validation of rules, shared by ``PurgeRule.clean()`` (``full_clean``), imports and the
admin's forms (which live in ``roan.admin.forms``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models
from django.utils.translation import gettext as _

from roan.backends.base import PREFIX, PurgeRequest, purges_everything
from roan.conf import roan_settings
from roan.rules.access import is_private_field, rule_model_refusal
from roan.rules.templating import RELATIONS, TemplateErrors, parse_lines

if TYPE_CHECKING:
    from roan.models import PurgeRule


def clean_rule(rule: PurgeRule) -> None:
    """Raise ``ValidationError`` (by field) unless ``rule`` can be compiled and sent."""
    errors: dict[str, list[str]] = {}
    model = rule.content_type.model_class() if rule.content_type_id else None
    if rule.content_type_id and model is None:
        errors["content_type"] = [_("This model is not installed.")]
    refusal = rule_model_refusal(model) if model is not None else ""
    if refusal:
        errors["content_type"] = [refusal]
    elif model is not None:
        try:
            parse_lines(rule.templates or "", model)
        except TemplateErrors as exc:
            errors["templates"] = [str(e) for e in exc.errors]
    if model is not None and not refusal:
        problems = schedule_field_problems(model, rule.schedule_names)
        if problems:
            errors["schedule_fields"] = problems
    if not isinstance(rule.backends, list) or not all(isinstance(b, str) for b in rule.backends):
        errors["backends"] = [_('Give a list of backend aliases, such as ["nginx"].')]
    else:
        known = set(roan_settings.BACKENDS)
        unknown = [b for b in rule.backends if b not in known]
        if unknown:
            errors["backends"] = [
                _("Unknown backend(s): %(unknown)s. Configured: %(known)s.")
                % {"unknown": ", ".join(unknown), "known": ", ".join(sorted(known)) or "-"}
            ]
    if not (rule.on_save or rule.on_delete or rule.on_m2m):
        errors["on_save"] = [_("Choose at least one event.")]
    if errors:
        raise ValidationError(errors)


#: The most datetime fields one rule may schedule purges by (each save writes a set of
#: scheduled attempts per field).
MAX_SCHEDULE_FIELDS = 4


def schedule_field_problems(model: type[models.Model], names: list[str]) -> list[str]:
    """Why ``names`` cannot be a rule's ``schedule_fields`` on ``model`` (``[]`` if they
    can): each must be a date and time field of the model itself, at most
    ``MAX_SCHEDULE_FIELDS`` of them."""
    problems: list[str] = []
    if len(names) > MAX_SCHEDULE_FIELDS:
        problems.append(
            _("Name at most %(count)d fields.") % {"count": MAX_SCHEDULE_FIELDS},
        )
    for name in names[: MAX_SCHEDULE_FIELDS + 1]:
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            field = None
        if field is not None and is_private_field(model, field):
            field = None
        if not isinstance(field, models.DateTimeField) or not field.concrete:
            problems.append(
                _("%(name)s is not a date and time field of %(model)s.")
                % {"name": name[:100], "model": model._meta.verbose_name}
            )
    return problems


def m2m_placeholders(rule: PurgeRule) -> list[str]:
    """The placeholders of ``rule`` that read a many-to-many relation (either side):
    a change to that relation is an m2m event, not a save of the rule's model."""
    model = rule.content_type.model_class() if rule.content_type_id else None
    if model is None:
        return []
    try:
        templates = parse_lines(rule.templates or "", model)
    except TemplateErrors:
        return []
    found: list[str] = []
    for template in templates:
        for placeholder in template.placeholders:
            current: Any = model
            for step in placeholder.steps:
                if step.kind not in RELATIONS:
                    break
                field = current._meta.get_field(step.name)
                if field.many_to_many:
                    found.append(f"{{{placeholder.source}}}")
                    break
                current = field.related_model
    return list(dict.fromkeys(found))


def m2m_warning(rule: PurgeRule) -> str:
    """Why ``rule`` would miss changes to a many-to-many relation it reads ("" if it won't)."""
    if rule.on_m2m:
        return ""
    found = m2m_placeholders(rule)
    if not found:
        return ""
    return _(
        "%(placeholders)s read a many-to-many relation. Adding or removing a related object "
        "(such as a tag on a post) is not a save: this rule purges for it only with “On "
        "many-to-many change” ticked."
    ) % {"placeholders": ", ".join(found)}


def everything_templates(text: str) -> list[str]:
    """The lines of a rule's templates that purge everything (``/*``, a prefix of ``/``)."""
    lines = [line.strip() for line in text.splitlines()]
    return [
        line
        for line in lines
        if line.endswith("*") and purges_everything(PurgeRequest(PREFIX, line[:-1]))
    ]


def needs_purge_all_error(templates: list[str]) -> ValidationError:
    return ValidationError(
        _(
            "%(templates)s purges everything on the site; only a user with the "
            "purge_all permission may save a rule with it."
        ),
        params={"templates": ", ".join(templates)},
        code="purge_all",
    )
