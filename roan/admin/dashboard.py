"""The purge dashboard at ``admin/roan/dashboard/``: how purging went lately.

Every figure comes from a handful of aggregate queries over indexed time ranges (the
attempt table may hold millions of rows): counts are grouped in the database, latency
percentiles come from a bounded sample of the newest attempts, and no query reads more
than seven days of rows. The counts per window and per hour read the rows of the
current hour only: closed hours are counted once and kept in ``ROAN_CACHE``
(:mod:`roan.admin.rollup`). The charts are inline SVG drawn here, so the page needs no
JavaScript and no CDN, and each has a table alternative.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import Count, Min, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from roan import audit, pauses
from roan.admin import operations, rollup, uses
from roan.admin.common import (
    ERROR_CHARS,
    breadcrumbs,
    can_purge,
    can_purge_all,
    can_view_log,
    page,
    stand_in,
)
from roan.backends import get_backends
from roan.backends.base import PurgeRequest, purges_everything
from roan.conf import roan_settings
from roan.models import BackendState, PurgeAttempt, PurgeTry
from roan.outbox import key_misses, verify, warming
from roan.tags import index as tag_index
from roan.vocabulary import FAILING_STATUSES, Completion, Status, Warming

SUCCESS = (Status.OK, Status.NOT_CACHED)
FAILURE = FAILING_STATUSES
WINDOWS = (
    ("1h", gettext_lazy("Last hour"), datetime.timedelta(hours=1)),
    ("24h", gettext_lazy("Last 24 hours"), datetime.timedelta(hours=24)),
    ("7d", gettext_lazy("Last 7 days"), datetime.timedelta(days=7)),
)
HOURS = 24
VERIFICATION_WINDOW = datetime.timedelta(hours=24)
#: Percentiles are computed from at most this many of a backend's newest latencies.
LATENCY_SAMPLE = 1000
LATEST_FAILURES = 10
#: Counting consecutive failures stops here; the page shows "1000+".
CONSECUTIVE_CAP = 1000

#: Distinct line colours in the latency chart (dashboard.css --roan-series-N).
SERIES_COLOURS = 8

# Chart geometry, in SVG user units (the SVG scales to the page's width).
CHART_WIDTH = 720
CHART_HEIGHT = 200
PLOT_LEFT = 48
PLOT_RIGHT = 8
PLOT_TOP = 10
PLOT_BOTTOM = 24


@dataclasses.dataclass
class Window:
    key: str
    label: str
    counts: dict[str, int]
    #: tries in the window that failed and were (to be) sent again (PurgeTry rows)
    retried: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def success_rate(self) -> float | None:
        """Share of finished attempts that succeeded; pending and skipped ones do not count."""
        finished = sum(self.counts.get(s, 0) for s in (*SUCCESS, *FAILURE))
        if not finished:
            return None
        return 100.0 * sum(self.counts.get(s, 0) for s in SUCCESS) / finished


@dataclasses.dataclass
class Node:
    backend: str
    node: str
    last_success: datetime.datetime | None = None
    last_failure: datetime.datetime | None = None
    consecutive_failures: int = 0

    @property
    def consecutive_capped(self) -> bool:
        return self.consecutive_failures >= CONSECUTIVE_CAP


@dataclasses.dataclass
class Hour:
    start: datetime.datetime
    ok: int = 0
    not_cached: int = 0
    failed: int = 0
    other: int = 0
    latency_sum: dict[str, float] = dataclasses.field(default_factory=dict)
    latency_n: dict[str, int] = dataclasses.field(default_factory=dict)

    def mean_latency(self, backend: str) -> float | None:
        n = self.latency_n.get(backend, 0)
        return self.latency_sum[backend] / n if n else None


# -- the figures ---------------------------------------------------------------------------


def window_counts(
    qs: QuerySet[PurgeAttempt], now: datetime.datetime, counted: rollup.Rollup | None = None
) -> list[Window]:
    """Attempts per status for each window, over the last seven days.

    From the hours' rollup (:mod:`roan.admin.rollup`): the closed hours kept in the
    cache, the current hour and the part-hours where the windows start from the rows.
    """
    since = {key: now - delta for key, _label, delta in WINDOWS}
    counted = counted or _rollup(qs, now)
    retried = PurgeTry.objects.db_manager(qs.db).retried_counts(since)
    return [
        Window(key, str(label), dict(counted.windows[since[key]]), retried[key])
        for key, label, _delta in WINDOWS
    ]


def _rollup(qs: QuerySet[PurgeAttempt], now: datetime.datetime) -> rollup.Rollup:
    starts = [now - delta for _key, _label, delta in WINDOWS]
    verdicts_since = now - VERIFICATION_WINDOW
    return rollup.rollup(qs, now, [*starts, verdicts_since], _horizon(now), verdicts_since)


def queue(qs: QuerySet[PurgeAttempt]) -> dict[str, Any]:
    """Pending and failing (awaiting a retry) counts, and the oldest pending attempt."""
    rows = (
        qs.filter(status__in=[Status.PENDING, Status.FAILED])
        .order_by()
        .values("status")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
    )
    by_status: dict[str, dict[str, Any]] = {row["status"]: dict(row) for row in rows}
    pending = by_status.get(Status.PENDING, {})
    return {
        "pending": pending.get("n", 0),
        "failing": by_status.get(Status.FAILED, {}).get("n", 0),
        "oldest_pending": pending.get("oldest"),
        # CDN invalidations accepted and not yet reported done (roan.outbox.completion).
        "in_progress": qs.filter(completion=Completion.IN_PROGRESS).count(),
    }


def verification_counts(
    qs: QuerySet[PurgeAttempt], now: datetime.datetime, counted: rollup.Rollup | None = None
) -> dict[str, Any]:
    """Purges probed by verification in the last 24 hours, by verdict (the rollup's),
    and each backend's rates: verified fresh and still cached, of those probed."""
    totals: dict[str, int] = {}
    by_backend: dict[str, dict[str, int]] = {}
    for key, n in (counted or _rollup(qs, now)).verdicts.items():
        backend, verdict = rollup.split_verdict(key)
        totals[verdict] = totals.get(verdict, 0) + n
        mine = by_backend.setdefault(backend, {})
        mine[verdict] = mine.get(verdict, 0) + n
    return {
        "any": bool(totals),
        "verified": totals.get(verify.VERIFIED, 0),
        "still_cached": totals.get(verify.STILL_CACHED, 0),
        "unverified": totals.get(verify.UNVERIFIABLE, 0) + totals.get(verify.PENDING, 0),
        "pending": totals.get(verify.PENDING, 0),
        "hint": verify.HINT,
        "backends": [_rates(backend, counts) for backend, counts in sorted(by_backend.items())],
    }


def _rates(backend: str, counts: dict[str, int]) -> dict[str, Any]:
    fresh = counts.get(verify.VERIFIED, 0)
    stale = counts.get(verify.STILL_CACHED, 0)
    told = fresh + stale  # probes that answered: the rates' denominator

    def percent(n: int) -> int | None:
        return round(100 * n / told) if told else None

    return {
        "backend": backend,
        "probed": sum(counts.values()),
        "fresh": fresh,
        "stale": stale,
        "fresh_percent": percent(fresh),
        "stale_percent": percent(stale),
    }


def warming_counts(qs: QuerySet[PurgeAttempt], now: datetime.datetime) -> dict[str, Any]:
    """Pages warmed after their purge (a backend's WARM) in the last hour, by outcome.

    No query unless some backend warms; then one over the last hour of the created_at
    index, the part-hour the dashboard reads from the rows anyway.
    """
    if not any(warming.options_for(alias) for alias in roan_settings.BACKENDS):
        return {"any": False}
    since = now - datetime.timedelta(hours=1)
    rows = (
        qs.filter(created_at__gte=since)
        .exclude(warming=Warming.NONE)
        .order_by()
        .values("warming")
        .annotate(n=Count("pk"))
    )
    counts = {row["warming"]: row["n"] for row in rows}
    return {
        "any": True,
        "warmed": counts.get(Warming.WARMED, 0),
        "failed": counts.get(Warming.FAILED, 0),
        "pending": counts.get(Warming.PENDING, 0),
    }


def hours(
    qs: QuerySet[PurgeAttempt], now: datetime.datetime, counted: rollup.Rollup | None = None
) -> tuple[list[Hour], set[Any]]:
    """The last 24 clock hours (the current one included): counts and latency per backend.

    Also returns the (backend, node) pairs seen in that time.
    """
    current = rollup.floor_hour(now)
    first = current - datetime.timedelta(hours=HOURS - 1)
    buckets = [Hour(first + datetime.timedelta(hours=i)) for i in range(HOURS)]
    counted = counted or _rollup(qs, now)
    seen: set[tuple[str, str]] = set()
    for bucket in buckets:
        for (backend, node, status), cell in counted.hours.get(bucket.start, {}).items():
            seen.add((backend, node))
            n = cell.n
            if status == Status.OK:
                bucket.ok += n
            elif status == Status.NOT_CACHED:
                bucket.not_cached += n
            elif status in FAILURE:
                bucket.failed += n
            else:
                bucket.other += n
            if cell.latency_n:
                total = bucket.latency_sum.get(backend, 0.0) + cell.latency_sum
                bucket.latency_sum[backend] = total
                bucket.latency_n[backend] = bucket.latency_n.get(backend, 0) + cell.latency_n
    return buckets, seen


def _horizon(now: datetime.datetime) -> datetime.datetime:
    """An upper bound for time ranges, with room for app servers' clocks to differ.

    A range closed on both ends is what makes SQLite's planner (without ANALYZE
    statistics) choose the created_at index over scanning the (backend, node) one.
    """
    return now + datetime.timedelta(hours=1)


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of an ascending sequence."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latencies(
    qs: QuerySet[PurgeAttempt], pairs: Iterable[tuple[str, str]], now: datetime.datetime
) -> list[dict[str, Any]]:
    """p50/p95/p99 per backend from its newest attempts with a latency in the last 24 h.

    Read per node, newest first, so that each query walks the (backend, node, created_at)
    index from its end and stops after ``LATENCY_SAMPLE`` rows; the nodes' samples are
    then merged and cut to the backend's newest ``LATENCY_SAMPLE``.
    """
    since = now - datetime.timedelta(hours=24)
    pairs = list(pairs)
    node_count = collections.Counter(backend for backend, _node in pairs)
    samples: dict[str, list[tuple[Any, float]]] = {}
    for backend, node in pairs:
        newest = qs.filter(
            backend=backend, node=node, created_at__gte=since, latency_ms__isnull=False
        ).order_by("-created_at")[:LATENCY_SAMPLE]
        if node_count[backend] == 1:
            # Nothing to merge: the times (a third of the page's rows) are not read.
            rows: Iterable[tuple[Any, float | None]] = (
                (0, v) for v in newest.values_list("latency_ms", flat=True)
            )
        else:
            rows = newest.values_list("created_at", "latency_ms")
        samples.setdefault(backend, []).extend((t, v) for t, v in rows if v is not None)
    result = []
    for backend, found in samples.items():
        if node_count[backend] > 1:
            found.sort(reverse=True)
        sample = sorted(v for _t, v in found[:LATENCY_SAMPLE])
        row: dict[str, Any] = {"backend": backend, "n": len(sample)}
        if sample:
            row.update(p50=percentile(sample, 50), p95=percentile(sample, 95))
            row["p99"] = percentile(sample, 99)
        result.append(row)
    return result


