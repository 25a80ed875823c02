"""roan in the Django admin: the editor's side.

One module per subject, each importing only the ones below it (and nothing outside this
package imports it)::

    common      permission checks, mounting a page, the log's address, widths, times
    forms       the admin's forms (a rule's, "Purge URLs", "Purge everything", preview)
    operations  the plans shown on confirmation pages, writing manual purges, the one
                re-purge, the messages saying what became of them
    rules       PurgeRuleAdmin: the list, the form, its actions, the preview
    log         PurgeAttemptAdmin: the purge log, its filters, paginator, re-purge
    backends    BackendStateAdmin: the pause switches
    pages       "Purge URLs" and "Purge everything" (``<admin>/roan/purge/``)
    dashboard   the purge dashboard (``<admin>/roan/dashboard/``)
    mixins      PurgeCacheMixin, for a project's own ModelAdmin
    site        register(site): all of the above on one AdminSite

Importing this module (the admin's autodiscovery does) registers roan on
``django.contrib.admin.site``; for a site of your own call ``roan.admin.register(site)``.
"""

from __future__ import annotations

from django.contrib import admin

from roan.admin.backends import BackendStateAdmin
from roan.admin.dashboard import DashboardAdmin
from roan.admin.log import CappedCountPaginator, LogQuerySet, PurgeAttemptAdmin
from roan.admin.mixins import PurgeCacheMixin, purge_cache_for_selected
from roan.admin.pages import PurgePagesAdmin
from roan.admin.rules import PurgeRuleAdmin
from roan.admin.site import register

__all__ = [
    "BackendStateAdmin",
    "CappedCountPaginator",
    "DashboardAdmin",
    "LogQuerySet",
    "PurgeAttemptAdmin",
    "PurgeCacheMixin",
    "PurgePagesAdmin",
    "PurgeRuleAdmin",
    "purge_cache_for_selected",
    "register",
]

register(admin.site)
