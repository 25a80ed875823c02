"""roan's settings, read from ``django.conf.settings`` each time they are used.

Nothing here is read at import time and nothing is written back into ``settings``, so
``override_settings`` works for every one of them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULT_PURGE_URL = "http://localhost/purge"

DEFAULT_RETRY: dict[str, float] = {
    # Attempts in all, the first send included, before an attempt ends ``gave_up``.
    "MAX_ATTEMPTS": 5,
    # Backoff: BASE * FACTOR ** (attempt - 1) seconds, capped at MAX, with jitter.
    "BASE": 5.0,
    "FACTOR": 3.0,
    "MAX": 3600.0,
    # A worker that claimed an attempt owns it this long; then anyone may take it again.
    "LEASE": 120.0,
}


#: ``ROAN_TAG_INDEX_IGNORED_PARAMS`` by default: campaign and click ids that analytics and
#: ad platforms append to links (Google, Meta, Microsoft, Mailchimp, Yandex, Instagram).
DEFAULT_IGNORED_PARAMS: tuple[str, ...] = (
    "utm_*",
    "fbclid",
    "gclid",
    "gbraid",
    "wbraid",
    "dclid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "yclid",
    "igshid",
    "_ga",
    "_gl",
)


def _strings(value: Any) -> tuple[str, ...]:
    """A setting that lists strings: one string alone counts as a list of it; entries
    that are not strings are dropped (the system checks report them); a value that is
    no list at all gives nothing."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple | set | frozenset):
        return ()
    return tuple(entry for entry in value if isinstance(entry, str))


