"""Purge rules in the admin: the list (with each rule's last 24 hours), the form (with
the placeholders a rule's model offers), the actions (enable, disable, purge now) and
the preview that renders a rule for one object and may send it as a test.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import AdminSite
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator, capfirst
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from import_export.admin import ImportExportModelAdmin
from import_export.formats import base_formats

from roan.admin import operations
from roan.admin.common import (
    CHOICE_CHARS,
    QUERY_CHARS,
    TEMPLATE_CHARS,
    breadcrumbs,
    can_purge,
    can_purge_all,
    log_url,
    page,
    visible_objects,
)
from roan.admin.forms import BoundedImportForm, PreviewForm, PurgeRuleForm
from roan.conf import roan_settings
from roan.models import PurgeAttempt, PurgeRule
from roan.resources import PurgeRuleResource
from roan.rules import index as rule_index
from roan.rules.access import allowed_models, can_view_model, rule_model_refusal
from roan.rules.templating import usable_placeholders
from roan.rules.validation import everything_templates, m2m_warning
from roan.vocabulary import FAILING_STATUSES

#: Objects the rule preview offers to pick from (the newest, or a search's matches).
PREVIEW_CHOICES = 50

#: Templates the rules list shows per rule; the rule's page has them all.
TEMPLATES_SHOWN = 3


def _breakable(template: str) -> str:
    """``template`` as HTML that may wrap after a "/" but never inside ``{...}``."""
    parts = []
    for piece in re.split(r"(\{[^}]*\}?)", template):
        if piece.startswith("{"):
            parts.append(format_html('<span class="roan-placeholder">{}</span>', piece))
        else:
            parts.append(
                format_html_join(mark_safe("/<wbr>"), "{}", ((p,) for p in piece.split("/")))
            )
    return format_html_join("", "{}", ((p,) for p in parts))


@admin.action(description=gettext_lazy("Enable selected rules"), permissions=["change"])
def enable_rules(modeladmin: PurgeRuleAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    if not can_purge_all(request):
        # Enabling a "/*" rule makes every save purge everything: like saving one.
        everything = [
            pk for pk, text in queryset.values_list("pk", "templates") if everything_templates(text)
        ]
        if everything:
            modeladmin.message_user(
                request,
                ngettext(
                    "%(count)d rule purges everything (/*); enabling it needs the purge_all "
                    "permission.",
                    "%(count)d rules purge everything (/*); enabling them needs the purge_all "
                    "permission.",
                    len(everything),
                )
                % {"count": len(everything)},
                messages.ERROR,
            )
            queryset = queryset.exclude(pk__in=everything)
    count = queryset.update(enabled=True)
    modeladmin.message_user(
        request,
        ngettext("%(count)d rule enabled.", "%(count)d rules enabled.", count) % {"count": count},
        messages.SUCCESS,
    )


@admin.action(description=gettext_lazy("Disable selected rules"), permissions=["change"])
def disable_rules(
    modeladmin: PurgeRuleAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> None:
    count = queryset.update(enabled=False)
    modeladmin.message_user(
        request,
        ngettext("%(count)d rule disabled.", "%(count)d rules disabled.", count) % {"count": count},
        messages.SUCCESS,
    )


@admin.action(description=gettext_lazy("Purge now"), permissions=["purge_now"])
def purge_rules_now(
    modeladmin: PurgeRuleAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponse | None:
    """Static templates once; templated ones for every object, after a confirmation page."""
    plan = operations.plan_rules(
        queryset.select_related("content_type"),
        user=request.user,
        # The objects each model's admin shows this user, as in the preview.
        rows=lambda model: visible_objects(modeladmin.admin_site, request, model),
    )
    if plan.everything and not can_purge_all(request):
        modeladmin.message_user(
            request,
            _(
                "%(rules)s purge(s) everything (/*); purging that now needs the purge_all "
                "permission. Nothing was purged."
            )
            % {"rules": ", ".join(f"“{rule}”" for rule in plan.everything)},
            messages.ERROR,
        )
        return None
    confirmed = request.POST.get("post") == "yes"
    over_limit_ok = not plan.over_limit or request.POST.get("confirm_over_limit") == "yes"
    if confirmed and over_limit_ok and plan.rules and not plan.too_many:
        try:
            written = operations.submit_manual(
                request, operations.rule_purges(plan, user_id=request.user.pk)
            )
        except operations.Refused as exc:  # many-to-many templates rendered past the bound
            modeladmin.message_user(request, str(exc), messages.ERROR)
            return None
        lead = ngettext("Purging %(rules)d rule:", "Purging %(rules)d rules:", len(plan.rules))
        operations.tell(
            request,
            lead % {"rules": len(plan.rules)},
            written,
            log_url=log_url(modeladmin.admin_site),
        )
        return operations.SendAfterResponse(request.get_full_path(), written.held)
    site = modeladmin.admin_site
    context = {
        **site.each_context(request),
        **breadcrumbs(site, "roan", changelist_crumb(site), ("", _("Purge now"))),
        "title": _("Purge these rules now?"),
        "opts": modeladmin.opts,
        "plan": plan,
        "limit": roan_settings.MAX_URLS_PER_EVENT,
        "max_manual": roan_settings.MAX_MANUAL_PURGES,
        "queryset": queryset,
        "missing_over_limit": confirmed and not over_limit_ok,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/roan/purge_rules_confirmation.html", context)


def changelist_crumb(site: AdminSite) -> tuple[str, Any]:
    return (
        reverse(f"{site.name}:roan_purgerule_changelist"),
        capfirst(PurgeRule._meta.verbose_name_plural),
    )


class BackendFilter(admin.SimpleListFilter):
    """Rules that purge on a backend: those naming it, and those naming none (all)."""

    title = gettext_lazy("backend")
    parameter_name = "backend"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(alias, alias) for alias in roan_settings.BACKENDS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        alias = self.value()
        if not alias:
            return queryset
        # JSON containment is not portable (SQLite lacks it) and rules are few: filter
        # the small table in Python.
        pks = [
            pk
            for pk, names in queryset.values_list("pk", "backends")
            if not names or alias in names
        ]
        return queryset.filter(pk__in=pks)


class ModelFilter(admin.RelatedOnlyFieldListFilter):
    """The models rules name, labelled as the list's column labels them ("Author", not
    the content type's "Blog | author")."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[Any]:
        choices = []
        for pk, name in super().field_choices(field, request, model_admin):
            content_type = ContentType.objects.get_for_id(int(pk))
            model = content_type.model_class()
            choices.append((pk, capfirst(str(model._meta.verbose_name)) if model else name))
        return choices


