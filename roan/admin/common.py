"""What every module of roan's admin shares: the permission checks, the one way a page
is mounted, the log's address, the widths of cut text and how a time is shown.

Nothing here imports another module of the admin, so each of them may import this.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import django
from django.apps import apps
from django.contrib.admin import AdminSite
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.translation import gettext as _

from roan.vocabulary import PURGE_ALL, PURGE_NOW

#: The permission to read the purge log (and the dashboard built from it).
VIEW_LOG = "roan.view_purgeattempt"

# How much of a long text a list cell or a page shows (the rest is on the object's page).
#: A URL template in the rules list.
TEMPLATE_CHARS = 60
#: An object's name in the log's "object" filter.
OBJECT_CHARS = 60
#: An attempt's error in the log and on the dashboard.
ERROR_CHARS = 120
#: An object's name in the rule preview's list.
CHOICE_CHARS = 80
#: The rule preview's search text.
QUERY_CHARS = 200


def can_purge(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(PURGE_NOW))


def can_purge_all(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(PURGE_ALL))


def can_view_log(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(VIEW_LOG))


def visible_objects(site: AdminSite, request: HttpRequest, model: type[Model]) -> QuerySet[Any]:
    """The rows of ``model`` that ``request`` may see on ``site``: those its registered
    ``ModelAdmin.get_queryset(request)`` lists (an admin may restrict an editor to their
    own rows), or, for a proxy registered only through its concrete model, that admin's
    rows. Every row when ``site`` has no admin for the model (the view permission, which
    the caller checks, is then all there is).

    Every page of roan's that lists, searches, renders or names objects of a project's
    model reads them here, never through the model's default manager alone.
    """
    model_admin = site._registry.get(model)
    if model_admin is not None:
        return model_admin.get_queryset(request)
    concrete = model._meta.concrete_model
    concrete_admin = site._registry.get(concrete) if concrete is not None else None
    if concrete_admin is not None:
        shown = concrete_admin.get_queryset(request).order_by().values("pk")
        return model._default_manager.filter(pk__in=shown)
    return model._default_manager.all()


def page(site: AdminSite, route: str, view: Callable[..., HttpResponse], name: str) -> URLPattern:
    """A URL pattern for one of roan's admin pages: the site adds login, staff, CSRF and
    never-cache; the view checks its own permission.

    Every page roan adds is mounted this way, from the ``get_urls()`` of the
    ``ModelAdmin`` it belongs to (a stand-in for the pages that belong to no model:
    :func:`stand_in`).
    """
    return path(route, site.admin_view(view), name=name)


#: Django 6.1 turned the admin's breadcrumbs into a list (6.0 and 5.2 draw a <div>).
BREADCRUMBS_AS_LIST = django.VERSION >= (6, 1)


def breadcrumbs(site: AdminSite, app_label: str, *trail: tuple[str, Any]) -> dict[str, Any]:
    """The context ``admin/roan/includes/breadcrumbs.html`` draws: Home, the app, then
    ``trail`` ((address, label) pairs; the last one is the page itself), in the markup of
    the running Django's own pages."""
    crumbs = [
        (reverse(f"{site.name}:index"), _("Home")),
        (
            reverse(f"{site.name}:app_list", kwargs={"app_label": app_label}),
            apps.get_app_config(app_label).verbose_name,
        ),
        *trail,
    ]
    return {"roan_crumbs": crumbs, "roan_crumbs_as_list": BREADCRUMBS_AS_LIST}


def log_url(site: AdminSite) -> str | None:
    """The purge log's address on ``site`` (``None`` when the site does not show it)."""
    try:
        return reverse(f"{site.name}:roan_purgeattempt_changelist")
    except NoReverseMatch:
        return None


def exact_time(when: datetime.datetime | None) -> str:
    """A time to the second, in the current time zone ("-" for none)."""
    if when is None:
        return "-"
    return date_format(timezone.localtime(when), "Y-m-d H:i:s")


def badge(family: str, value: str, label: Any, title: Any = "") -> str:
    """A badge: ``roan-badge`` and one class of a family (``roan-status-failed``,
    ``roan-verify-verified``, ``roan-completion-in_progress``, ``roan-state-paused``)."""
    return format_html(
        '<span class="roan-badge roan-{}-{}" title="{}">{}</span>', family, value, title, label
    )


class _StandInOptions:
    """Just enough of a model's ``_meta`` for the admin to route and list a page.

    Registering a stand-in like this (as django-constance does for its settings page)
    mounts its ``ModelAdmin.get_urls()`` at ``<admin>/roan/<model_name>/``, and (when its
    admin grants a permission) lists it in the index, the app page and the sidebar,
    without a database table or a template override.
    """

    app_label = "roan"
    abstract = False
    swapped = False
    is_composite_pk = False

    def __init__(self, model_name: str, verbose_name: str | Promise) -> None:
        self.model_name = model_name
        self.object_name = model_name.capitalize()
        self.verbose_name = self.verbose_name_plural = verbose_name

    @property
    def app_config(self) -> Any:
        return apps.get_app_config(self.app_label)

    @property
    def label(self) -> str:
        return f"{self.app_label}.{self.object_name}"

    @property
    def label_lower(self) -> str:
        return f"{self.app_label}.{self.model_name}"


def stand_in(model_name: str, verbose_name: str | Promise) -> type:
    """A stand-in "model" to register roan's pages under ``<admin>/roan/<model_name>/``."""
    return type(model_name.capitalize(), (), {"_meta": _StandInOptions(model_name, verbose_name)})
