"""The purge log in the admin: every attempt, append-only, with filters served by the
table's indexes, a date hierarchy and a paginator that never count the whole table, the
attempt's page, and "re-purge selected".
"""

from __future__ import annotations

import datetime
import functools
from typing import Any

from django.contrib import admin
from django.contrib.admin import AdminSite, helpers
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Max, Min, Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, URLPattern, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator, capfirst
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from import_export.admin import ExportMixin
from import_export.formats import base_formats

from roan.admin import operations, uses
from roan.admin.common import (
    ERROR_CHARS,
    OBJECT_CHARS,
    badge,
    can_purge,
    exact_time,
    log_url,
    page,
    visible_objects,
)
from roan.conf import roan_settings
from roan.managers import PurgeAttemptQuerySet
from roan.models import PurgeAttempt, PurgeTry
from roan.outbox import verify
from roan.resources import PurgeAttemptResource
from roan.rules import index as rule_index
from roan.rules.access import can_view_model
from roan.vocabulary import Kind, Verification


@admin.action(description=gettext_lazy("Re-purge selected"), permissions=["purge_now"])
def repurge_selected(
    modeladmin: PurgeAttemptAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponse:
    """Send the selected targets again as new attempts (``operations.repurge``)."""
    # One past the bound, so that selecting the whole log reads a bounded slice.
    rows = queryset.order_by()[: roan_settings.MAX_MANUAL_PURGES + 1]
    return operations.repurge(
        request, rows, back=request.get_full_path(), log_url=log_url(modeladmin.admin_site)
    )


@functools.cache
def _labels(field: str, language: str | None) -> dict[str, str]:
    """The translated labels of a choice field of PurgeAttempt, by value."""
    choices = PurgeAttempt._meta.get_field(field).flatchoices  # type: ignore[union-attr]
    return {str(value): str(label) for value, label in choices}


def label(attempt: PurgeAttempt, field: str) -> str:
    """``attempt.get_<field>_display()``, without building the choices' dict each time
    (Django's does, translating every label: a tenth of the log's rendering)."""
    value = getattr(attempt, field)
    return _labels(field, get_language()).get(str(value), str(value))


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


#: The badge of a soft purge (the backend's SOFT option), and what it means.
SOFT_LABEL = gettext_lazy("soft")
SOFT_TITLE = gettext_lazy("Marked stale, not removed: a reader may get the old copy once.")


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

    def has_output(self) -> bool:
        # One backend is no choice: shown from two on (or while in use).
        return len(self.lookup_choices) > 1 or bool(self.value())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(backend=self.value()) if self.value() else queryset


class RuleFilter(admin.RelatedFieldListFilter):
    """The rule an attempt came from; the attempts of no rule have a name, not a "-"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.empty_value_display = format_html("{}", _("none (manual, code or API)"))


class CompletionFilter(admin.ChoicesFieldListFilter):
    """A CDN's background invalidations: shown only when a configured backend makes
    them (or while in use, as the dashboard's "in progress" link opens it)."""

    def has_output(self) -> bool:
        return uses.completes_later() or self.lookup_val is not None


def models_with_rules() -> list[str]:
    """``app_label.model`` of every model an enabled rule (in the database or code) names."""
    return sorted(
        {label for (label, _event), found in rule_index.get_index().by_key.items() if found}
    )


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

    def has_output(self) -> bool:
        # The rules of one model leave nothing to choose: shown from two on.
        return len(self.lookup_choices) > 1 or bool(self.value())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        content_type = _content_type(str(self.value()))
        return queryset.filter(content_type=content_type) if content_type else queryset.none()


class ObjectFilter(admin.SimpleListFilter):
    """Attempts for one object: ``?object=blog.post:42``, as the "Purge history" link on an
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
            obj = None
            if pk:
                # The rows the model's admin shows this user; a key that is not one of
                # the model's (``abc`` for an integer key) names no object.
                shown = visible_objects(model_admin.admin_site, request, model)
                try:
                    obj = shown.filter(pk=pk).first()
                except (ValueError, TypeError, ValidationError):
                    obj = None
            name = str(obj) if obj is not None else f"{model._meta.verbose_name} {pk}"
        return [(str(self.value()), Truncator(name).chars(OBJECT_CHARS))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        content_type, pk = self.parse()
        if content_type is None or not pk:
            return queryset.none()
        return queryset.filter(content_type=content_type, object_pk=pk)


def object_purges_url(site: AdminSite, obj: Model) -> str | None:
    """The purge log showing ``obj``'s attempts (``None`` when ``site`` has no log)."""
    log = log_url(site)
    if log is None:
        return None
    content_type = ContentType.objects.get_for_model(obj)
    return f"{log}?object={content_type.app_label}.{content_type.model}:{obj.pk}"


#: Fields of the attempt's page shown only when the attempt has a value in one of the
#: columns each reads.
OPTIONAL_FIELDS = {
    "http_status": ("http_status",),
    "latency": ("latency_ms",),
    "error": ("error",),
    "next_attempt_at": ("next_attempt_at",),
    "finished_exact": ("finished_at",),
    "purge_id": ("purge_id",),
    "coalesced": ("coalesced",),
    "verification": ("verification",),
    "verification_detail": ("verification_detail",),
    "rule_link": ("rule_id", "rule_name"),
    "object_link": ("object_pk", "object_repr"),
    "user": ("user_id",),
}


def _blank(attempt: PurgeAttempt, columns: tuple[str, ...]) -> bool:
    return all(getattr(attempt, column) in (None, "", 0) for column in columns)


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
    # A filter shows only when it offers a choice: one backend, the rules of one model or
    # no CDN that finishes later leave the backend, model and completion filters out.
    # The model and object filters have no index of their own (adding one is a
    # migration): on a long log, narrow by date as for the search.
    list_filter = [
        "status",
        BackendAliasFilter,
        "trigger",
        ("rule", RuleFilter),
        ("completion", CompletionFilter),
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
                    "soft",
                    "warming",
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
            page(
                self.admin_site, "<int:pk>/repurge/", self.repurge_view, "roan_purgeattempt_repurge"
            ),
            *super().get_urls(),
        ]

    def repurge_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The attempt page's "Re-purge" button: the log's re-purge, for this one row."""
        back = reverse(f"{self.admin_site.name}:roan_purgeattempt_change", args=[pk])
        return operations.repurge_view(request, pk, site=self.admin_site, back=back)

    @admin.display(description=gettext_lazy("created"))
    def created_exact(self, attempt: PurgeAttempt) -> str:
        return exact_time(attempt.created_at)

    @admin.display(description=gettext_lazy("finished"))
    def finished_exact(self, attempt: PurgeAttempt) -> str:
        return exact_time(attempt.finished_at)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """The attempt's page without the fields this attempt left empty: a Django cache
        answers no HTTP status, only a CDN has a purge id, only VERIFY a verdict."""
        if obj is None:
            return super().get_fieldsets(request, obj)
        empty = {field for field, columns in OPTIONAL_FIELDS.items() if _blank(obj, columns)}
        shown = []
        for title, options in super().get_fieldsets(request, obj):
            fields = [f for f in options["fields"] if f not in empty]
            if fields:
                shown.append((title, {**options, "fields": fields}))
        return shown

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        return LogQuerySet(model=queryset.model, query=queryset.query, using=queryset.db)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Append-only, for superusers too: the log is the record of what was sent, and
        # roan_prune is how it shrinks (by age, forgetting the dashboard's kept hours).
        return False

    def action_checkbox(self, obj: Any) -> SafeString:
        # Django renders a CheckboxInput through the form renderer's templates for every
        # row (a third of the list's rendering); this is the same markup.
        name = _("%(kind)s %(target)s on %(backend)s (%(status)s)") % {
            "kind": label(obj, "kind"),
            "target": obj.target,
            "backend": obj.backend,
            "status": label(obj, "status"),
        }  # str(obj), with the labels looked up once
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(_("Select this object for an action - {}"), name),
        )

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
                Truncator(attempt.error).chars(ERROR_CHARS),
            )
        return cell

    @admin.display(description=gettext_lazy("cause"), ordering="trigger")
    def cause(self, attempt: PurgeAttempt) -> str:
        user = str(attempt.user) if attempt.user_id and attempt.user else ""
        return format_html(
            '{}<span class="roan-sub roan-user">{}</span>', label(attempt, "trigger"), user
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
        if attempt.kind == Kind.PREFIX:
            return f"{target}*"
        if attempt.kind != Kind.URL:
            return f"{label(attempt, 'kind')} {target}".strip()
        return target

    @admin.display(description=gettext_lazy("backend"), ordering="backend")
    def backend_node(self, attempt: PurgeAttempt) -> str:
        if not attempt.node or attempt.node == attempt.backend:
            return attempt.backend
        # The node (often a whole purge URL) goes on its own quiet line, as on the dashboard.
        return format_html('{} <span class="roan-node">{}</span>', attempt.backend, attempt.node)

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, attempt: PurgeAttempt) -> str:
        html = badge("status", attempt.status, label(attempt, "status"), attempt.error)
        if attempt.verification in (Verification.STILL_CACHED, Verification.VERIFIED):
            html += format_html(
                "<br>{}",
                badge(
                    "verify",
                    attempt.verification,
                    label(attempt, "verification"),
                    attempt.verification_detail,
                ),
            )
        if attempt.soft:
            # Marked stale, not removed (SOFT): a reader may get the old copy once.
            html += format_html(" {}", badge("purge", "soft", SOFT_LABEL, SOFT_TITLE))
        if attempt.warming:
            # WARM: the page fetched through the cache again after its purge.
            html += format_html(" {}", badge("warming", attempt.warming, label(attempt, "warming")))
        if attempt.completion:
            # A CDN's asynchronous invalidation: accepted, then (later) completed.
            html += format_html(
                "<br>{}",
                badge(
                    "completion",
                    attempt.completion,
                    label(attempt, "completion"),
                    attempt.completed_at or attempt.completion_check_at or "",
                ),
            )
        return html

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
