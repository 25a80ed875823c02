"""Validation of rules, shared by ``PurgeRule.clean()`` (``full_clean``), imports and the
admin's forms (which live in ``roan.admin.forms``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from roan.backends.base import PREFIX, PurgeRequest, purges_everything
from roan.conf import roan_settings
from roan.rules.access import rule_model_refusal
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
