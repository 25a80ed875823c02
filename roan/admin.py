"""The editor's side: rules, the purge log and "purge now" in the Django admin.

Besides the two model admins, roan mounts its own pages under ``<admin>/roan/`` (see
:data:`ADMIN_PAGES`) on ``django.contrib.admin.site``; a project with its own
``AdminSite`` calls :func:`install_pages` on it. :class:`PurgeCacheMixin` gives a
project's own ``ModelAdmin`` a "Purge cache" action and change-form button.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import AdminSite
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, Max, Min, Model, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, URLResolver, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator, capfirst
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST
from import_export.admin import ExportMixin, ImportExportModelAdmin
from import_export.formats import base_formats

from roan import admin_views as views
from roan import dashboard, limits, pipeline, rules, verify
from roan.access import allowed_models, can_view_model, rule_model_refusal
from roan.admin_views import can_purge, can_purge_all
from roan.conf import roan_settings
from roan.forms import PreviewForm, PurgeRuleForm, everything_templates, m2m_warning
from roan.managers import PurgeAttemptQuerySet
from roan.models import BackendState, PurgeAttempt, PurgeRule, PurgeTry
from roan.outcome import outcome
from roan.resources import PurgeAttemptResource, PurgeRuleResource
from roan.templating import usable_placeholders

FAILING = [PurgeAttempt.Status.FAILED, PurgeAttempt.Status.GAVE_UP]
#: Objects the rule preview offers to pick from (the newest, or a search's matches).
PREVIEW_CHOICES = 50


def _log_url(site: AdminSite) -> str | None:
    """The purge log's address on ``site`` (``None`` when the site does not show it)."""
    try:
        return reverse(f"{site.name}:roan_purgeattempt_changelist")
    except NoReverseMatch:
        return None


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


def exact_time(when: datetime.datetime | None) -> str:
    """A time to the second, in the current time zone ("-" for none)."""
    if when is None:
        return "-"
    return date_format(timezone.localtime(when), "Y-m-d H:i:s")


