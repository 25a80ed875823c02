"""For a project's own ``ModelAdmin``: :class:`PurgeCacheMixin` adds "Purge cache for
selected" and a change-form button that purges what roan's rules render for an object,
and says after a save what roan purged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils.text import Truncator, capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from roan import context
from roan.admin import operations
from roan.admin.common import breadcrumbs, can_purge, can_view_log, log_url, page
from roan.admin.log import models_with_rules, object_purges_url
from roan.context import WrittenIds
from roan.outbox.outcome import outcome, outcome_message
from roan.purges import Purge


@admin.action(description=gettext_lazy("Purge cache for selected %(verbose_name_plural)s"))
def purge_cache_for_selected(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponse | None:
    if not can_purge(request):
        raise PermissionDenied
    objects = 0
    left_out: list[tuple[str, str]] = []

    def purges() -> Iterator[Purge]:
        # Rendered lazily: submit_manual stops reading at ROAN_MAX_MANUAL_PURGES.
        nonlocal objects
        for obj in queryset.iterator(chunk_size=operations.CHUNK):
            objects += 1
            yield from operations.object_purges(
                obj, user_id=request.user.pk, viewer=request.user, left_out=left_out
            )

    try:
        written = operations.submit_manual(request, purges())
    except operations.Refused as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return None
    finally:
        for name, reason in left_out:
            modeladmin.message_user(
                request,
                _("“%(rule)s” is left out: %(reason)s") % {"rule": name, "reason": reason},
                messages.WARNING,
            )
    lead = ngettext(
        "Purging the cache for %(count)d object:",
        "Purging the cache for %(count)d objects:",
        objects,
    )
    operations.tell(
        request, lead % {"count": objects}, written, log_url=log_url(modeladmin.admin_site)
    )
    return operations.SendAfterResponse(request.get_full_path(), written.held)


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
            and can_view_log(request)
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
        with context.collect_written() as ids:
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
        with context.collect_written() as ids:
            response: HttpResponse = base.delete_view(request, object_id, extra_context)
        self._tell_purges(request, response, ids)
        return response

    def _tell_purges(self, request: HttpRequest, response: HttpResponse, ids: WrittenIds) -> None:
        if request.method != "POST" or not ids or response.status_code not in (301, 302, 303):
            return
        if not can_view_log(request):
            return  # what the rules sent is the log's, and this user may not read it
        text, level = outcome_message(
            _("Cache purges for this change:"),
            outcome(ids, ids.recorded),
            log_url=log_url(self.admin_site),
        )
        messages.add_message(request, level, text)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            page(
                self.admin_site,
                "<path:object_id>/purge-cache/",
                self.purge_cache_view,
                "{}_{}_roan_purge_cache".format(*info),
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
        # Rules reading a model this user may not view are neither shown nor sent.
        left_out: list[tuple[str, str]] = []
        rendered = operations.object_purges(
            obj, user_id=request.user.pk, viewer=request.user, left_out=left_out
        )
        lines = operations.plan_targets(rendered)  # every rule's name on its targets
        purges = operations.unique_purges(rendered)
        digest = operations.plan_digest(lines)
        change_url = reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[obj.pk],
        )
        changed = request.method == "POST" and request.POST.get("plan") != digest
        if request.method == "POST" and not changed:
            try:
                written = operations.submit_manual(request, purges)
            except operations.Refused as exc:
                self.message_user(request, str(exc), messages.ERROR)  # type: ignore[attr-defined]
                return HttpResponseRedirect(change_url)
            operations.tell(
                request,
                _("Purging the cache for “%(obj)s”:") % {"obj": obj},
                written,
                log_url=log_url(self.admin_site),
            )
            return operations.SendAfterResponse(change_url, written.held)
        site = self.admin_site
        changelist = reverse(f"{site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist")
        context = {
            **site.each_context(request),
            **breadcrumbs(
                site,
                self.opts.app_label,
                (changelist, capfirst(self.opts.verbose_name_plural)),
                (change_url, Truncator(str(obj)).words(18)),
                ("", _("Purge cache")),
            ),
            "title": _("Purge the cache for “%(obj)s”?") % {"obj": obj},
            "opts": self.opts,
            "object": obj,
            "targets": lines,
            "left_out": left_out,
            "attempts": sum(line.attempts for line in lines),
            "backends": len({b.alias for line in lines for b in line.backends}),
            "plan": digest,
            # The rules or the object changed between showing the page and the click:
            # nothing was written; the page shows what a purge would send now.
            "changed": changed,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/roan/purge_cache/confirmation.html", context)
