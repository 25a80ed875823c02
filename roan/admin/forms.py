"""The admin's forms: a rule's, "Purge URLs", "Purge everything" and the rule preview's.

What a rule must satisfy wherever it is saved is ``roan.rules.validation`` (``clean_rule``); these
forms add what only a person in the admin is asked.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, ValidationError
from django.db.models import Model, QuerySet
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export.forms import ImportForm

from roan import backends as backend_registry
from roan.api import parse_target
from roan.backends.base import ALL, PREFIX, TAG, URL, PurgeRequest, purges_everything
from roan.conf import roan_settings
from roan.purges import Cause, Purge
from roan.resources import import_refusal
from roan.rules.validation import everything_templates, needs_purge_all_error
from roan.vocabulary import Trigger


class BackendsField(forms.MultipleChoiceField):
    """The rule's backends as checkboxes of the configured aliases."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.choices = [(alias, alias) for alias in roan_settings.BACKENDS]


class PurgeRuleForm(forms.ModelForm):  # type: ignore[type-arg]
    backends = BackendsField(help_text=gettext_lazy("None checked means every backend."))
    #: May this form save a rule that purges everything? The admin sets it from the
    #: request's user (roan.purge_all); any other use of the form may not.
    may_purge_all: bool = False

    def _post_clean(self) -> None:
        # After the rule's own validation: an error added in clean() would take the
        # templates out of the instance, and clean_rule() would call them missing.
        super()._post_clean()  # type: ignore[misc]
        everything = everything_templates(self.cleaned_data.get("templates") or "")
        if everything and not self.may_purge_all:
            self.add_error("templates", needs_purge_all_error(everything))

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
            "schedule_fields",
            "description",
        ]
        widgets = {
            "templates": forms.Textarea(attrs={"rows": 5, "cols": 80, "spellcheck": "false"})
        }
        help_texts = {
            "enabled": gettext_lazy(
                "Unchecked, the rule is saved but does not fire: preview it, then enable it."
            ),
            # The model's help text predates reverse relations; said here, no migration.
            "templates": gettext_lazy(
                "One path per line, such as /posts/ or /posts/{slug}/. A placeholder is a "
                "field or a path through relations, forward ({author.username}) or reverse "
                "({post.slug} on an author: one URL per post); {get_absolute_url} is the "
                "object's own URL. End a line with * to purge a prefix."
            ),
        }


# -- the admin's purge controls -------------------------------------------------------------


#: A harmless target per kind, to ask a backend whether it would send that kind at all.
_PROBES = {URL: "/", PREFIX: "/roan-probe/", TAG: "roan-probe", ALL: ""}


def kinds_sent(backend: Any) -> list[str]:
    """The kinds ``backend`` really sends: those it declares and does not refuse as
    configured (a Django cache without ``ALLOW_CLEAR`` declares ``all`` but skips it)."""
    return [
        kind
        for kind in sorted(backend.capabilities)
        if not backend.refuse(PurgeRequest(kind, _PROBES.get(kind, "/")))
    ]


def _backend_choices(kind: str | None = None) -> list[tuple[str, str]]:
    """Configured backends (those that send ``kind``), labelled with what they send."""
    choices = []
    for alias in roan_settings.BACKENDS:
        try:
            backend = backend_registry.get_backend(alias)
        except ImproperlyConfigured:
            continue
        kinds = kinds_sent(backend)
        if kind is not None and kind not in kinds:
            continue
        label = alias if backend.label == alias else f"{backend.label} ({alias})"
        can = ", ".join(kinds) or _("nothing")
        choices.append(
            (
                alias,
                _("%(backend)s: %(class)s, can purge by %(kinds)s")
                % {"backend": label, "class": type(backend).__name__, "kinds": can},
            )
        )
    return choices


#: The most characters the "Purge URLs" text may hold.
URLS_MAX_LENGTH = 500_000


