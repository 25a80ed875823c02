"""Everything roan has in the admin, installed on a site with one call: :func:`register`."""

from __future__ import annotations

from django.contrib.admin import AdminSite, ModelAdmin

from roan.admin.backends import BackendStateAdmin
from roan.admin.dashboard import Dashboard, DashboardAdmin
from roan.admin.log import PurgeAttemptAdmin
from roan.admin.pages import PurgePages, PurgePagesAdmin
from roan.admin.rules import PurgeRuleAdmin
from roan.models import BackendState, PurgeAttempt, PurgeRule

#: (model or stand-in, its admin): each admin mounts its own pages from ``get_urls()``.
ADMINS: list[tuple[type, type[ModelAdmin]]] = [  # type: ignore[type-arg]
    (PurgeRule, PurgeRuleAdmin),
    (PurgeAttempt, PurgeAttemptAdmin),
    (BackendState, BackendStateAdmin),
    (Dashboard, DashboardAdmin),
    (PurgePages, PurgePagesAdmin),
]


def register(site: AdminSite) -> None:
    """Install roan on ``site``: the rules, the purge log, the pause switches, the
    dashboard and the purge pages, under ``<site>/roan/``.

    ``django.contrib.admin.site`` gets them when the admin autodiscovers ``roan.admin``;
    call this for an ``AdminSite`` of your own. A model you registered on ``site``
    yourself (with a subclass of roan's admin, say) keeps your admin, and calling this
    twice changes nothing.
    """
    for model, model_admin in ADMINS:
        if not site.is_registered(model):
            # A list: register() takes a lone class only when it is a Django model.
            site.register([model], model_admin)