class RoanSettings:
    """One property per ``ROAN_*`` setting, with its default."""

    @property
    def BACKENDS(self) -> dict[str, dict[str, Any]]:
        """``ROAN_BACKENDS``; when unset, one nginx backend at ``ROAN_PURGE_URL`` (0.1)."""
        value = getattr(settings, "ROAN_BACKENDS", None)
        if value is None:
            return {
                "default": {
                    "BACKEND": "roan.backends.nginx.NginxBackend",
                    "LOCATION": self.PURGE_URL,
                }
            }
        return dict(value)

    @property
    def PURGE_URL(self) -> str:
        return str(getattr(settings, "ROAN_PURGE_URL", DEFAULT_PURGE_URL))

    @property
    def DISPATCH(self) -> str:
        return str(getattr(settings, "ROAN_DISPATCH", "inline"))

    @property
    def TASK_BACKEND(self) -> str:
        return str(getattr(settings, "ROAN_TASK_BACKEND", "default"))

    @property
    def TASK_QUEUE(self) -> str:
        return str(getattr(settings, "ROAN_TASK_QUEUE", "default"))

    @property
    def RETRY(self) -> dict[str, float]:
        return {**DEFAULT_RETRY, **getattr(settings, "ROAN_RETRY", {})}

    @property
    def CACHE(self) -> str:
        return str(getattr(settings, "ROAN_CACHE", "default"))

    @property
    def RULES_TTL(self) -> float:
        return float(getattr(settings, "ROAN_RULES_TTL", 1.0))

    @property
    def VERIFY_SAMPLE(self) -> float:
        """``ROAN_VERIFY_SAMPLE``: the fraction of purges (0 to 1, default 0.1) probed on
        backends that have no ``VERIFY`` option and can be probed (nginx, Varnish, an
        ``HTTPBackend`` whose ``URL`` ends with ``{path}``), with ``HOSTS``. 0 turns the
        sampled verification off everywhere; see docs/topics/verification.md."""
        value = getattr(settings, "ROAN_VERIFY_SAMPLE", 0.1)
        try:
            sample = float(value)
        except (TypeError, ValueError):
            return 0.0
        return min(1.0, sample) if sample > 0 else 0.0

    @property
    def MAX_URLS_PER_EVENT(self) -> int:
        return int(getattr(settings, "ROAN_MAX_URLS_PER_EVENT", 1000))

    @property
    def MAX_INLINE_TAG_URLS(self) -> int:
        """``ROAN_MAX_INLINE_TAG_URLS``: the most pages of a change's cache tags that are
        purged inside the editor's request (the changed object's own pages first); the
        others are written with the change and sent once the response is out (or by the
        worker). Default 50."""
        return max(0, int(getattr(settings, "ROAN_MAX_INLINE_TAG_URLS", 50)))

    @property
    def SCHEDULE_HORIZON_DAYS(self) -> int:
        """``ROAN_SCHEDULE_HORIZON_DAYS``: how far ahead a rule's ``schedule_fields`` may
        schedule a purge (default 400 days). A date further ahead is not scheduled: the
        save writes one ``skipped`` attempt saying so, and a later save within the horizon
        schedules it."""
        return int(getattr(settings, "ROAN_SCHEDULE_HORIZON_DAYS", 400))

    @property
    def MAX_MANUAL_PURGES(self) -> int:
        """``ROAN_MAX_MANUAL_PURGES``: the most attempts one manual purge may write.

        A manual purge is one editor's request in the admin (the "Purge URLs" page,
        "Purge now" on rules, "Purge cache for selected", a re-purge). Above this, roan
        refuses the whole request with an error and writes nothing; a prefix, a tag or
        ``roan_purge`` from a shell is the tool for more. Counted per URL per backend,
        before the fan-out to nodes.
        """
        return int(getattr(settings, "ROAN_MAX_MANUAL_PURGES", 10_000))

    @property
    def MAX_INLINE_MANUAL_PURGES(self) -> int:
        """``ROAN_MAX_INLINE_MANUAL_PURGES``: above this many attempts, a manual purge is
        not sent inside the admin's request.

        The rows are written pending and the page answers at once. With
        ``ROAN_DISPATCH = "task"`` a worker sends them; with ``"inline"`` this process
        sends them once the response has gone out, and ``roan_dispatch`` sends any it
        could not (a process that stopped first).
        """
        return int(getattr(settings, "ROAN_MAX_INLINE_MANUAL_PURGES", 100))

    @property
    def MAX_IMPORT_BYTES(self) -> int:
        """``ROAN_MAX_IMPORT_BYTES``: the largest rules file the admin's import reads, in
        bytes, as uploaded and as unpacked: an ``.xlsx`` is a zip, and the sizes its members
        declare (which bound what is read of them) must add up to no more. Default 5 MiB.

        Checked before the file is parsed; a larger one is refused with a form error and
        nothing is imported.
        """
        return int(getattr(settings, "ROAN_MAX_IMPORT_BYTES", 5 * 1024 * 1024))

    @property
    def MAX_IMPORT_ROWS(self) -> int:
        """``ROAN_MAX_IMPORT_ROWS``: the most rows (rules) one import may have, counted
        before the file is parsed (CSV lines, a spreadsheet's rows, the items of a JSON or
        YAML list). Default 10,000."""
        return int(getattr(settings, "ROAN_MAX_IMPORT_ROWS", 10_000))

    @property
    def RETENTION_DAYS(self) -> int | None:
        """``ROAN_RETENTION_DAYS``: what ``roan_prune`` keeps when run without ``--days``."""
        value = getattr(settings, "ROAN_RETENTION_DAYS", None)
        return None if value is None else int(value)

    @property
    def RULE_MODELS(self) -> tuple[str, ...] | None:
        """``ROAN_RULE_MODELS``: ``app_label.model`` labels or app labels database rules
        may name. ``None`` (the default) allows every installed model but those of
        ``auth``, ``sessions``, ``admin``, ``contenttypes`` and roan. Entries that are not
        strings are dropped here (roan.E020 reports them); a value that is no list at all
        allows nothing."""
        value = getattr(settings, "ROAN_RULE_MODELS", None)
        if value is None:
            return None
        return _strings(value)

    @property
    def PRIVATE_FIELDS(self) -> tuple[str, ...]:
        """``ROAN_PRIVATE_FIELDS``: fields no placeholder may read, besides those named like
        a secret; each ``field`` (on every model) or ``app_label.model.field``. Default: none."""
        value = getattr(settings, "ROAN_PRIVATE_FIELDS", ())
        return _strings(value)

    @property
    def TAG_PREFIX(self) -> str:
        """``ROAN_TAG_PREFIX``: put before every cache tag roan writes or purges (default
        ``""``), so that several sites sharing one cache or CDN account purge only their
        own pages: ``"shop-"`` makes ``shop-blog.post:42``. Latin-1 text without spaces or
        commas (roan.E070)."""
        value = getattr(settings, "ROAN_TAG_PREFIX", "")
        return value if isinstance(value, str) else ""

    @property
    def ENABLED(self) -> bool:
        return bool(getattr(settings, "ROAN_ENABLED", True))

    @property
    def TAGS(self) -> bool:
        """``ROAN_TAGS``: purge cache tags automatically when an object is saved, deleted
        or its many-to-many relations change, and keep the URL<->tag index.

        Default: on exactly when ``roan.middleware.CacheTagMiddleware`` is in
        ``MIDDLEWARE`` (the pages carry tags, so purging them is what a user expects);
        off otherwise, so that a site without tags writes no tag rows at all."""
        value = getattr(settings, "ROAN_TAGS", None)
        if value is None:
            return "roan.middleware.CacheTagMiddleware" in getattr(settings, "MIDDLEWARE", ())
        return bool(value)

    @property
    def TAG_INDEX_TTL(self) -> float:
        """``ROAN_TAG_INDEX_TTL``: seconds the URL<->tag index keeps a page whose response
        says neither ``s-maxage`` nor ``max-age`` (the cache keeps it by its own rules).
        Default one day."""
        return float(getattr(settings, "ROAN_TAG_INDEX_TTL", 86400))

    @property
    def TAG_INDEX_MAX_TAGS(self) -> int:
        """``ROAN_TAG_INDEX_MAX_TAGS``: the most tags the index stores for one URL. Over
        it, the page's object tags are stored as their model's list tag (less precise,
        never less correct: every save purges the list tag too). Default 200."""
        return int(getattr(settings, "ROAN_TAG_INDEX_MAX_TAGS", 200))

    @property
    def TAG_INDEX_IGNORED_PARAMS(self) -> tuple[str, ...]:
        """``ROAN_TAG_INDEX_IGNORED_PARAMS``: query parameters (shell-style patterns, such
        as ``utm_*``) that mark a URL as a tracking variant of a page. Such a URL is not
        indexed, and when a backend purges tags by URL its response goes out ``private``:
        each campaign or click id would be another cache key no purge could list. Default
        the usual tracking parameters (:data:`DEFAULT_IGNORED_PARAMS`)."""
        value = getattr(settings, "ROAN_TAG_INDEX_IGNORED_PARAMS", DEFAULT_IGNORED_PARAMS)
        return _strings(value)

    @property
    def TAG_INDEX_MAX_VARIANTS(self) -> int:
        """``ROAN_TAG_INDEX_MAX_VARIANTS``: the most query strings the index keeps for one
        path on one host (the bare path, always kept, counts as one). A further variant is
        not indexed, and when a backend purges tags by URL its response goes out
        ``private``, so that no cache keeps a copy no purge reaches. Default 20."""
        return max(1, int(getattr(settings, "ROAN_TAG_INDEX_MAX_VARIANTS", 20)))

    @property
    def TAG_INDEX_MAX_ROWS(self) -> int | None:
        """``ROAN_TAG_INDEX_MAX_ROWS``: the most live rows the URL<->tag index keeps.
        ``roan_prune`` evicts the URLs rendered longest ago beyond it, purging each
        first (an evicted page must not stay cached where no tag purge finds it).
        ``None``: no bound. Default 1,000,000."""
        value = getattr(settings, "ROAN_TAG_INDEX_MAX_ROWS", 1_000_000)
        return None if value is None else max(0, int(value))

    @property
    def TAG_INDEX_MAX_URLS_PER_TAG(self) -> int | None:
        """``ROAN_TAG_INDEX_MAX_URLS_PER_TAG``: the most live URLs the URL<->tag index
        keeps for one tag. ``roan_prune`` forgets a tag's pages rendered longest ago
        beyond it: purged at once on the backends that purge URLs only (nginx), and on
        those that can purge wider (a prefix, everything) the tag is marked overflowed, so
        that its next purges there are wide until those pages have left the caches.
        ``None``: no bound. Default 10,000."""
        value = getattr(settings, "ROAN_TAG_INDEX_MAX_URLS_PER_TAG", 10_000)
        return None if value is None else max(1, int(value))

    @property
    def TAG_HEADER_LIMIT(self) -> int:
        """``ROAN_TAG_HEADER_LIMIT``: the most bytes of a tag header (``xkey``,
        ``Cache-Tag``...) unless a backend's ``TAG_HEADER_LIMIT`` option says otherwise;
        never more than the cache itself accepts. Over it, object tags collapse to their
        model's list tag. Default 2048: a proxy in front of Django reads every response
        header into one buffer (nginx's ``proxy_buffer_size``, 4 KiB by default), and a
        bigger header makes it answer 502 for that page."""
        return int(getattr(settings, "ROAN_TAG_HEADER_LIMIT", 2048))

    @property
    def RENDER_GUARD(self) -> bool:
        """``ROAN_RENDER_GUARD``: a tagged page rendered while a change to what it shows
        committed goes out ``private, no-store``, so that no cache keeps what may be the
        old content after the purge (``roan.outbox.render_guard``). Default ``True``."""
        return bool(getattr(settings, "ROAN_RENDER_GUARD", True))

    @property
    def AUDIT_IGNORE(self) -> tuple[str, ...]:
        """``ROAN_AUDIT_IGNORE``: regular expressions for the parts of a page that differ
        between two renders of the same content (a timestamp, a nonce); ``roan_audit``
        removes every match from both copies before comparing them. CSRF tokens are
        always ignored. Default none."""
        return tuple(str(p) for p in getattr(settings, "ROAN_AUDIT_IGNORE", ()))


roan_settings = RoanSettings()
