"""roan's schema: purge rules (edited by people) and purge attempts (the audit log).

The attempt table is also roan's outbox: pending rows are written in the transaction that
changed the content and sent after it commits, so a crash between the two loses nothing.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext_lazy as _

from roan import vocabulary
from roan.backends.base import MAX_ALIAS_LENGTH, MAX_HOST_LENGTH, MAX_TARGET_LENGTH
from roan.managers import (
    BackendStateManager,
    PurgeAttemptManager,
    PurgeRuleManager,
    PurgeTryManager,
)
from roan.rules.validation import clean_rule


class PurgeRule(models.Model):
    """When an object of ``content_type`` changes, purge the URLs its templates render."""

    name = models.CharField(
        _("name"),
        max_length=200,
        unique=True,
        help_text=_("A unique name, used as the key in imports and exports."),
    )
    content_type = models.ForeignKey(
        ContentType,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("model"),
        help_text=_("The model whose changes fire this rule."),
    )
    on_save = models.BooleanField(
        _("on save"), default=True, help_text=_("Fire when an object is created or changed.")
    )
    on_delete = models.BooleanField(
        _("on delete"), default=True, help_text=_("Fire when an object is deleted.")
    )
    on_m2m = models.BooleanField(
        _("on many-to-many change"),
        default=False,
        help_text=_(
            "Fire when objects are added to, removed from or cleared from one of its "
            "many-to-many relations."
        ),
    )
    templates = models.TextField(
        _("URL templates"),
        help_text=_(
            "One path per line, such as /posts/ or /posts/{slug}/. A placeholder is a "
            "field or a path through forward relations ({author.username}); "
            "{get_absolute_url} is the object's own URL. End a line with * to purge a prefix."
        ),
    )
    backends = models.JSONField(
        _("backends"),
        default=list,
        blank=True,
        help_text=_("Aliases from ROAN_BACKENDS to purge on; empty means all of them."),
    )
    schedule_fields = models.CharField(
        _("also purge at"),
        max_length=200,
        blank=True,
        default="",
        help_text=_(
            "Date and time fields of the model, separated by commas, such as publish_at, "
            "expires_at. When an object is saved with one of them in the future, its URLs "
            "are purged again at that moment, with no save then."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = PurgeRuleManager()

    class Meta:
        verbose_name = _("purge rule")
        verbose_name_plural = _("purge rules")
        ordering = ["name"]
        permissions = vocabulary.PERMISSIONS

    def __str__(self) -> str:
        return self.name

    def natural_key(self) -> tuple[str]:
        return (self.name,)

    @property
    def schedule_names(self) -> list[str]:
        return [name.strip() for name in self.schedule_fields.split(",") if name.strip()]

    @property
    def template_lines(self) -> list[str]:
        return [line.strip() for line in self.templates.splitlines() if line.strip()]

    def clean(self) -> None:
        clean_rule(self)


class PurgeAttempt(models.Model):
    """One purge of one target on one node of one backend, and how it went."""

    Status = vocabulary.Status

    Kind = vocabulary.Kind

    Trigger = vocabulary.Trigger

    Verification = vocabulary.Verification

    Completion = vocabulary.Completion

    Warming = vocabulary.Warming

    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    status = models.CharField(
        _("status"), max_length=12, choices=Status.choices, default=Status.PENDING
    )
    backend = models.CharField(
        _("backend"), max_length=MAX_ALIAS_LENGTH, help_text=_("The alias in ROAN_BACKENDS.")
    )
    node = models.CharField(
        _("node"), max_length=200, blank=True, help_text=_("The cache server this went to.")
    )
    host = models.CharField(
        _("host"),
        max_length=MAX_HOST_LENGTH,
        blank=True,
        help_text=_("The Host header sent, if any."),
    )
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices, default=Kind.URL)
    target = models.CharField(
        _("target"), max_length=MAX_TARGET_LENGTH, help_text=_("The path, prefix or tag purged.")
    )
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    latency_ms = models.FloatField(_("latency (ms)"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=500, blank=True)
    purge_id = models.CharField(
        _("purge id"), max_length=200, blank=True, help_text=_("The provider's id, if any.")
    )
    tries = models.PositiveSmallIntegerField(
        _("tries"), default=0, help_text=_("How many times this was sent.")
    )
    coalesced = models.PositiveIntegerField(
        _("coalesced"),
        default=0,
        help_text=_(
            "Other requests for the same target that the sender merged into this one: "
            "sent once, their rows record the same outcome."
        ),
    )
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    verification = models.CharField(
        _("verification"),
        max_length=14,
        choices=Verification.choices,
        default=Verification.NONE,
        # The database default too: the outbox writes rows with raw SQL that names
        # only the columns it sets.
        db_default=Verification.NONE,
        blank=True,
        help_text=_(
            "What fetching the page right after the purge showed (the backend's VERIFY "
            "option): the cache served it fresh, or still from its cache."
        ),
    )
    verification_detail = models.CharField(
        _("verification detail"),
        max_length=300,
        blank=True,
        default="",
        db_default="",
        help_text=_("The cache status header or Age seen, or why the page was not probed."),
    )
    completion = models.CharField(
        _("completion"),
        max_length=12,
        choices=Completion.choices,
        default=Completion.NONE,
        db_default=Completion.NONE,
        blank=True,
        help_text=_(
            "For a CDN that invalidates in the background (CloudFront, Azure, Akamai): "
            "accepted and still in progress, or completed, as the provider's status said."
        ),
    )
    soft = models.BooleanField(
        _("soft"),
        default=False,
        db_default=False,
        help_text=_(
            "Marked stale rather than removed (the backend's SOFT option): the cache may "
            "serve the old copy once while it fetches the new one."
        ),
    )
    warming = models.CharField(
        _("warming"),
        max_length=8,
        choices=Warming.choices,
        default=Warming.NONE,
        db_default=Warming.NONE,
        blank=True,
        help_text=_(
            "Whether roan fetched the page through the cache after the purge (the "
            "backend's WARM option), so that the next reader gets a hit."
        ),
    )
    completion_check_at = models.DateTimeField(
        _("next status check"),
        null=True,
        blank=True,
        help_text=_("When roan next asks the provider whether the invalidation is done."),
    )
    completed_at = models.DateTimeField(
        _("completed"),
        null=True,
        blank=True,
        help_text=_("When roan saw the provider report the invalidation done."),
    )
    claimed_until = models.DateTimeField(
        _("claimed until"),
        null=True,
        blank=True,
        help_text=_("A sender owns this attempt until then."),
    )
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # What makes two attempts the same purge: a hash of (backend, node, host, kind,
    # target), written with every row. Rows are never merged when written: the editor's
    # transaction only appends rows of its own, so no key or row that another open
    # transaction writes can make it wait or deadlock. The sender merges instead: it
    # claims the due rows that share a key together, sends the purge once and records
    # the outcome on each. A hash keeps the index within InnoDB's 3072-byte limit, which
    # the 2048-character target alone would break. Rows written elsewhere (fixtures, a
    # project's own code, raw SQL: hence the database default too) have no hash and are
    # still sent together with their twins of the same claim.
    dedup_key = models.CharField(
        _("dedup key"), max_length=32, blank=True, default="", db_default="", editable=False
    )
    trigger = models.CharField(_("trigger"), max_length=12, choices=Trigger.choices)
    # The attempt table is written in every save that fires a rule, so it carries only
    # the indexes the purge log's filters and the senders need (see Meta.indexes); the
    # foreign keys get none of their own.
    rule = models.ForeignKey(
        PurgeRule,
        null=True,
        blank=True,
        db_index=False,
        on_delete=models.SET_NULL,
        related_name="attempts",
        verbose_name=_("rule"),
    )
    rule_name = models.CharField(_("rule name"), max_length=200, blank=True)
    content_type = models.ForeignKey(
        ContentType,
        null=True,
        blank=True,
        db_index=False,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("object type"),
    )
    object_pk = models.CharField(_("object id"), max_length=255, blank=True)
    object_repr = models.CharField(_("object"), max_length=200, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        db_index=False,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("user"),
    )

    objects = PurgeAttemptManager()

    class Meta:
        verbose_name = _("purge attempt")
        verbose_name_plural = _("purge attempts")
        ordering = ["-created_at", "-id"]
        get_latest_by = "created_at"
        indexes = [
            # No index of its own for the rows still to send (a partial one, which MySQL
            # and MariaDB lack, was here): due() reads the pending and failed part of
            # roan_attempt_status, and every insert maintains one index fewer.
            models.Index(fields=["backend", "node", "-created_at"], name="roan_attempt_backend"),
            models.Index(fields=["trigger", "-created_at"], name="roan_attempt_trigger"),
            models.Index(fields=["rule", "-created_at"], name="roan_attempt_rule"),
            models.Index(fields=["status", "-created_at"], name="roan_attempt_status"),
            # The sender takes the due twins of what it claimed (same key) with them: a
            # range of this index per key, the rows still to send only.
            models.Index(fields=["dedup_key", "status"], name="roan_attempt_dedup"),
            # The status checks read the invalidations still in progress, by when due.
            models.Index(
                fields=["completion", "completion_check_at"], name="roan_attempt_completion"
            ),
        ]

    def __str__(self) -> str:
        return _("%(kind)s %(target)s on %(backend)s (%(status)s)") % {
            "kind": self.get_kind_display(),
            "target": self.target,
            "backend": self.backend,
            "status": self.get_status_display(),
        }


class PurgeTry(models.Model):
    """One try of an attempt that failed and was to be tried again.

    The attempt row holds its latest try; a try that fails and will be retried is also
    kept here when it is recorded, so that the next try's outcome does not overwrite it.
    A first try that ends the attempt (ok, not cached, skipped, gave up) writes nothing
    here. Every try of an attempt is thus a row here or the attempt row itself (see
    :meth:`roan.managers.PurgeTryManager.of`).
    """

    attempt = models.ForeignKey(
        PurgeAttempt,
        on_delete=models.CASCADE,
        # The unique (attempt, number) index below serves the joins and the cascade.
        db_index=False,
        # Not "tries": that is the attempt's own count column.
        related_name="kept_tries",
        verbose_name=_("purge attempt"),
    )
    number = models.PositiveSmallIntegerField(
        _("try"), help_text=_("1 for the first try of the attempt, 2 for the next...")
    )
    finished_at = models.DateTimeField(
        _("time"), help_text=_("When the try ended: the cache answered, or could not be reached.")
    )
    status = models.CharField(_("status"), max_length=12, choices=PurgeAttempt.Status.choices)
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    latency_ms = models.FloatField(_("latency (ms)"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=500, blank=True)

    objects = PurgeTryManager()

    class Meta:
        verbose_name = _("purge try")
        verbose_name_plural = _("purge tries")
        ordering = ["attempt", "number"]
        constraints = [
            # Also the index that reads an attempt's tries and deletes them with it. A
            # sender whose lease ran out records the same try as its successor: kept once.
            models.UniqueConstraint(fields=["attempt", "number"], name="roan_try_number"),
        ]
        # The dashboard counts the tries of its windows.
        indexes = [models.Index(fields=["finished_at"], name="roan_try_finished")]

    def __str__(self) -> str:
        return _("try %(number)s of %(attempt)s") % {
            "number": self.number,
            "attempt": self.attempt_id,
        }


class BackendState(models.Model):
    """The pause switch of one backend, shared by every process through the database."""

    alias = models.CharField(
        _("backend"),
        max_length=MAX_ALIAS_LENGTH,
        unique=True,
        help_text=_("The alias in ROAN_BACKENDS."),
    )
    paused = models.BooleanField(
        _("paused"),
        default=False,
        help_text=_(
            "While paused, purges for this backend wait as pending attempts; resuming sends them."
        ),
    )
    paused_at = models.DateTimeField(_("paused at"), null=True, blank=True)
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("paused by"),
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = BackendStateManager()

    class Meta:
        verbose_name = _("backend")
        verbose_name_plural = _("backends")
        ordering = ["alias"]

    def __str__(self) -> str:
        return self.alias

    def natural_key(self) -> tuple[str]:
        return (self.alias,)


class TaggedURL(models.Model):
    """The URL<->tag index: a cached page (``host`` + ``path``) carried ``tag`` until
    ``expires_at``.

    Written once per cache miss by the tag middleware (``roan.tags.index.remember``), read
    when a tag is purged on a backend that cannot purge by tag: the tag becomes a purge of
    each URL it was on. Rows past ``expires_at`` are ignored and deleted by ``roan_prune``.
    """

    tag = models.CharField(_("tag"), max_length=255)
    host = models.CharField(_("host"), max_length=MAX_HOST_LENGTH, blank=True)
    path = models.CharField(
        _("path"), max_length=2048, help_text=_("The path with its query string.")
    )
    # sha256 of host and path: a URL is up to 2,048 characters, longer than MariaDB and
    # PostgreSQL can put in a unique index, so the upsert's key is this digest.
    url_key = models.CharField(_("URL key"), max_length=64)
    # sha256 of host and path without its query string: the index keeps at most
    # ROAN_TAG_INDEX_MAX_VARIANTS query strings per path, counted by this key.
    page_key = models.CharField(_("page key"), max_length=64, blank=True, default="")
    expires_at = models.DateTimeField(_("expires"))

    class Meta:
        verbose_name = _("tagged URL")
        verbose_name_plural = _("tagged URLs")
        constraints = [
            # Also the index that reads by tag (its first column).
            models.UniqueConstraint(fields=["tag", "url_key"], name="roan_taggedurl_unique"),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="roan_taggedurl_expiry"),
            models.Index(fields=["page_key"], name="roan_taggedurl_page"),
            # A tag's newest pages first (the expansion), or its oldest (the bound per
            # tag), without reading and sorting all of a list tag's rows.
            models.Index(fields=["tag", "expires_at"], name="roan_taggedurl_tag_expiry"),
        ]

    def __str__(self) -> str:
        return _("%(tag)s on %(url)s") % {"tag": self.tag, "url": f"{self.host}{self.path}"}


class OverflowedTag(models.Model):
    """A tag that carried more URLs than ``ROAN_TAG_INDEX_MAX_URLS_PER_TAG``: ``roan_prune``
    forgot its oldest pages (``roan.tags.purges.evict_tag_overflow``). Until ``until`` (when
    the last of those pages leaves the caches), a purge of the tag on a backend that reads
    the index and can purge wider (a prefix, everything) does so: the forgotten pages may
    still be cached there. Backends that purge URLs only were sent those pages at once.
    """

    tag = models.CharField(_("tag"), max_length=255, unique=True)
    until = models.DateTimeField(_("until"))

    class Meta:
        verbose_name = _("overflowed tag")
        verbose_name_plural = _("overflowed tags")

    def __str__(self) -> str:
        return self.tag
