"""The pause switches in the admin: one row per configured backend (``BackendState``),
paused and resumed with the list's actions (``roan.outbox.limits`` does the work)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from roan import pauses
from roan.admin.common import badge, exact_time
from roan.conf import roan_settings
from roan.models import BackendState


@admin.action(
    description=gettext_lazy("Pause sending for the selected backends"), permissions=["change"]
)
def pause_backends(
    modeladmin: BackendStateAdmin, request: HttpRequest, queryset: QuerySet[BackendState]
) -> None:
    aliases = list(queryset.values_list("alias", flat=True))
    for alias in aliases:
        pauses.pause(alias, user=request.user)
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
    queued = sum(pauses.resume(alias) for alias in aliases)
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
    still = [alias for alias in aliases if pauses.paused_by_option(alias)]
    if still:
        modeladmin.message_user(
            request,
            _("Still paused by their PAUSED option in ROAN_BACKENDS: %(aliases)s.")
            % {"aliases": ", ".join(still)},
            messages.WARNING,
        )


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
        if pauses.paused_by_option(obj.alias):
            return str(_("paused by its PAUSED option"))
        if not obj.paused:
            return str(_("sending"))
        when = exact_time(obj.paused_at) if obj.paused_at else ""
        by = str(obj.paused_by) if obj.paused_by else ""
        return format_html(
            '{}<span class="roan-sub">{}</span>',
            badge("state", "paused", _("paused")),
            " ".join(p for p in (when, _("by %(user)s") % {"user": by} if by else "") if p),
        )

    @admin.display(description=gettext_lazy("paused by setting"), boolean=True)
    def paused_by_option(self, obj: BackendState) -> bool:
        return pauses.paused_by_option(obj.alias)

    @admin.display(description=gettext_lazy("queued attempts"))
    def queued(self, obj: BackendState) -> int:
        return pauses.queued(obj.alias)
