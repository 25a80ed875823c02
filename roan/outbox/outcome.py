"""What became of the attempt rows one action wrote, in the editor's words.

A manual purge, a save in the admin and ``roan_purge`` all end the same way: read where
their rows stand now (sent, waiting, skipped and why, failed and why) and say so, rather
than counting rows written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from django.contrib import messages
from django.db.models import Count
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from roan import pauses
from roan.conf import roan_settings
from roan.context import is_active
from roan.models import PurgeAttempt
from roan.vocabulary import Status

#: Distinct reasons quoted per status; the rest are counted.
REASONS_SHOWN = 3
#: Ids per query when reading the rows back.
ID_CHUNK = 500


@dataclasses.dataclass
class Outcome:
    """How the attempt rows of one purge (or one save) stand: counts and reasons by status."""

    ids: list[int]
    counts: dict[str, int]
    #: status -> its distinct errors, the most frequent first
    reasons: dict[str, list[str]]
    #: backends of pending rows that are paused (roan.outbox.limits)
    paused: list[str]

    @property
    def sent(self) -> int:
        return self.counts.get(Status.OK, 0) + self.counts.get(Status.NOT_CACHED, 0)

    @property
    def pending(self) -> int:
        return self.counts.get(Status.PENDING, 0)

    @property
    def troubled(self) -> int:
        return sum(self.counts.get(s, 0) for s in (Status.SKIPPED, Status.FAILED, Status.GAVE_UP))


def outcome(
    ids: Sequence[int], recorded: Mapping[int, tuple[str, str, str]] | None = None
) -> Outcome:
    """Read where the rows ``ids`` stand now (a few grouped queries, chunked ids).

    ``recorded``: outcomes this process has just written and committed for some of them,
    id -> (status, error, backend) (``collect_written().recorded``); those rows are not
    read back."""
    counts: dict[str, int] = {}
    errors: dict[str, dict[str, int]] = {}
    pending_backends: set[str] = set()
    unique = list(dict.fromkeys(ids))

    def count(status: str, error: str, backend: str, n: int) -> None:
        counts[status] = counts.get(status, 0) + n
        if status == Status.PENDING:
            pending_backends.add(backend)
        elif error:
            by_error = errors.setdefault(status, {})
            by_error[error] = by_error.get(error, 0) + n

    known = recorded or {}
    unread = [pk for pk in unique if pk not in known]
    for pk in unique:
        if pk in known:
            count(*known[pk], 1)
    for start in range(0, len(unread), ID_CHUNK):
        rows = (
            PurgeAttempt.objects.filter(pk__in=unread[start : start + ID_CHUNK])
            .order_by()
            .values("status", "error", "backend")
            .annotate(n=Count("pk"))
        )
        for row in rows:
            count(row["status"], row["error"], row["backend"], row["n"])
    reasons = {
        status: [e for e, _n in sorted(found.items(), key=lambda item: -item[1])]
        for status, found in errors.items()
    }
    paused = sorted(pending_backends & pauses.paused_backends()) if pending_backends else []
    return Outcome(unique, counts, reasons, paused)


def _why(found: Outcome, status: str) -> str:
    reasons = found.reasons.get(status, [])
    if not reasons:
        return ""
    text = "; ".join(reasons[:REASONS_SHOWN])
    more = len(reasons) - REASONS_SHOWN
    if more > 0:
        text += " " + ngettext("(and %(n)d other reason)", "(and %(n)d other reasons)", more) % {
            "n": more
        }
    return text


def outcome_parts(found: Outcome, *, queued: bool = False) -> list[str]:
    """ "2 purged", "1 skipped, not sent: <why>", ...: one phrase per status present."""
    counts = found.counts
    parts: list[str] = []
    if n := counts.get(Status.OK, 0):
        parts.append(ngettext("%(n)d purged", "%(n)d purged", n) % {"n": n})
    if n := counts.get(Status.NOT_CACHED, 0):
        parts.append(
            ngettext(
                "%(n)d not cached (nothing to purge)", "%(n)d not cached (nothing to purge)", n
            )
            % {"n": n}
        )
    if n := found.pending:
        if roan_settings.DISPATCH == "task":
            text = ngettext("%(n)d queued for a task worker", "%(n)d queued for a task worker", n)
        elif queued:
            text = ngettext(
                "%(n)d queued, sent once this page has loaded (or by roan_dispatch)",
                "%(n)d queued, sent once this page has loaded (or by roan_dispatch)",
                n,
            )
        elif found.paused:
            text = ngettext(
                "%(n)d waiting: %(backends)s paused",
                "%(n)d waiting: %(backends)s paused",
                n,
            )
        else:
            text = ngettext("%(n)d waiting to be sent", "%(n)d waiting to be sent", n)
        parts.append(text % {"n": n, "backends": ", ".join(found.paused)})
    for status in (Status.FAILED, Status.GAVE_UP, Status.SKIPPED):
        if n := counts.get(status, 0):
            why = _why(found, status)
            phrase = _trouble(status, n)
            parts.append(f"{phrase} ({why})" if why else phrase)
    return parts


def _trouble(status: str, n: int) -> str:
    if status == Status.FAILED:
        text = ngettext("%(n)d failed, to be retried", "%(n)d failed, to be retried", n)
    elif status == Status.GAVE_UP:
        text = ngettext("%(n)d gave up", "%(n)d gave up", n)
    else:
        text = ngettext("%(n)d skipped, not sent", "%(n)d skipped, not sent", n)
    return text % {"n": n}


#: At most this many ids go into a link to the log (``?id__in=``); more become a range.
LINKED_IDS = 100


def attempts_url(log_url: str, ids: Sequence[int]) -> str:
    """The purge log showing the attempts ``ids`` (a range of ids when there are many)."""
    ids = sorted(set(ids))
    if len(ids) <= LINKED_IDS:
        return f"{log_url}?id__in={','.join(map(str, ids))}"
    return f"{log_url}?id__gte={ids[0]}&id__lte={ids[-1]}"


def outcome_message(
    lead: str, found: Outcome, *, log_url: str | None, queued: bool = False
) -> tuple[str, int]:
    """The message for a purge or a save, and its level: success when everything was
    purged or is on its way, a warning when some of it was skipped or failed, an error
    when none of it could be sent."""
    parts = outcome_parts(found, queued=queued)
    if not parts:
        if not is_active():
            parts = [_("nothing was written: roan is switched off (ROAN_ENABLED)")]
        else:
            parts = [_("nothing to purge")]
    text = format_html("{} {}.", lead, ", ".join(parts))
    if found.ids and log_url:
        label = ngettext("Show this attempt", "Show these attempts", len(found.ids))
        text = format_html('{} <a href="{}">{}</a>', text, attempts_url(log_url, found.ids), label)
    if found.troubled and not (found.sent or found.pending):
        return text, messages.ERROR
    return text, messages.WARNING if found.troubled else messages.SUCCESS