class PurgeRuleAdmin(ImportExportModelAdmin):  # type: ignore[misc]
    form = PurgeRuleForm
    resource_classes = [PurgeRuleResource]
    import_formats = [base_formats.CSV, base_formats.JSON, base_formats.YAML, base_formats.XLSX]
    # Refuses a file too large or too long before import-export parses it.
    import_form_class = BoundedImportForm
    export_formats = [base_formats.CSV, base_formats.JSON, base_formats.YAML, base_formats.XLSX]
    # import-export wraps change_list_template in its own; roan's sits outermost so that
    # its object tools show next to Import and Export.
    import_export_change_list_template = "admin/roan/purgerule/change_list.html"
    # import-export's pages plus roan's stylesheet (breadcrumbs on Django 6, row errors).
    import_template_name = "admin/roan/import.html"
    export_template_name = "admin/roan/export.html"
    change_form_template = "admin/roan/purgerule/change_form.html"
    # Five columns with quiet second lines, to fit beside the sidebars at 1280 px.
    list_display = ["rule_name", "short_templates", "fires_on", "enabled", "activity"]
    list_display_links = ["rule_name"]
    list_filter = [("content_type", ModelFilter), "enabled", BackendFilter]
    list_select_related = ["content_type"]
    search_fields = ["name", "templates", "description"]
    actions = [enable_rules, disable_rules, purge_rules_now]
    fieldsets = [
        (None, {"fields": ["name", "content_type", "templates", "backends", "enabled"]}),
        (gettext_lazy("Events"), {"fields": ["on_save", "on_delete", "on_m2m", "schedule_fields"]}),
        (gettext_lazy("Notes"), {"fields": ["description"], "classes": ["collapse"]}),
    ]

    class Media:
        css = {"all": ["roan/admin.css"]}

    def has_purge_now_permission(self, request: HttpRequest) -> bool:
        return can_purge(request)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        # get_form() builds a new class per call, so this stays with this request.
        form.may_purge_all = can_purge_all(request)
        return form

    def has_import_permission(self, request: HttpRequest) -> bool:
        # import-export lets anyone import unless told otherwise; an import adds and
        # changes rules, so it takes both permissions.
        return bool(self.has_add_permission(request) and self.has_change_permission(request))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "content_type":
            kwargs["queryset"] = rule_content_types(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        since = timezone.now() - datetime.timedelta(hours=24)
        # Correlated subqueries per row of one page: each is an index range scan on
        # roan_attempt_rule (rule, -created_at), however long the log is.
        attempts = PurgeAttempt.objects.filter(rule=OuterRef("pk")).order_by()
        recent = attempts.filter(created_at__gte=since).values("rule")

        def count(qs: QuerySet[Any]) -> Coalesce:
            return Coalesce(
                Subquery(qs.annotate(n=Count("pk")).values("n"), output_field=IntegerField()), 0
            )

        queryset: QuerySet[Any] = super().get_queryset(request)
        annotated: QuerySet[Any] = queryset.annotate(
            last_fired_at=Subquery(attempts.order_by("-created_at").values("created_at")[:1]),
            purges_in_24h=count(recent),
            failures_in_24h=count(recent.filter(status__in=FAILING_STATUSES)),
        )
        return annotated

    @admin.display(description=gettext_lazy("rule"), ordering="name")
    def rule_name(self, rule: PurgeRule) -> str:
        model = rule.content_type.model_class()
        label = capfirst(str(model._meta.verbose_name)) if model else rule.content_type.model
        return format_html('{}<span class="roan-sub">{}</span>', rule.name, label)

    @admin.display(description=gettext_lazy("fires on"))
    def fires_on(self, rule: PurgeRule) -> str:
        return format_html(
            '{}<span class="roan-sub">{}</span>',
            self.events(rule),
            _("backends: %(list)s") % {"list": self.backend_list(rule)},
        )

    @admin.display(description=gettext_lazy("last fired, 24 h"), ordering="last_fired_at")
    def activity(self, rule: PurgeRule) -> str:
        return format_html(
            '{}<span class="roan-sub">{}</span>', self.last_fired(rule), self.recent(rule)
        )

    @admin.display(description=gettext_lazy("events"))
    def events(self, rule: PurgeRule) -> str:
        names = [
            str(label)
            for label, on in (
                (_("save"), rule.on_save),
                (_("delete"), rule.on_delete),
                (_("m2m"), rule.on_m2m),
            )
            if on
        ]
        return ", ".join(names)

    @admin.display(description=gettext_lazy("URL templates"))
    def short_templates(self, rule: PurgeRule) -> str:
        """One template per line, breaking only after a "/", never inside a placeholder."""
        lines = rule.template_lines
        shown = [
            _breakable(Truncator(line).chars(TEMPLATE_CHARS)) for line in lines[:TEMPLATES_SHOWN]
        ]
        html = format_html_join("", '<span class="roan-template">{}</span>', ((x,) for x in shown))
        more = len(lines) - TEMPLATES_SHOWN
        if more > 0:
            html += format_html(
                '<span class="roan-sub">{}</span>',
                ngettext("and %(n)d more", "and %(n)d more", more) % {"n": more},
            )
        return html

    @admin.display(description=gettext_lazy("backends"))
    def backend_list(self, rule: PurgeRule) -> str:
        return ", ".join(rule.backends) if rule.backends else _("all")

    @admin.display(description=gettext_lazy("last fired"), ordering="last_fired_at")
    def last_fired(self, rule: PurgeRule) -> str:
        when: datetime.datetime | None = rule.last_fired_at  # type: ignore[attr-defined]
        if when is None:
            return "-"
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            when.isoformat(),
            date_format(timezone.localtime(when), "DATETIME_FORMAT"),
            _("%(time)s ago") % {"time": timesince(when, depth=1)},
        )

    @admin.display(description=gettext_lazy("24 h"), ordering="purges_in_24h")
    def recent(self, rule: PurgeRule) -> str:
        """How often the rule purged in the last 24 hours, and how much of it failed."""
        total: int = rule.purges_in_24h  # type: ignore[attr-defined]
        failed: int = rule.failures_in_24h  # type: ignore[attr-defined]
        purges = ngettext("%(n)d purge", "%(n)d purges", total) % {"n": total}
        if not total:
            return purges.replace(" ", "\N{NO-BREAK SPACE}")
        rate = _("%(rate).0f %% failed") % {"rate": 100 * failed / total}
        # Each half stays on one line when the column wraps.
        return f"{purges}, {rate}".replace(" ", "\N{NO-BREAK SPACE}").replace(
            ",\N{NO-BREAK SPACE}", ", "
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        code = [
            {
                "url": code.url,
                "model": code.model if isinstance(code.model, str) else code.model._meta.label,
                "event": code.event,
            }
            for code in rule_index.code_rules()
        ]
        extra = {
            "roan_code_rules": code,
            "roan_can_purge": can_purge(request),
            "roan_broken": rule_index.get_index().broken,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra)  # type: ignore[no-any-return]

    def save_model(self, request: HttpRequest, obj: PurgeRule, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        warning = m2m_warning(obj)
        if warning:
            self.message_user(request, warning, messages.WARNING)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        context["roan_can_purge"] = can_purge(request)
        form = context.get("adminform")
        if form is not None and form.form.instance.content_type_id:
            context["roan_m2m_warning"] = m2m_warning(form.form.instance)
        chosen = _chosen_content_type(form.form) if form is not None else None
        context["roan_placeholders"] = _placeholder_list(request, chosen)
        info = self.opts.app_label, self.opts.model_name
        context["roan_placeholders_url"] = reverse(
            "admin:{}_{}_placeholders".format(*info), current_app=self.admin_site.name
        )
        return super().render_change_form(request, context, *args, **kwargs)  # type: ignore[no-any-return]

    def placeholders_view(self, request: HttpRequest) -> HttpResponse:
        """The placeholders a rule on ``?content_type=<id>`` may use, as JSON, for the form."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        try:
            content_type_id = int(request.GET.get("content_type", ""))
        except ValueError:
            return JsonResponse({"error": "content_type must be an id"}, status=400)
        listing = _placeholder_list(request, content_type_id)
        if listing is None:
            # Not a model this user may name in a rule (ROAN_RULE_MODELS, view permission).
            raise PermissionDenied
        return JsonResponse(listing)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            page(
                self.admin_site,
                "placeholders/",
                self.placeholders_view,
                "{}_{}_placeholders".format(*info),
            ),
            page(
                self.admin_site,
                "preview/",
                self.draft_preview_view,
                "{}_{}_draft_preview".format(*info),
            ),
            page(
                self.admin_site,
                "<path:object_id>/preview/",
                self.preview_view,
                "{}_{}_preview".format(*info),
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Render a rule for one object without sending; POST sends it as a test."""
        rule = get_object_or_404(PurgeRule.objects.select_related("content_type"), pk=object_id)
        if not self.has_view_or_change_permission(request, rule):
            raise PermissionDenied
        if request.method == "POST" and not can_purge(request):
            raise PermissionDenied
        return self.render_preview(request, rule)

    def draft_preview_view(self, request: HttpRequest) -> HttpResponse:
        """The rule form's "Preview" button: the rule as the form stands, not saved.

        The form is posted here (``?rule=<pk>`` when it edits a saved rule) and validated
        as a save would; the page carries its fields along while an object is chosen.
        Nothing is written and nothing sent (a test purge needs the saved rule).
        """
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        rule_pk = request.GET.get("rule", "")
        saved = None
        if rule_pk:
            if not rule_pk.isdigit():
                raise Http404
            saved = get_object_or_404(PurgeRule, pk=rule_pk)
            if not self.has_change_permission(request, saved):
                raise PermissionDenied
        elif not self.has_add_permission(request):
            raise PermissionDenied
        form = self.get_form(request, saved, change=saved is not None)(request.POST, instance=saved)
        fields = [(name, value) for name in form.fields for value in request.POST.getlist(name)]
        action = reverse(f"{self.admin_site.name}:roan_purgerule_draft_preview")
        if saved is not None:
            action += f"?rule={saved.pk}"
        draft = {"fields": fields, "action": action}
        if not form.is_valid():
            errors = [
                f"{form.fields[name].label}: {' '.join(said)}"
                if name in form.fields
                else " ".join(said)
                for name, said in form.errors.items()
            ]
            return self.render_preview(
                request,
                None,
                draft=draft,
                problem=_("Fix the form first.") + " " + " ".join(errors),
            )
        # The form's instance holds the posted values; it is never saved here.
        return self.render_preview(request, form.instance, draft=draft)

    def render_preview(
        self,
        request: HttpRequest,
        rule: PurgeRule | None,
        *,
        draft: dict[str, Any] | None = None,
        problem: str = "",
    ) -> HttpResponse:
        """The preview page of ``rule`` (saved, or a ``draft`` of the form: ``None`` when
        the form did not validate, with its ``problem``)."""
        model = rule.content_type.model_class() if rule is not None else None
        if model is not None and not can_view_model(request.user, model):
            # The preview lists objects and renders their fields: only for those who
            # may see them anyway.
            raise PermissionDenied
        compiled = None
        if rule is not None and model is not None:
            try:
                compiled = operations.compile_rule(rule)
            except ValueError:
                compiled = None  # shown as the page's problem below
        if compiled is not None and operations.unviewable(request.user, compiled) is not None:
            raise PermissionDenied
        if rule is not None and not problem:
            missing = _("The model of this rule is not installed.")
            problem = rule_model_refusal(model) if model else missing
        # A model rules may not name is never rendered, nor are its objects listed.
        form = None
        params = request.POST if draft is not None else request.GET
        query = params.get("q", "").strip()[:QUERY_CHARS]
        # Only the rows the model's own admin shows this user are listed, searched and
        # rendered (its get_queryset may keep an editor to their own rows).
        visible = visible_objects(self.admin_site, request, model) if model is not None else None
        if rule is not None and model is not None and not problem:
            if draft is not None:
                data = request.POST if "object_id" in request.POST else None
            else:
                data = request.POST or (request.GET if "object_id" in request.GET else None)
            form = PreviewForm(model, data, objects=visible)
        lines: list[operations.Line] = []
        sent: list[PurgeAttempt] = []
        obj = None
        if rule is not None and form is not None and form.is_valid():
            obj = form.cleaned_data["object_id"]
            try:
                if request.method == "POST" and draft is None:
                    sent = operations.send_test_purge(
                        rule, obj, user_id=request.user.pk, may_purge_all=can_purge_all(request)
                    )
                else:
                    lines = operations.preview_rule(rule, obj)
            except ValueError as exc:
                problem = str(exc)
        latest: list[Any] = []
        searchable = False
        if form is not None and model is not None and visible is not None:
            # Pick the object by name: the newest 50, or those the model's own admin
            # search finds (with its search_fields), rather than typing a primary key.
            candidates = visible.order_by("-pk")
            model_admin = self.admin_site._registry.get(model)
            searchable = bool(model_admin and model_admin.get_search_fields(request))
            if query and model_admin is not None and searchable:
                candidates, _dup = model_admin.get_search_results(request, candidates, query)
            latest = list(candidates[:PREVIEW_CHOICES])
            if obj is not None and obj not in latest:
                latest.insert(0, obj)
        site = self.admin_site
        if rule is not None and rule.pk is not None and draft is None:
            change = reverse(f"{site.name}:roan_purgerule_change", args=[rule.pk])
            crumb = (change, Truncator(str(rule)).words(18))
            title = _("Preview: %(rule)s") % {"rule": rule}
        else:
            crumb = ("", _("The form, not saved"))
            title = _("Preview: %(rule)s (not saved)") % {"rule": rule or _("a rule")}
        context = {
            **site.each_context(request),
            **breadcrumbs(site, "roan", changelist_crumb(site), crumb, ("", _("Preview"))),
            "title": title,
            "opts": self.opts,
            "original": rule,
            "model_name": model._meta.verbose_name if model is not None else "",
            "model_plural": model._meta.verbose_name_plural if model is not None else "",
            "draft": draft,
            "form": form,
            "obj": obj,
            "lines": lines,
            "sent": sent,
            "problem": problem,
            "latest": latest,
            "query": query,
            "searchable": searchable,
            "choice_chars": CHOICE_CHARS,
            "roan_can_purge": can_purge(request),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/roan/purgerule/preview.html", context)


def _chosen_content_type(form: Any) -> int | None:
    """The model the rule form is for: the one posted, else the rule's own."""
    value = form.data.get("content_type") if form.is_bound else form.initial.get("content_type")
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _placeholder_list(request: HttpRequest, content_type_id: int | None) -> dict[str, Any] | None:
    """What a rule on that model may name, for the form; ``None`` for a model this user
    may not name in a rule (refused by ``ROAN_RULE_MODELS`` or not viewable)."""
    if content_type_id is None:
        return None
    content_type = rule_content_types(request).filter(pk=content_type_id).first()
    model = content_type.model_class() if content_type is not None else None
    if model is None:
        return None
    groups = usable_placeholders(model, may_view=lambda m: can_view_model(request.user, m))
    return {
        "model": capfirst(str(model._meta.verbose_name)),
        "groups": [
            {
                "title": group.title,
                "many": group.many,
                "placeholders": [{"placeholder": p, "about": a} for p, a in group.placeholders],
            }
            for group in groups
        ],
    }


def rule_content_types(request: HttpRequest) -> QuerySet[ContentType]:
    """The models a rule edited by this user may name: allowed by ``ROAN_RULE_MODELS``
    and viewable by the user."""
    viewable = [m for m in allowed_models() if can_view_model(request.user, m)]
    by_model = ContentType.objects.get_for_models(*viewable, for_concrete_models=False)
    return ContentType.objects.filter(pk__in=[ct.pk for ct in by_model.values()]).order_by(
        "app_label", "model"
    )
