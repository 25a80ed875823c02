"""Validation of rules (shared by the admin, imports and ``full_clean``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from roan.conf import roan_settings
from roan.templating import TemplateErrors, parse_lines

if TYPE_CHECKING:
    from roan.models import PurgeRule


def clean_rule(rule: PurgeRule) -> None:
    """Raise ``ValidationError`` (by field) unless ``rule`` can be compiled and sent."""
    errors: dict[str, list[str]] = {}
    model = rule.content_type.model_class() if rule.content_type_id else None
    if rule.content_type_id and model is None:
        errors["content_type"] = [_("This model is not installed.")]
    if model is not None:
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


class BackendsField(forms.MultipleChoiceField):
    """The rule's backends as checkboxes of the configured aliases."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.choices = [(alias, alias) for alias in roan_settings.BACKENDS]


class PurgeRuleForm(forms.ModelForm):  # type: ignore[type-arg]
    backends = BackendsField(help_text="None checked means every backend.")

    class Meta:
        fields = [
            "name",
            "content_type",
            "templates",
            "backends",
            "enabled",
            "on_save",
            "on_delete",
            "on_m2m",
            "description",
        ]
        widgets = {
            "templates": forms.Textarea(attrs={"rows": 5, "cols": 80, "spellcheck": "false"})
        }
