"""Prove the cache is fresh: compare indexed pages through the cache with the origin.

Exit status: 0 when every page checked is fresh, 1 when a page is stale, 2 when none is
stale but some could not be fetched (or nothing could be audited). For cron::

    */30 * * * * cd /srv/site && ./manage.py roan_audit --sample 500 --quiet
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from roan import audit
from roan.conf import roan_settings
from roan.tags import index as tag_index

#: The most pages one ``--sample`` may ask for; ``--all`` has no bound but the index's.
MAX_SAMPLE = 100_000
DEFAULT_SAMPLE = 200


class Command(BaseCommand):
    help = (
        "Fetch indexed pages through the cache and from the origin, compare them and list "
        "every stale page with its tags and last purges. Exits 1 when a page is stale."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--sample",
            type=int,
            default=DEFAULT_SAMPLE,
            help=f"Audit this many indexed pages picked at random (default {DEFAULT_SAMPLE}, "
            f"at most {MAX_SAMPLE:,}).",
        )
        which.add_argument("--all", action="store_true", help="Audit every indexed page.")
        parser.add_argument(
            "--cache-url",
            action="append",
            default=None,
            help="The cache to fetch pages through, e.g. http://127.0.0.1:8080 (repeatable). "
            "Default: each node of the URL-purging backends (nginx, Varnish).",
        )
        parser.add_argument(
            "--origin",
            default=None,
            help="An uncached server of the site to compare with, e.g. http://127.0.0.1:8000. "
            "Default: render each page in this process.",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            help="Seconds to wait for one page (default 10, at most 120).",
        )
        parser.add_argument(
            "--recheck-after",
            type=float,
            default=1.0,
            help="Seconds to wait before fetching a differing page again (default 1).",
        )
        parser.add_argument(
            "--quiet", action="store_true", help="Print stale pages and errors only."
        )

    def handle(
        self,
        *args: Any,
        sample: int,
        all: bool,
        cache_url: list[str] | None,
        origin: str | None,
        timeout: float,
        recheck_after: float,
        quiet: bool,
        **options: Any,
    ) -> None:
        if not all and not 1 <= sample <= MAX_SAMPLE:
            raise CommandError(f"--sample must be between 1 and {MAX_SAMPLE:,}")
        if not 0.1 <= timeout <= 120:
            raise CommandError("--timeout must be between 0.1 and 120 seconds")
        if not 0 <= recheck_after <= 60:
            raise CommandError("--recheck-after must be between 0 and 60 seconds")
        if origin and not origin.startswith(("http://", "https://")):
            raise CommandError("--origin must be an http:// or https:// URL")
        backends = tag_index.url_purging_backends()
        try:
            if cache_url:
                caches = [audit.given_cache(url, backends) for url in cache_url]
            else:
                caches = audit.caches_of(backends)
        except audit.AuditError as exc:
            raise CommandError(str(exc)) from exc
        if not caches:
            raise CommandError(
                "no cache to fetch pages through: no nginx or Varnish backend purges by URL; "
                "name one with --cache-url",
                returncode=2,
            )
        if not roan_settings.TAGS:
            self.stderr.write("roan_audit: ROAN_TAGS is off: the tag index lists no pages")
        try:
            result = audit.run(
                caches,
                backends,
                sample=None if all else sample,
                origin=origin.rstrip("/") if origin else None,
                timeout=timeout,
                recheck_after=recheck_after,
                ignore=roan_settings.AUDIT_IGNORE,
                progress=None if quiet else lambda line: self.stderr.write(f"roan_audit: {line}"),
            )
        except audit.AuditError as exc:
            raise CommandError(str(exc)) from exc
        if not result.pages:
            self.stderr.write(
                "roan_audit: the tag index lists no page a cache may hold: pages are indexed "
                "as visitors fetch them, with the tag middleware installed and ROAN_TAGS on"
            )
        self.report(result, quiet)
        if result.stale:
            raise SystemExit(1)
        if result.errors or not result.checked:
            raise SystemExit(2)

    def report(self, result: audit.Result, quiet: bool) -> None:
        for stale in result.stale:
            page = stale.page
            self.stdout.write(
                f"STALE {page.host}{page.path} via {stale.cache} "
                f"[{stale.cache_header or '?'}]: cache {stale.cached_status}, "
                f"origin {stale.origin_status}"
            )
            self.stdout.write(f"  tags: {', '.join(stale.tags) or '(none left in the index)'}")
            if not stale.purges:
                self.stdout.write("  no purge named this page")
            for attempt in stale.purges:
                when = timezone.localtime(attempt.created_at).strftime("%Y-%m-%d %H:%M:%S")
                self.stdout.write(
                    f"  purge #{attempt.pk} {when} {attempt.backend}/{attempt.node} "
                    f"{attempt.status} {attempt.http_status or ''} {attempt.trigger}".rstrip()
                )
        for error in result.errors[:50]:
            self.stderr.write(f"roan_audit: could not check {error}")
        if not quiet or result.stale or result.errors:
            self.stdout.write(
                f"roan_audit: {result.pages:,} page(s), {result.checked:,} check(s), "
                f"{len(result.stale):,} stale, {len(result.errors):,} error(s) "
                f"in {result.seconds:.1f} s"
            )