class PurgeURLsForm(forms.Form):
    """Purge paths, absolute URLs or prefixes, one per line, on chosen backends.

    ``may_purge_all`` (the user's roan.purge_all) allows a prefix of ``/``.
    """

    urls = forms.CharField(
        label=gettext_lazy("URLs"),
        # The attempts one purge may write are bounded too (ROAN_MAX_MANUAL_PURGES); this
        # keeps a huge paste from being parsed line by line first.
        max_length=URLS_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80, "spellcheck": "false"}),
        help_text=gettext_lazy(
            "One path (/posts/) or URL (https://www.example.com/about/) per line. A URL's "
            "host must be in the backend's HOSTS."
        ),
    )
    kind = forms.ChoiceField(
        label=gettext_lazy("Purge"),
        choices=[
            (URL, gettext_lazy("exactly these URLs")),
            (PREFIX, gettext_lazy("everything under these prefixes")),
        ],
        initial=URL,
        widget=forms.RadioSelect,
    )
    backends = forms.MultipleChoiceField(
        label=gettext_lazy("Backends"), widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args: Any, may_purge_all: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.may_purge_all = may_purge_all
        choices = _backend_choices()
        field = self.fields["backends"]
        assert isinstance(field, forms.MultipleChoiceField)  # for mypy
        field.choices = choices
        field.initial = [alias for alias, _label in choices]
        if not _backend_choices(PREFIX):
            # No configured backend purges prefixes: offer only what can be done.
            kind = self.fields["kind"]
            assert isinstance(kind, forms.ChoiceField)  # for mypy
            kind.choices = [(URL, _("exactly these URLs"))]
            kind.widget = forms.HiddenInput()
            kind.error_messages["invalid_choice"] = _("No configured backend can purge prefixes.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if not kind or "urls" not in data:
            return data
        requests = []
        errors = []
        for number, line in enumerate(data["urls"].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                request = parse_target(line, kind)
            except ValueError as exc:
                errors.append(
                    ValidationError(
                        _("Line %(line)d: %(reason)s"), params={"line": number, "reason": exc}
                    )
                )
                continue
            if purges_everything(request) and not self.may_purge_all:
                errors.append(
                    ValidationError(
                        _(
                            "Line %(line)d: a prefix of / purges everything; that needs the "
                            "purge_all permission."
                        ),
                        params={"line": number},
                    )
                )
            requests.append(request)
        if errors:
            self.add_error("urls", errors)
        elif not requests:
            self.add_error("urls", _("Give at least one URL."))
        data["requests"] = list(dict.fromkeys(requests))
        attempts = len(data["requests"]) * len(data.get("backends", []))
        limit = roan_settings.MAX_MANUAL_PURGES
        if attempts > limit:
            self.add_error(
                "urls",
                _(
                    "That is %(attempts)d attempts (URLs times backends); one purge may "
                    "write at most %(limit)d (ROAN_MAX_MANUAL_PURGES). Purge a prefix, or "
                    "split the list."
                )
                % {"attempts": attempts, "limit": limit},
            )
        unable = [
            alias
            for alias in data.get("backends", [])
            if kind not in kinds_sent(backend_registry.get_backend(alias))
        ]
        if unable:
            self.add_error(
                "backends",
                _("%(backends)s cannot purge by %(kind)s.")
                % {"backends": ", ".join(unable), "kind": kind},
            )
        return data

    def purges(self, *, user_id: int | None) -> list[Purge]:
        origin = Cause(trigger=Trigger.ADMIN, user_id=user_id)
        return [
            Purge(alias, request, origin)
            for alias in self.cleaned_data["backends"]
            for request in self.cleaned_data["requests"]
        ]


class PurgeAllForm(forms.Form):
    """Everything cached on one backend that can do it."""

    backend = forms.ChoiceField(label=gettext_lazy("Backend"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["backend"]
        assert isinstance(field, forms.ChoiceField)  # for mypy
        field.choices = _backend_choices(ALL)


class PreviewForm(forms.Form):
    """The object a rule preview renders for (its primary key, chosen from a list)."""

    object_id = forms.CharField(label=gettext_lazy("Object"), max_length=255)

    def __init__(
        self,
        model: type[Model],
        *args: Any,
        objects: QuerySet[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.model = model
        #: The objects the editor may pick (the model admin's rows); a key outside them
        #: is answered as one that does not exist.
        self.objects = objects if objects is not None else model._default_manager.all()
        self.fields["object_id"].label = capfirst(model._meta.verbose_name)

    def clean_object_id(self) -> Model:
        value = self.cleaned_data["object_id"].strip()
        try:
            found: Model = self.objects.get(pk=value)
            return found
        except (ObjectDoesNotExist, ValueError, ValidationError):
            raise ValidationError(
                _("There is no %(model)s with the key %(pk)s."),
                params={"model": self.model._meta.verbose_name, "pk": value},
            ) from None


class BoundedImportForm(ImportForm):  # type: ignore[misc]
    """import-export's upload form, refusing a file too large or too long before it is
    parsed (``ROAN_MAX_IMPORT_BYTES``, ``ROAN_MAX_IMPORT_ROWS``): a form error, and
    nothing is read further or imported."""

    def __init__(self, formats: list[Any], resources: list[Any], **kwargs: Any) -> None:
        super().__init__(formats, resources, **kwargs)
        self.import_formats = formats

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        upload = data.get("import_file")
        chosen = data.get("format")
        if upload is None or chosen in (None, ""):
            return data
        try:
            title = self.import_formats[int(chosen)]().get_title()
        except (ValueError, IndexError):
            return data
        # One byte past the bound is enough to refuse; the rest is never read.
        upload.seek(0)
        head = upload.read(max(1, roan_settings.MAX_IMPORT_BYTES) + 1)
        upload.seek(0)
        refusal = import_refusal(head, title)
        if refusal:
            self.add_error("import_file", refusal)
        return data