def keys_differ(backends: Iterable[str]) -> list[key_misses.Misses]:
    """The backends whose recent purges of pages known to be cached mostly found
    nothing (one bounded query each; see :mod:`roan.outbox.key_misses`)."""
    found = [key_misses.misses(alias) for alias in backends]
    return [m for m in found if m.keys_differ]


def configured_nodes() -> list[tuple[str, str]]:
    try:
        return [(alias, node) for alias, b in get_backends().items() for node in b.nodes]
    except ImproperlyConfigured:  # the system checks report it; show what the log shows
        return []


def nodes(
    qs: QuerySet[PurgeAttempt],
    pairs: Iterable[tuple[str, str]],
    now: datetime.datetime,
    counted: rollup.Rollup | None = None,
) -> list[Node]:
    """Last success, last failure and failures since the last success, per backend and node.

    Looks back seven days at most, so a node that has been failing for longer shows no
    last success rather than a scan of its whole history. The last failure is looked up
    in the newest hour whose counts (the rollup's) hold one: a range of one hour.
    """
    since = now - datetime.timedelta(days=7)
    recent = qs.filter(created_at__range=(since, _horizon(now))).order_by()
    counted = counted or _rollup(qs, now)
    newest_first = sorted(counted.hours, reverse=True)
    edge_end = min(counted.hours, default=since)

    def last_failure(backend: str, node: str) -> datetime.datetime | None:
        failures = recent.filter(backend=backend, node=node, status__in=FAILURE)
        newest = failures.order_by("-created_at").values_list("created_at", flat=True)
        for hour in newest_first:
            cells = counted.hours[hour]
            if any(cells.get((backend, node, status), rollup.Cell()).n for status in FAILURE):
                return newest.filter(
                    created_at__gte=hour, created_at__lt=hour + rollup.HOUR
                ).first()
        # The part-hour before the rollup's first hour, where the week starts.
        return newest.filter(created_at__lt=edge_end).first()

    result = []
    for backend, node in pairs:
        mine = recent.filter(backend=backend, node=node)
        item = Node(backend, node, last_failure=last_failure(backend, node))
        item.last_success = (
            mine.filter(status__in=SUCCESS)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if item.last_failure and (not item.last_success or item.last_failure > item.last_success):
            failures = mine.filter(status__in=FAILURE)
            if item.last_success:
                failures = failures.filter(created_at__gt=item.last_success)
            # Counting a slice is bounded: COUNT(*) over a LIMITed subquery.
            item.consecutive_failures = failures.values("pk")[:CONSECUTIVE_CAP].count()
        result.append(item)
    return result


def shown_pairs(
    configured: Sequence[tuple[str, str]], seen: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The (backend, node) pairs the dashboard lists: the configured ones. Old aliases
    and the node-less rows of skipped attempts are in the log, not here; only when the
    backends cannot be built are the seen pairs of configured aliases shown instead."""
    if configured:
        return list(configured)
    aliases = set(roan_settings.BACKENDS)
    return [(alias, node) for alias, node in sorted(seen) if node and alias in aliases]


@dataclasses.dataclass
class Paused:
    alias: str
    by_option: bool
    since: datetime.datetime | None
    by: str
    #: Attempts waiting (pending or failed), counted up to ``CONSECUTIVE_CAP``.
    waiting: int

    @property
    def waiting_capped(self) -> bool:
        return self.waiting >= CONSECUTIVE_CAP


def paused(qs: QuerySet[PurgeAttempt]) -> list[Paused]:
    """The configured backends that are paused now, since when, by whom, what waits."""
    # One query for the switches, read fresh (pauses.paused_backends() may answer from a
    # cache for up to ROAN_RULES_TTL): the page shows the state the Backends page set.
    states = {
        state.alias: state
        for state in BackendState.objects.filter(paused=True).select_related("paused_by")
    }
    aliases = [
        alias
        for alias in roan_settings.BACKENDS
        if alias in states or pauses.paused_by_option(alias)
    ]
    result = []
    for alias in aliases:
        state = states.get(alias)
        waiting = (
            qs.filter(status__in=[Status.PENDING, Status.FAILED], backend=alias)
            .order_by()
            .values("pk")[:CONSECUTIVE_CAP]
            .count()
        )
        result.append(
            Paused(
                alias,
                by_option=pauses.paused_by_option(alias),
                since=state.paused_at if state else None,
                by=str(state.paused_by) if state and state.paused_by else "",
                waiting=waiting,
            )
        )
    return result


def latest_failures(qs: QuerySet[PurgeAttempt]) -> list[PurgeAttempt]:
    # One query per status, so each reads the (status, created_at) index from its newest end.
    found: list[PurgeAttempt] = []
    for status in FAILURE:
        found += qs.filter(status=status).order_by("-created_at")[:LATEST_FAILURES]
    found.sort(key=lambda a: (a.created_at, a.pk), reverse=True)
    latest = found[:LATEST_FAILURES]
    for attempt in latest:
        # The template offers re-purging one of these only to users with purge_all.
        attempt.purges_everything = purges_everything(  # type: ignore[attr-defined]
            PurgeRequest(attempt.kind, attempt.target)
        )
    return latest


# -- the charts ----------------------------------------------------------------------------


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``value``.

    The axis is labelled at 0, half and top, so halves stay round numbers too.
    """
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def count_ceiling(value: float) -> float:
    """The top of an axis of counts: :func:`nice_ceiling`, but an even number (at least
    2) below 10, so that the label halfway up is a whole number too (never "0.5" or
    "2.5" attempts)."""
    top = nice_ceiling(value)
    if top >= 10:
        return top
    return float(max(2, math.ceil(value / 2) * 2))


def _axis(top: float) -> list[dict[str, Any]]:
    plot_height = CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM
    return [
        {"y": round(PLOT_TOP + plot_height * (1 - f), 1), "label": _number(top * f)}
        for f in (0, 0.5, 1)
    ]


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _hour_label(start: datetime.datetime) -> str:
    return timezone.localtime(start).strftime("%H:%M")


def purge_chart(buckets: Sequence[Hour]) -> dict[str, Any]:
    """Stacked bars per hour: ok, not cached, failed (failed and gave up)."""
    plot_width = CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_height = CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM
    top = count_ceiling(max((b.ok + b.not_cached + b.failed for b in buckets), default=0))
    slot = plot_width / len(buckets)
    bars = []
    for i, bucket in enumerate(buckets):
        x = PLOT_LEFT + i * slot
        y = float(PLOT_TOP + plot_height)
        drawn = []
        for css, value in (
            ("ok", bucket.ok),
            ("not-cached", bucket.not_cached),
            ("failed", bucket.failed),
        ):
            if not value:
                continue
            height = plot_height * value / top
            y -= height  # stacked upwards from the axis
            drawn.append({"css": css, "y": round(y, 1), "height": round(height, 1)})
        label = _hour_label(bucket.start)
        bars.append(
            {
                "x": round(x + slot * 0.15, 1),
                "width": round(slot * 0.7, 1),
                "segments": drawn,
                "label": label,
                "show_label": i % 3 == 0,
                "label_x": round(x + slot / 2, 1),
                "title": _("%(hour)s: %(ok)s ok, %(nc)s not cached, %(failed)s failed")
                % {
                    "hour": label,
                    "ok": bucket.ok,
                    "nc": bucket.not_cached,
                    "failed": bucket.failed,
                },
            }
        )
    return {"bars": bars, "axis": _axis(top), **_frame()}


def latency_chart(buckets: Sequence[Hour], backends: Sequence[str]) -> dict[str, Any]:
    """One line per backend: the mean latency of each hour's attempts."""
    plot_width = CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_height = CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM
    values = [b.mean_latency(backend) for b in buckets for backend in backends]
    top = nice_ceiling(max((v for v in values if v is not None), default=0))
    slot = plot_width / len(buckets)
    series = []
    for n, backend in enumerate(backends):
        points: list[dict[str, Any]] = []
        for i, bucket in enumerate(buckets):
            value = bucket.mean_latency(backend)
            if value is None:
                continue
            points.append(
                {
                    "x": round(PLOT_LEFT + (i + 0.5) * slot, 1),
                    "y": round(PLOT_TOP + plot_height * (1 - value / top), 1),
                    "title": _("%(backend)s, %(hour)s: %(ms)s ms")
                    % {"backend": backend, "hour": _hour_label(bucket.start), "ms": _number(value)},
                }
            )
        # Hours without attempts break the line rather than bridging them.
        lines: list[list[dict[str, Any]]] = []
        previous: dict[str, Any] | None = None
        for point in points:
            if previous is None or point["x"] - previous["x"] > slot * 1.5:
                lines.append([])
            lines[-1].append(point)
            previous = point
        series.append(
            {
                "backend": backend,
                # Eight colours, then the same colours dashed: no two lines look alike.
                "css": f"series-{n % SERIES_COLOURS}"
                + (f" roan-dash-{min(n // SERIES_COLOURS, 3)}" if n >= SERIES_COLOURS else ""),
                "points": points,
                "lines": [" ".join(f"{p['x']},{p['y']}" for p in line) for line in lines],
            }
        )
    labels = [
        {"x": round(PLOT_LEFT + (i + 0.5) * slot, 1), "label": _hour_label(b.start)}
        for i, b in enumerate(buckets)
        if i % 3 == 0
    ]
    rows = [{"start": b.start, "values": [b.mean_latency(x) for x in backends]} for b in buckets]
    return {"series": series, "axis": _axis(top), "labels": labels, "rows": rows, **_frame()}


def _frame() -> dict[str, Any]:
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": PLOT_LEFT,
        "right": CHART_WIDTH - PLOT_RIGHT,
        "bottom": CHART_HEIGHT - PLOT_BOTTOM,
        "label_y": CHART_HEIGHT - 8,
    }


# -- the views -----------------------------------------------------------------------------


def dashboard_context(now: datetime.datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, computed with a bounded number of queries."""
    now = now or timezone.now()
    qs = PurgeAttempt.objects.all()
    counted = _rollup(qs, now)
    buckets, seen = hours(qs, now, counted)
    pairs = shown_pairs(configured_nodes(), seen)
    backends = list(dict.fromkeys(backend for backend, _node in pairs))
    stopped = paused(qs)
    queue_figures = queue(qs)
    return {
        "now": now,
        "windows": window_counts(qs, now, counted),
        "queue": queue_figures,
        "latencies": latencies(qs, pairs, now),
        "latency_sample": LATENCY_SAMPLE,
        "nodes": nodes(qs, pairs, now, counted),
        "paused": stopped,
        "paused_aliases": [p.alias for p in stopped],
        "hours": buckets,
        "purge_chart": purge_chart(buckets),
        "latency_chart": latency_chart(buckets, backends),
        "failures": latest_failures(qs),
        "verification": verification_counts(qs, now, counted),
        "warming": warming_counts(qs, now),
        "keys_differ": keys_differ(dict.fromkeys(alias for alias, _node in configured_nodes())),
        # The row of CDN invalidations in progress, only where a backend makes them.
        "completes_later": uses.completes_later() or bool(queue_figures["in_progress"]),
        "last_audit": audit.last(),
        "tag_index": tag_index_size(),
    }


def tag_index_size() -> dict[str, Any] | None:
    """The URL<->tag index's size and bounds, when a configured backend reads it."""
    if not (roan_settings.TAGS and tag_index.url_purging_backends()):
        return None
    return {
        **tag_index.size(),
        "max_rows": roan_settings.TAG_INDEX_MAX_ROWS,
        "max_per_tag": roan_settings.TAG_INDEX_MAX_URLS_PER_TAG,
    }


def dashboard_view(request: HttpRequest, admin_site: admin.AdminSite) -> HttpResponse:
    if not can_view_log(request):
        raise PermissionDenied
    request.current_app = admin_site.name
    title = _("Purge dashboard")
    context = {
        **admin_site.each_context(request),
        **breadcrumbs(admin_site, "roan", ("", title)),
        **dashboard_context(),
        "title": title,
        "opts": PurgeAttempt._meta,
        "app_label": "roan",
        "can_purge": can_purge(request),
        "can_purge_all": can_purge_all(request),
        "error_chars": ERROR_CHARS,
    }
    return TemplateResponse(request, "admin/roan/dashboard.html", context)


def dashboard_urls(admin_site: admin.AdminSite) -> list[URLPattern]:
    """URL patterns for the dashboard, to be mounted at ``<admin>/roan/dashboard/``."""

    def dashboard(request: HttpRequest) -> HttpResponse:
        return dashboard_view(request, admin_site)

    def repurge(request: HttpRequest, pk: int) -> HttpResponse:
        """A latest failure's "Re-purge" button: the log's re-purge, for one row."""
        back = reverse(f"{admin_site.name}:roan_dashboard")
        return operations.repurge_view(request, pk, site=admin_site, back=back)

    return [
        page(admin_site, "", dashboard, "roan_dashboard"),
        # The name the admin's app list reverses for a registered "model".
        page(admin_site, "", dashboard, "roan_dashboard_changelist"),
        page(admin_site, "repurge/<int:pk>/", repurge, "roan_dashboard_repurge"),
    ]


# -- a place in the admin ------------------------------------------------------------------


#: The stand-in "model" the dashboard is registered under (``common.stand_in``).
Dashboard = stand_in("dashboard", gettext_lazy("dashboard"))


class DashboardAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    actions = None

    def get_urls(self) -> list[URLPattern]:
        return dashboard_urls(self.admin_site)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_view_log(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_view_log(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