# -- rules --------------------------------------------------------------------------------


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
    plan = views.plan_rules(queryset.select_related("content_type"), user=request.user)
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
            written = views.submit_manual(request, views.rule_purges(plan, user_id=request.user.pk))
        except views.Refused as exc:  # many-to-many templates rendered past the bound
            modeladmin.message_user(request, str(exc), messages.ERROR)
            return None
        lead = ngettext("Purging %(rules)d rule:", "Purging %(rules)d rules:", len(plan.rules))
        views.tell(
            request,
            lead % {"rules": len(plan.rules)},
            written,
            log_url=_log_url(modeladmin.admin_site),
        )
        return views.SendAfterResponse(request.get_full_path(), written.held)
    context = {
        **modeladmin.admin_site.each_context(request),
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


@admin.register(PurgeRule)
class PurgeRuleAdmin(ImportExportModelAdmin):  # type: ignore[misc]
    form = PurgeRuleForm
    resource_classes = [PurgeRuleResource]
    import_formats = [base_formats.CSV, base_formats.JSON, base_formats.YAML, base_formats.XLSX]
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
    list_filter = [("content_type", admin.RelatedOnlyFieldListFilter), "enabled", BackendFilter]
    list_select_related = ["content_type"]
    search_fields = ["name", "templates", "description"]
    actions = [enable_rules, disable_rules, purge_rules_now]
    fieldsets = [
        (None, {"fields": ["name", "content_type", "templates", "backends", "enabled"]}),
        (gettext_lazy("Events"), {"fields": ["on_save", "on_delete", "on_m2m"]}),
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
            failures_in_24h=count(recent.filter(status__in=FAILING)),
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
        shown = [_breakable(Truncator(line).chars(60)) for line in lines[:TEMPLATES_SHOWN]]
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
            for code in rules.code_rules()
        ]
        extra = {
            "roan_code_rules": code,
            "roan_can_purge": can_purge(request),
            "roan_broken": rules.get_index().broken,
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
            path(
                "placeholders/",
                self.admin_site.admin_view(self.placeholders_view),
                name="{}_{}_placeholders".format(*info),
            ),
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="{}_{}_preview".format(*info),
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
        model = rule.content_type.model_class()
        if model is not None and not can_view_model(request.user, model):
            # The preview lists objects and renders their fields: only for those who
            # may see them anyway.
            raise PermissionDenied
        try:
            compiled = views.compile_rule(rule) if model is not None else None
        except ValueError:
            compiled = None  # shown as the page's problem below
        if compiled is not None and views.unviewable(request.user, compiled) is not None:
            raise PermissionDenied
        missing = _("The model of this rule is not installed.")
        problem = rule_model_refusal(model) if model else missing
        # A model rules may not name is never rendered, nor are its objects listed.
        form = None
        query = request.GET.get("q", "").strip()[:200]
        if model is not None and not problem:
            data = request.POST or (request.GET if "object_id" in request.GET else None)
            form = PreviewForm(model, data)
        lines: list[views.Line] = []
        sent: list[PurgeAttempt] = []
        obj = None
        if form is not None and form.is_valid():
            obj = form.cleaned_data["object_id"]
            try:
                if request.method == "POST":
                    sent = views.send_test_purge(
                        rule, obj, user_id=request.user.pk, may_purge_all=can_purge_all(request)
                    )
                else:
                    lines = views.preview_rule(rule, obj)
            except ValueError as exc:
                problem = str(exc)
        latest: list[Any] = []
        searchable = False
        if form is not None and model is not None:
            # Pick the object by name: the newest 50, or those the model's own admin
            # search finds (with its search_fields), rather than typing a primary key.
            candidates = model._default_manager.order_by("-pk")
            model_admin = self.admin_site._registry.get(model)
            searchable = bool(model_admin and model_admin.get_search_fields(request))
            if query and model_admin is not None and searchable:
                candidates, _dup = model_admin.get_search_results(request, candidates, query)
            latest = list(candidates[:PREVIEW_CHOICES])
            if obj is not None and obj not in latest:
                latest.insert(0, obj)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Preview: %(rule)s") % {"rule": rule},
            "opts": self.opts,
            "original": rule,
            "form": form,
            "obj": obj,
            "lines": lines,
            "sent": sent,
            "problem": problem,
            "latest": latest,
            "query": query,
            "searchable": searchable,
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


# -- the purge log ------------------------------------------------------------------------


@admin.action(description=gettext_lazy("Re-purge selected"), permissions=["purge_now"])
def repurge_selected(
    modeladmin: PurgeAttemptAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponse:
    """Send the selected targets again as new attempts (see ``admin_views.repurge``)."""
    # One past the bound, so that selecting the whole log reads a bounded slice.
    rows = queryset.order_by()[: roan_settings.MAX_MANUAL_PURGES + 1]
    return views.repurge(
        request, rows, back=request.get_full_path(), log_url=_log_url(modeladmin.admin_site)
    )


class CappedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Counts at most ``cap`` rows, so a page of a huge log never counts the whole table.

    The admin shows "more than N" when the cap is reached; narrow the list with the
    filters or the date hierarchy to reach older rows.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        # SELECT COUNT(*) FROM (SELECT ... LIMIT cap + 1): bounded work at any size.
        rows: Any = self.object_list
        return int(rows[: self.cap + 1].count())

    @property
    def capped(self) -> bool:
        return self.count > self.cap


class LogQuerySet(PurgeAttemptQuerySet):
    """The purge log's rows, with a date hierarchy that walks the ``created_at`` index.

    Django's date hierarchy asks for ``MIN`` and ``MAX`` together (SQLite then reads every
    row) and for ``DISTINCT`` truncated dates, which reads every row everywhere. Here the
    bounds are two index seeks and each year, month or day is one ``EXISTS`` probe.
    """

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        first, last = kwargs.get("first"), kwargs.get("last")
        field = None
        if not args and isinstance(first, Min) and isinstance(last, Max) and len(kwargs) == 2:
            field = getattr(first.get_source_expressions()[0], "name", None)
        if isinstance(field, str):
            column = self.order_by().values_list(field, flat=True)
            return {
                "first": column.order_by(field).first(),
                "last": column.order_by(f"-{field}").first(),
            }
        return super().aggregate(*args, **kwargs)

    def datetimes(  # type: ignore[override]
        self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None
    ) -> list[datetime.datetime]:
        if kind not in {"year", "month", "day"}:
            return list(super().datetimes(field_name, kind, order, tzinfo))  # type: ignore[arg-type]
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        zone = tzinfo or timezone.get_current_timezone()
        start, end = (timezone.localtime(bounds[k], zone) for k in ("first", "last"))
        periods = [_period_start(start, kind)]
        while len(periods) <= 400 and (after := _next_period(periods[-1], kind)) <= end:
            periods.append(after)
        if len(periods) > 400:
            # Days over years: not what the hierarchy asks (it narrows to a month first).
            return list(super().datetimes(field_name, kind, order, tzinfo))  # type: ignore[arg-type]
        found = [
            period
            for period in periods
            if self.filter(
                **{f"{field_name}__gte": period, f"{field_name}__lt": _next_period(period, kind)}
            )
            .order_by()
            .exists()
        ]
        return found if order == "ASC" else found[::-1]


def _period_start(moment: datetime.datetime, kind: str) -> datetime.datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "day":
        return day
    if kind == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def _next_period(start: datetime.datetime, kind: str) -> datetime.datetime:
    naive = start.replace(tzinfo=None)
    if kind == "day":
        naive += datetime.timedelta(days=1)
    elif kind == "month":
        naive = (naive.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    else:
        naive = naive.replace(year=naive.year + 1)
    # Across a DST change the offset differs, so make the next start aware on its own.
    return timezone.make_aware(naive, start.tzinfo)


class BackendAliasFilter(admin.SimpleListFilter):
    """The configured backends (a DISTINCT over the log would read every row)."""

    title = gettext_lazy("backend")
    parameter_name = "backend"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(alias, alias) for alias in roan_settings.BACKENDS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(backend=self.value()) if self.value() else queryset


def models_with_rules() -> list[str]:
    """``app_label.model`` of every model an enabled rule (in the database or code) names."""
    return sorted({label for (label, _event), found in rules.get_index().by_key.items() if found})


def _content_type(label: str) -> ContentType | None:
    app_label, _dot, model = label.partition(".")
    try:
        return ContentType.objects.get_by_natural_key(app_label, model)
    except ContentType.DoesNotExist:
        return None


class ObjectTypeFilter(admin.SimpleListFilter):
    """Attempts for objects of one model: ``?model=blog.post``. Offers the models rules
    name (a DISTINCT over the log would read every row)."""

    title = gettext_lazy("model")
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        labels = models_with_rules()
        if self.value() and self.value() not in labels:
            labels.append(str(self.value()))
        choices = []
        for label in labels:
            content_type = _content_type(label)
            model = content_type.model_class() if content_type is not None else None
            name = capfirst(str(model._meta.verbose_name)) if model is not None else label
            choices.append((label, name))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        content_type = _content_type(str(self.value()))
        return queryset.filter(content_type=content_type) if content_type else queryset.none()


class ObjectFilter(admin.SimpleListFilter):
    """Attempts for one object: ``?object=blog.post:42``, as the "Purges" link on an
    object's change form opens it. Shown only while it is in use."""

    title = gettext_lazy("object")
    parameter_name = "object"

    def parse(self) -> tuple[ContentType | None, str]:
        label, _colon, pk = str(self.value() or "").partition(":")
        return _content_type(label), pk

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        if not self.value():
            return []
        content_type, pk = self.parse()
        name = str(self.value())
        model = content_type.model_class() if content_type is not None else None
        if model is not None and can_view_model(request.user, model):
            obj = model._default_manager.filter(pk=pk).first() if pk else None
            name = str(obj) if obj is not None else f"{model._meta.verbose_name} {pk}"
        return [(str(self.value()), Truncator(name).chars(60))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        content_type, pk = self.parse()
        if content_type is None or not pk:
            return queryset.none()
        return queryset.filter(content_type=content_type, object_pk=pk)


def object_purges_url(site: AdminSite, obj: Model) -> str | None:
    """The purge log showing ``obj``'s attempts (``None`` when ``site`` has no log)."""
    log = _log_url(site)
    if log is None:
        return None
    content_type = ContentType.objects.get_for_model(obj)
    return f"{log}?object={content_type.app_label}.{content_type.model}:{obj.pk}"


@admin.register(PurgeAttempt)
class PurgeAttemptAdmin(ExportMixin, admin.ModelAdmin):  # type: ignore[misc,type-arg]
    resource_classes = [PurgeAttemptResource]
    export_formats = [base_formats.CSV, base_formats.XLSX, base_formats.JSON]
    import_export_change_list_template = "admin/roan/purgeattempt/change_list.html"
    export_template_name = "admin/roan/export.html"
    # Five columns, each a question with its details on a quiet second line, so that the
    # log fits beside the sidebars at 1280 px: when, what and where, how it went (status,
    # HTTP status, latency, error), what caused it (trigger, user), from what (object,
    # rule).
    list_display = ["created", "target_where", "outcome_cell", "cause", "source"]
    list_display_links = ["created"]
    # Each filter is served by an index in PurgeAttempt.Meta (kind has none: it is left out).
    # The model and object filters have no index of their own (adding one is a
    # migration): on a long log, narrow by date as for the search.
    list_filter = [
        "status",
        BackendAliasFilter,
        "trigger",
        "rule",
        "completion",
        ObjectTypeFilter,
        ObjectFilter,
    ]
    list_select_related = ["user"]
    search_fields = ["target"]
    search_help_text = gettext_lazy("Search by URL, prefix or tag (part of it).")
    date_hierarchy = "created_at"
    show_full_result_count = False
    # Facet counts are one COUNT per filter choice over the whole log: never offer them.
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    actions = [repurge_selected]
    # Shows the hint when VERIFY found the page still cached after its purge.
    change_form_template = "admin/roan/purgeattempt/change_form.html"
    # The attempt's page (view only): what an editor asks first, formatted as in the list.
    fieldsets = [
        (None, {"fields": ["created_exact", "status_badge", "url", "backend", "node"]}),
        (
            gettext_lazy("Result"),
            {
                "fields": [
                    "http_status",
                    "latency",
                    "error",
                    "tries",
                    "next_attempt_at",
                    "finished_exact",
                    "purge_id",
                    "coalesced",
                    "verification",
                    "verification_detail",
                ]
            },
        ),
        (
            gettext_lazy("Why"),
            {"fields": ["trigger", "rule_link", "object_link", "user"]},
        ),
    ]
    readonly_fields = [
        "created_exact",
        "status_badge",
        "url",
        "latency",
        "finished_exact",
        "rule_link",
        "object_link",
    ]

    class Media:
        css = {"all": ["roan/admin.css"]}

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = {
            "roan_verify_hint": verify.HINT,
            "roan_can_purge": can_purge(request),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        # The "Tries" table (purgeattempt/tries.html): every try, the row's own last.
        context["roan_tries"] = PurgeTry.objects.of(obj) if obj is not None else []
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:pk>/repurge/",
                self.admin_site.admin_view(require_POST(self.repurge_view)),
                name="roan_purgeattempt_repurge",
            ),
            *super().get_urls(),
        ]

    def repurge_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The attempt page's "Re-purge" button: the log's re-purge, for this one row."""
        attempt = get_object_or_404(PurgeAttempt, pk=pk)
        back = reverse(f"{self.admin_site.name}:roan_purgeattempt_change", args=[pk])
        return views.repurge(request, [attempt], back=back, log_url=_log_url(self.admin_site))

    @admin.display(description=gettext_lazy("created"))
    def created_exact(self, attempt: PurgeAttempt) -> str:
        return exact_time(attempt.created_at)

    @admin.display(description=gettext_lazy("finished"))
    def finished_exact(self, attempt: PurgeAttempt) -> str:
        return exact_time(attempt.finished_at)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        return LogQuerySet(model=queryset.model, query=queryset.query, using=queryset.db)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_purge_now_permission(self, request: HttpRequest) -> bool:
        return can_purge(request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"roan_can_purge": can_purge(request), **(extra_context or {})}
        return super().changelist_view(request, extra)

    @admin.display(description=gettext_lazy("time"), ordering="created_at")
    def created(self, attempt: PurgeAttempt) -> str:
        local = timezone.localtime(attempt.created_at)
        return format_html(
            '<time datetime="{}">{}<br><span class="roan-clock">{}</span></time>',
            attempt.created_at.isoformat(),
            date_format(local, "Y-m-d"),
            date_format(local, "H:i:s"),
        )

    @admin.display(description=gettext_lazy("URL and backend"), ordering="target")
    def target_where(self, attempt: PurgeAttempt) -> str:
        return format_html(
            '<span class="roan-url">{}</span><span class="roan-sub">{}</span>',
            self.url(attempt),
            self.backend_node(attempt),
        )

    @admin.display(description=gettext_lazy("result"), ordering="status")
    def outcome_cell(self, attempt: PurgeAttempt) -> str:
        answer = " · ".join(
            part
            for part in (
                str(attempt.http_status) if attempt.http_status is not None else "",
                self.latency(attempt) if attempt.latency_ms is not None else "",
            )
            if part
        )
        cell = self.status_badge(attempt)
        if answer:
            cell += format_html('<span class="roan-sub roan-answer">{}</span>', answer)
        if attempt.error:
            # The reason in the row, not only in a tooltip (long ones are cut; the
            # attempt's page has it whole).
            cell += format_html(
                '<span class="roan-sub roan-error" title="{}">{}</span>',
                attempt.error,
                Truncator(attempt.error).chars(120),
            )
        return cell

    @admin.display(description=gettext_lazy("cause"), ordering="trigger")
    def cause(self, attempt: PurgeAttempt) -> str:
        user = str(attempt.user) if attempt.user_id and attempt.user else ""
        return format_html(
            '{}<span class="roan-sub roan-user">{}</span>', attempt.get_trigger_display(), user
        )

    @admin.display(description=gettext_lazy("object and rule"), ordering="rule_name")
    def source(self, attempt: PurgeAttempt) -> str:
        obj = self.object_link(attempt)
        rule = self.rule_link(attempt)
        return format_html(
            '<span class="roan-object">{}</span><span class="roan-sub roan-rule">{}</span>',
            obj,
            "" if rule == "-" else rule,
        )

    @admin.display(description=gettext_lazy("URL"), ordering="target")
    def url(self, attempt: PurgeAttempt) -> str:
        target = f"{attempt.host}{attempt.target}" if attempt.host else attempt.target
        if attempt.kind == PurgeAttempt.Kind.PREFIX:
            return f"{target}*"
        if attempt.kind != PurgeAttempt.Kind.URL:
            return f"{attempt.get_kind_display()} {target}".strip()
        return target

    @admin.display(description=gettext_lazy("backend"), ordering="backend")
    def backend_node(self, attempt: PurgeAttempt) -> str:
        if not attempt.node or attempt.node == attempt.backend:
            return attempt.backend
        # The node (often a whole purge URL) goes on its own quiet line, as on the dashboard.
        return format_html('{} <span class="roan-node">{}</span>', attempt.backend, attempt.node)

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, attempt: PurgeAttempt) -> str:
        badge = format_html(
            '<span class="roan-badge roan-status-{}" title="{}">{}</span>',
            attempt.status,
            attempt.error,
            attempt.get_status_display(),
        )
        if attempt.verification in (verify.STILL_CACHED, verify.VERIFIED):
            badge += format_html(
                '<br><span class="roan-badge roan-verify-{}" title="{}">{}</span>',
                attempt.verification,
                attempt.verification_detail,
                attempt.get_verification_display(),
            )
        if attempt.completion:
            # A CDN's asynchronous invalidation: accepted, then (later) completed.
            badge += format_html(
                '<br><span class="roan-badge roan-completion-{}" title="{}">{}</span>',
                attempt.completion,
                attempt.completed_at or attempt.completion_check_at or "",
                attempt.get_completion_display(),
            )
        return badge

    @admin.display(description=gettext_lazy("latency"), ordering="latency_ms")
    def latency(self, attempt: PurgeAttempt) -> str:
        return "-" if attempt.latency_ms is None else f"{attempt.latency_ms:.1f} ms"

    @admin.display(description=gettext_lazy("rule"), ordering="rule_name")
    def rule_link(self, attempt: PurgeAttempt) -> str:
        if attempt.rule_id is None:
            return attempt.rule_name or "-"
        url = reverse(f"{self.admin_site.name}:roan_purgerule_change", args=[attempt.rule_id])
        return format_html('<a href="{}">{}</a>', url, attempt.rule_name or attempt.rule_id)

    @admin.display(description=gettext_lazy("object"))
    def object_link(self, attempt: PurgeAttempt) -> str:
        if not attempt.object_pk or attempt.content_type_id is None:
            return attempt.object_repr or "-"
        ct = ContentType.objects.get_for_id(attempt.content_type_id)
        try:
            url = reverse(
                f"{self.admin_site.name}:{ct.app_label}_{ct.model}_change",
                args=[attempt.object_pk],
            )
        except NoReverseMatch:  # the model is not in this admin site
            return attempt.object_repr
        return format_html('<a href="{}">{}</a>', url, attempt.object_repr or attempt.object_pk)


# -- for your own ModelAdmin --------------------------------------------------------------


@admin.action(description=gettext_lazy("Purge cache for selected %(verbose_name_plural)s"))
def purge_cache_for_selected(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponse | None:
    if not can_purge(request):
        raise PermissionDenied
    objects = 0

    def purges() -> Iterator[pipeline.Purge]:
        # Rendered lazily: submit_manual stops reading at ROAN_MAX_MANUAL_PURGES.
        nonlocal objects
        for obj in queryset.iterator(chunk_size=views.CHUNK):
            objects += 1
            yield from views.object_purges(obj, user_id=request.user.pk)

    try:
        written = views.submit_manual(request, purges())
    except views.Refused as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return None
    lead = ngettext(
        "Purging the cache for %(count)d object:",
        "Purging the cache for %(count)d objects:",
        objects,
    )
    views.tell(request, lead % {"count": objects}, written, log_url=_log_url(modeladmin.admin_site))
    return views.SendAfterResponse(request.get_full_path(), written.held)


class PurgeCacheMixin:
    """Add to your ``ModelAdmin``: a "Purge cache for selected" action and a change-form
    button that purges what roan's rules render for the object (``roan.purge_now``).

    The button comes from ``change_form_template``; with a template of your own, include
    ``admin/roan/includes/purge_cache_tool.html`` in its ``object-tools-items`` block.
    """

    change_form_template = "admin/roan/purge_cache/change_form.html"
    admin_site: AdminSite
    opts: Any
    model: type[Model]

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 added ``action_location`` (change-list or change-form actions) and
        # warns about overrides without it; 5.2 does not know it.
        base: Any = super()
        if action_location is None:
            actions: dict[str, Any] = base.get_actions(request)
        else:
            actions = base.get_actions(request, action_location=action_location)
        on_list = action_location is None or getattr(action_location, "name", "") == "CHANGE_LIST"
        if on_list and can_purge(request) and getattr(self, "actions", ()) is not None:
            action = base.get_action(purge_cache_for_selected)
            if action is not None:
                actions["purge_cache_for_selected"] = action
        return actions

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        context["roan_can_purge"] = can_purge(request)
        obj = context.get("original")
        if (
            obj is not None
            and obj.pk is not None
            and request.user.has_perm("roan.view_purgeattempt")
            and self.model._meta.label_lower in models_with_rules()
        ):
            context["roan_purges_url"] = object_purges_url(self.admin_site, obj)
        return super().render_change_form(request, context, *args, **kwargs)  # type: ignore[misc,no-any-return]

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Django's add and change views; after a save, a message says what roan purged."""
        base: Any = super()
        with pipeline.collect_written() as ids:
            response: HttpResponse = base.changeform_view(
                request, object_id, form_url, extra_context
            )
        # Django's view has committed by now: with inline dispatch the purges were sent.
        self._tell_purges(request, response, ids)
        return response

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        base: Any = super()
        with pipeline.collect_written() as ids:
            response: HttpResponse = base.delete_view(request, object_id, extra_context)
        self._tell_purges(request, response, ids)
        return response

    def _tell_purges(self, request: HttpRequest, response: HttpResponse, ids: list[int]) -> None:
        if request.method != "POST" or not ids or response.status_code not in (301, 302, 303):
            return
        if not request.user.has_perm("roan.view_purgeattempt"):
            return  # what the rules sent is the log's, and this user may not read it
        text, level = views.outcome_message(
            _("Cache purges for this change:"),
            outcome(ids),
            log_url=_log_url(self.admin_site),
        )
        messages.add_message(request, level, text)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/purge-cache/",
                self.admin_site.admin_view(self.purge_cache_view),
                name="{}_{}_roan_purge_cache".format(*info),
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def purge_cache_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what would be purged; POST: purge it (``roan.purge_now``)."""
        if not can_purge(request):
            raise PermissionDenied
        obj = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if obj is None:
            raise Http404
        if not self.has_view_or_change_permission(request, obj):  # type: ignore[attr-defined]
            raise PermissionDenied
        rendered = views.object_purges(obj, user_id=request.user.pk)
        lines = views.plan_targets(rendered)  # every rule's name on its targets
        purges = views.unique_purges(rendered)
        digest = views.plan_digest(lines)
        change_url = reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[obj.pk],
        )
        changed = request.method == "POST" and request.POST.get("plan") != digest
        if request.method == "POST" and not changed:
            try:
                written = views.submit_manual(request, purges)
            except views.Refused as exc:
                self.message_user(request, str(exc), messages.ERROR)  # type: ignore[attr-defined]
                return HttpResponseRedirect(change_url)
            views.tell(
                request,
                _("Purging the cache for “%(obj)s”:") % {"obj": obj},
                written,
                log_url=_log_url(self.admin_site),
            )
            return views.SendAfterResponse(change_url, written.held)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Purge the cache for “%(obj)s”?") % {"obj": obj},
            "opts": self.opts,
            "object": obj,
            "targets": lines,
            "attempts": sum(line.attempts for line in lines),
            "backends": len({b.alias for line in lines for b in line.backends}),
            "plan": digest,
            # The rules or the object changed between showing the page and the click:
            # nothing was written; the page shows what a purge would send now.
            "changed": changed,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/roan/purge_cache/confirmation.html", context)


# -- roan's own pages ---------------------------------------------------------------------

#: roan's pages under ``<admin>/roan/``: (route, view(request, site), URL name). Each view
#: checks its own permission; the site adds login, staff, CSRF and never-cache.
ADMIN_PAGES: list[tuple[str, Callable[[HttpRequest, AdminSite], HttpResponse], str]] = [
    ("purge/", views.purge_urls_view, "roan_purge"),
    ("purge/all/", views.purge_all_view, "roan_purge_all"),
]


def admin_page_urls(site: AdminSite) -> list[URLPattern]:
    """URL patterns of :data:`ADMIN_PAGES` for ``site`` (relative to the admin root)."""
    return [
        path(f"roan/{route}", site.admin_view(functools.partial(view, site=site)), name=name)  # type: ignore[call-arg]
        for route, view, name in ADMIN_PAGES
    ]


def install_pages(site: AdminSite) -> None:
    """Serve :data:`ADMIN_PAGES` from ``site`` (done for ``django.contrib.admin.site``).

    ``AdminSite`` has no hook for app-level pages, and ``ModelAdmin.get_urls()`` lives
    under ``<app>/<model>/``; so the site's ``get_urls`` is wrapped, ahead of its own
    patterns (its catch-all would answer first).
    """
    if getattr(site, "_roan_pages_installed", False):
        return
    original = site.get_urls

    def get_urls() -> list[URLResolver | URLPattern]:
        return [*admin_page_urls(site), *original()]

    site.get_urls = get_urls  # type: ignore[method-assign]
    site._roan_pages_installed = True  # type: ignore[attr-defined]


install_pages(admin.site)


# -- the pause switches (roan.limits) ---------------------------------------------------------


@admin.action(
    description=gettext_lazy("Pause sending for the selected backends"), permissions=["change"]
)
def pause_backends(
    modeladmin: BackendStateAdmin, request: HttpRequest, queryset: QuerySet[BackendState]
) -> None:
    aliases = list(queryset.values_list("alias", flat=True))
    for alias in aliases:
        limits.pause(alias, user=request.user)
    modeladmin.message_user(
        request,
        ngettext(
            "Paused %(count)d backend: its purges wait until it is resumed.",
            "Paused %(count)d backends: their purges wait until they are resumed.",
            len(aliases),
        )
        % {"count": len(aliases)},
        messages.SUCCESS,
    )


@admin.action(
    description=gettext_lazy("Resume the selected backends and send what queued"),
    permissions=["change"],
)
def resume_backends(
    modeladmin: BackendStateAdmin, request: HttpRequest, queryset: QuerySet[BackendState]
) -> None:
    aliases = list(queryset.values_list("alias", flat=True))
    queued = sum(limits.resume(alias) for alias in aliases)
    modeladmin.message_user(
        request,
        ngettext(
            "Resumed %(count)d backend; %(queued)d queued attempt(s) are being sent.",
            "Resumed %(count)d backends; %(queued)d queued attempt(s) are being sent.",
            len(aliases),
        )
        % {"count": len(aliases), "queued": queued},
        messages.SUCCESS,
    )
    still = [alias for alias in aliases if limits.paused_by_option(alias)]
    if still:
        modeladmin.message_user(
            request,
            _("Still paused by their PAUSED option in ROAN_BACKENDS: %(aliases)s.")
            % {"aliases": ", ".join(still)},
            messages.WARNING,
        )


@admin.register(BackendState)
class BackendStateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """One row per configured backend; pausing and resuming are the list's actions."""

    list_display = ["alias", "label", "state", "queued"]
    list_display_links = None
    list_select_related = ["paused_by"]
    actions = [pause_backends, resume_backends]
    readonly_fields = ["alias", "paused", "paused_at", "paused_by", "updated_at"]

    class Media:
        css = {"all": ["roan/admin.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        # A switch exists for every configured backend, so the list is the whole truth;
        # rows for aliases no longer configured stay (they may still have queued rows).
        if self.has_change_permission(request):
            BackendState.objects.bulk_create(
                [BackendState(alias=alias) for alias in roan_settings.BACKENDS],
                ignore_conflicts=True,
            )
        return super().changelist_view(request, extra_context)

    @admin.display(description=gettext_lazy("label"))
    def label(self, obj: BackendState) -> str:
        config = roan_settings.BACKENDS.get(obj.alias)
        if not isinstance(config, dict):
            return str(_("not in ROAN_BACKENDS"))
        path = str(config.get("BACKEND", ""))
        # The class name reads; the dotted path goes on a quiet line that may wrap.
        return format_html(
            '{}<span class="roan-sub">{}</span>',
            config.get("LABEL") or path.rpartition(".")[2],
            path.replace(".", ".\N{ZERO WIDTH SPACE}"),
        )

    @admin.display(description=gettext_lazy("state"), ordering="paused")
    def state(self, obj: BackendState) -> str:
        if limits.paused_by_option(obj.alias):
            return str(_("paused by its PAUSED option"))
        if not obj.paused:
            return str(_("sending"))
        when = exact_time(obj.paused_at) if obj.paused_at else ""
        by = str(obj.paused_by) if obj.paused_by else ""
        return format_html(
            '<span class="roan-badge roan-status-failed">{}</span><span class="roan-sub">{}</span>',
            _("paused"),
            " ".join(p for p in (when, _("by %(user)s") % {"user": by} if by else "") if p),
        )

    @admin.display(description=gettext_lazy("paused by setting"), boolean=True)
    def paused_by_option(self, obj: BackendState) -> bool:
        return limits.paused_by_option(obj.alias)

    @admin.display(description=gettext_lazy("queued attempts"))
    def queued(self, obj: BackendState) -> int:
        return limits.queued(obj.alias)


# The dashboard at admin/roan/dashboard/ (roan/dashboard.py), listed with the models.
dashboard.register(admin.site)
