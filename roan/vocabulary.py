"""roan's words, defined once: what an attempt's status, kind and trigger may be, what a
purge verification and an asynchronous invalidation report, and the permissions.

Everything else (the backends' results, the models' choices, the admin's badges and
filters, the commands) uses these. The values are what the database stores; the labels
are what the admin shows.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _


class Status(models.TextChoices):
    """Where an attempt stands. A backend reports one of the last five for a try."""

    PENDING = "pending", _("pending")
    OK = "ok", _("ok")
    NOT_CACHED = "not_cached", _("not cached")
    FAILED = "failed", _("failed")
    GAVE_UP = "gave_up", _("gave up")
    SKIPPED = "skipped", _("skipped")


#: Statuses of attempts that will not be sent again.
FINAL_STATUSES = frozenset({Status.OK, Status.NOT_CACHED, Status.GAVE_UP, Status.SKIPPED})
#: Statuses an editor is asked to look at.
FAILING_STATUSES = (Status.FAILED, Status.GAVE_UP)


class Kind(models.TextChoices):
    """What a request purges: one URL, everything under a prefix, a cache tag, all."""

    URL = "url", _("URL")
    PREFIX = "prefix", _("prefix")
    TAG = "tag", _("tag")
    ALL = "all", _("everything")


class Trigger(models.TextChoices):
    """What caused an attempt."""

    SAVE = "save", _("save")
    DELETE = "delete", _("delete")
    M2M = "m2m", _("many-to-many change")
    ADMIN = "admin", _("admin")
    COMMAND = "command", _("command")
    API = "api", _("API")
    RETRY = "retry", _("retry")
    CODE_RULE = "code_rule", _("code rule")
    #: A write that sends no signal: ``update()``, ``bulk_create()``, ``bulk_update()``,
    #: a delete without signals (``roan.tags.bulk_writes``).
    BULK = "bulk", _("bulk write")
    #: A rule's ``schedule_fields``: due when the object's datetime comes (roan.outbox.schedule).
    SCHEDULED = "scheduled", _("scheduled")


#: Triggers of content changes (the ones a rule fires on).
EVENT_TRIGGERS = frozenset({Trigger.SAVE, Trigger.DELETE, Trigger.M2M})
#: Triggers of purges a change to content caused (not one someone asked for): inside an
#: editor's request, their outcomes are written once the response is out.
CHANGE_TRIGGERS = EVENT_TRIGGERS | {Trigger.CODE_RULE, Trigger.BULK}


class Verification(models.TextChoices):
    """What fetching the page right after its purge showed (a backend's ``VERIFY``)."""

    # "" is "not verified": the backend has no VERIFY, or the attempt is not an
    # ok/not_cached purge of a URL.
    NONE = "", _("not verified")
    PENDING = "pending", _("probe pending")
    VERIFIED = "verified", _("verified")
    STILL_CACHED = "still_cached", _("still cached")
    UNVERIFIABLE = "unverifiable", _("unverifiable")


class Completion(models.TextChoices):
    """Whether a provider that invalidates asynchronously (a CDN) has finished."""

    # "" is a purge the provider finished before it answered (every cache but the
    # CDNs that invalidate asynchronously).
    NONE = "", _("immediate")
    IN_PROGRESS = "in_progress", _("in progress")
    COMPLETED = "completed", _("completed")
    # The provider never said it was done within roan's checks.
    UNCONFIRMED = "unconfirmed", _("not confirmed")


class Warming(models.TextChoices):
    """Whether roan fetched a purged page through the cache again (a backend's ``WARM``)."""

    # "" is "not warmed": the backend has no WARM, or the attempt is not an ok/not_cached
    # purge of a URL.
    NONE = "", _("not warmed")
    PENDING = "pending", _("warming")
    WARMED = "warmed", _("warmed")
    FAILED = "failed", _("not warmed (failed)")


#: The permission to purge by hand (the admin's "purge now", re-purge, preview's test
#: purge), as ``user.has_perm()`` takes it; and the codename and label the model declares.
PURGE_NOW = "roan.purge_now"
#: The permission to purge a whole cache ("everything", or a prefix of nothing but "/").
PURGE_ALL = "roan.purge_all"
PERMISSIONS: list[tuple[str, Any]] = [
    ("purge_now", _("Can purge caches by hand")),
    ("purge_all", _("Can purge everything on a backend")),
]
