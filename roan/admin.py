"""The editor's side: rules and the purge log in the Django admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from roan import limits
from roan.conf import roan_settings
from roan.forms import PurgeRuleForm
from roan.models import BackendState, PurgeAttempt, PurgeRule


@admin.register(PurgeRule)
class PurgeRuleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = PurgeRuleForm
    list_display = [
        "name",
        "content_type",
        "on_save",
        "on_delete",
        "on_m2m",
        "enabled",
        "updated_at",
    ]
    list_filter = ["enabled", "content_type"]
    search_fields = ["name", "templates", "description"]
    fieldsets = [
        (None, {"fields": ["name", "content_type", "templates", "backends", "enabled"]}),
        ("Events", {"fields": ["on_save", "on_delete", "on_m2m"]}),
        ("Notes", {"fields": ["description"], "classes": ["collapse"]}),
    ]


@admin.register(PurgeAttempt)
class PurgeAttemptAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "created_at",
        "target",
        "backend",
        "node",
        "status",
        "http_status",
        "latency_ms",
        "trigger",
        "rule_name",
        "object_repr",
        "user",
    ]
    list_filter = ["status", "backend", "trigger"]
    list_select_related = ["user"]
    search_fields = ["target"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


# -- the pause switches (roan.limits) ---------------------------------------------------------


@admin.action(description=_("Pause sending for the selected backends"), permissions=["change"])
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
    description=_("Resume the selected backends and send what queued"), permissions=["change"]
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

    list_display = [
        "alias",
        "label",
        "paused",
        "paused_by_option",
        "queued",
        "paused_at",
        "paused_by",
    ]
    list_display_links = None
    list_select_related = ["paused_by"]
    actions = [pause_backends, resume_backends]
    readonly_fields = ["alias", "paused", "paused_at", "paused_by", "updated_at"]

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

    @admin.display(description=_("label"))
    def label(self, obj: BackendState) -> str:
        config = roan_settings.BACKENDS.get(obj.alias)
        if not isinstance(config, dict):
            return str(_("not in ROAN_BACKENDS"))
        return str(config.get("LABEL") or config.get("BACKEND", ""))

    @admin.display(description=_("paused by setting"), boolean=True)
    def paused_by_option(self, obj: BackendState) -> bool:
        return limits.paused_by_option(obj.alias)

    @admin.display(description=_("queued attempts"))
    def queued(self, obj: BackendState) -> int:
        return limits.queued(obj.alias)
