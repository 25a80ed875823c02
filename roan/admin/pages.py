"""roan's own pages under ``<admin>/roan/purge/``: purge URLs or prefixes, and purge
everything on one backend (after a confirmation page).

They belong to no model, so they hang off a stand-in "model" (``purge``), whose admin
mounts them and lists "Purge URLs" in the index and the sidebar for those who may purge
(the log's and the rules' object tools link to it too).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from roan.admin import operations
from roan.admin.common import breadcrumbs, can_purge, can_purge_all, page, stand_in
from roan.admin.forms import PurgeAllForm, PurgeURLsForm
from roan.backends.base import ALL, PurgeRequest
from roan.models import PurgeAttempt
from roan.purges import Cause, Purge
from roan.vocabulary import Trigger

#: The stand-in "model" the pages are registered under: ``<admin>/roan/purge/``.
PurgePages = stand_in("purge", gettext_lazy("purge URLs"))


def page_context(
    site: AdminSite, request: HttpRequest, title: str, *trail: tuple[str, Any]
) -> dict[str, Any]:
    return {
        **site.each_context(request),
        **breadcrumbs(site, "roan", *trail, ("", title)),
        "title": title,
        "opts": PurgeAttempt._meta,
        "app_label": "roan",
        "can_purge_all": can_purge_all(request),
        "log_url": reverse(f"{site.name}:roan_purgeattempt_changelist"),
    }


def purge_urls_view(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """``admin/roan/purge/``: purge URLs or prefixes, one per line, on chosen backends."""
    if not can_purge(request):
        raise PermissionDenied
    form = PurgeURLsForm(
        request.POST if request.method == "POST" else None, may_purge_all=can_purge_all(request)
    )
    if request.method == "POST" and form.is_valid():
        try:
            written = operations.submit_manual(request, form.purges(user_id=request.user.pk))
        except operations.Refused as exc:  # the form checked; this is the backstop
            form.add_error("urls", str(exc))
        else:
            targets = len(form.cleaned_data["requests"])
            lead = ngettext("Purging %(targets)d target:", "Purging %(targets)d targets:", targets)
            return to_admin_purges(request, site, lead % {"targets": targets}, written)
    context = {
        **page_context(site, request, _("Purge URLs")),
        "form": form,
        "all_form": PurgeAllForm() if can_purge_all(request) else None,
    }
    return TemplateResponse(request, "admin/roan/purge_urls.html", context)


def purge_all_view(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """``admin/roan/purge/all/``: everything on one backend, after a confirmation page."""
    if not can_purge_all(request):
        raise PermissionDenied
    if request.method != "POST":
        return HttpResponseRedirect(reverse(f"{site.name}:roan_purge"))
    form = PurgeAllForm(request.POST)
    if form.is_valid() and request.POST.get("confirm") == "yes":
        alias = form.cleaned_data["backend"]
        written = operations.submit_manual(
            request,
            [
                Purge(
                    alias,
                    PurgeRequest(ALL, ""),
                    Cause(trigger=Trigger.ADMIN, user_id=request.user.pk),
                )
            ],
        )
        lead = _("Purging everything on %(backend)s:") % {"backend": alias}
        return to_admin_purges(request, site, lead, written)
    context = {
        **page_context(
            site,
            request,
            _("Purge everything?"),
            (reverse(f"{site.name}:roan_purge"), _("Purge URLs")),
        ),
        "form": form,
        "backend": form.cleaned_data.get("backend") if form.is_valid() else None,
    }
    return TemplateResponse(request, "admin/roan/purge_all_confirmation.html", context)


def to_admin_purges(
    request: HttpRequest, site: AdminSite, lead: str, written: operations.Written
) -> HttpResponseRedirect:
    """Say what a manual purge wrote, then show the log's manual purges."""
    log = reverse(f"{site.name}:roan_purgeattempt_changelist")
    operations.tell(request, lead, written, log_url=log)
    return operations.SendAfterResponse(f"{log}?trigger__exact={Trigger.ADMIN.value}", written.held)


class PurgePagesAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Mounts the purge pages and lists "Purge URLs" (as a "model" one may view) for the
    users with ``roan.purge_now``."""

    actions = None

    def get_urls(self) -> list[URLPattern]:
        site = self.admin_site

        def purge_urls(request: HttpRequest) -> HttpResponse:
            return purge_urls_view(request, site)

        return [
            page(site, "", purge_urls, "roan_purge"),
            # The name the index and the sidebar reverse for a registered "model".
            page(site, "", purge_urls, "roan_purge_changelist"),
            page(site, "all/", lambda request: purge_all_view(request, site), "roan_purge_all"),
        ]

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        return {"add": False, "change": False, "delete": False, "view": can_purge(request)}

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_purge(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_purge(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
