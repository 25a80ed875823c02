"""The dashboard's counts per clock hour, the closed hours kept in ``ROAN_CACHE``.

The dashboard counts attempts per status over the last hour, day and week, and draws the
last 24 clock hours. Counted from the rows on every view, that reads every row of the
week: time that grows with the log. Here each closed clock hour (UTC) is counted once and
kept in the cache as counts per (backend, node, status), with the latencies' sum; a view
reads from the rows only the current hour and the part-hours where the windows start.

A closed hour's rows can still change in one way: a pending or failed attempt is sent
again and finishes (the sender claims only pending and failed rows, so a finished
attempt's status and latency never change). So only the finished attempts are kept,
with how many rows of the hour were pending or failed when it was counted; every view
counts the week's pending and failed rows from the rows (two ranges of the (status,
created_at) index: the queue, a few rows), and counts an hour again when fewer of its
rows are pending or failed than when it was kept. VERIFY's verdicts (kept per hour too)
change after the purge: an hour is counted again on each view while one of its probes
is pending or its last purge finished less than ``VERDICTS_SETTLE`` ago. An hour is
closed ``GRACE`` after its end, so that rows written by a transaction that began in it,
or by a server whose clock is a little behind, are in it when it is counted.

Deleted rows (the log's delete, ``roan_prune --days`` under 8) clear the kept hours
(:func:`roan.shared_cache.forget_dashboard`). Without a usable cache every view counts
from the rows, as before.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Count, Max, Q, QuerySet, Sum

from roan import shared_cache
from roan.models import PurgeAttempt
from roan.outbox.sql import dialect
from roan.vocabulary import FINAL_STATUSES, Status, Verification

logger = logging.getLogger("roan.admin")

HOUR = datetime.timedelta(hours=1)
#: How long after its end an hour is counted and kept.
GRACE = datetime.timedelta(minutes=5)
#: How far back the dashboard looks (its longest window).
LOOKBACK = datetime.timedelta(days=7)
#: How long the kept hours stay in the cache without a view.
TIMEOUT = 24 * 3600
UNSETTLED = (Status.PENDING, Status.FAILED)
#: How long after an hour's last purge finished its verdicts may still change (a probe
#: is made just after the purge).
VERDICTS_SETTLE = datetime.timedelta(minutes=10)
PENDING_VERDICT = Verification.PENDING
FINAL = sorted(FINAL_STATUSES)

#: (backend, node, status)
Key = tuple[str, str, str]


def verdict_key(backend: str, verdict: str) -> str:
    """How verdicts are counted: per backend, so the dashboard can show each one's
    rates (a key without a backend is one kept before they were)."""
    return f"{backend}\n{verdict}"


def split_verdict(key: str) -> tuple[str, str]:
    """``(backend, verdict)`` of a :func:`verdict_key`."""
    backend, _, verdict = key.rpartition("\n")
    return backend, verdict


@dataclasses.dataclass
class Cell:
    n: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0

    def add(self, n: int, latency_sum: float | None, latency_n: int) -> None:
        self.n += n
        self.latency_sum += latency_sum or 0.0
        self.latency_n += latency_n


Cells = dict[Key, Cell]


@dataclasses.dataclass
class Rollup:
    """Counts per clock hour over the dashboard's week, and per window."""

    #: Hour start (UTC) -> counts per (backend, node, status); every hour from the one
    #: holding ``now - LOOKBACK`` to the current one (an hour at an edge: its part after
    #: the edge is not separated here, see ``windows``).
    hours: dict[datetime.datetime, Cells]
    #: Window start -> attempts per status created since then.
    windows: dict[datetime.datetime, dict[str, int]]
    #: Attempts per (backend, verification verdict) created since ``verdicts_since``,
    #: keyed by :func:`verdict_key`.
    verdicts: dict[str, int]


def floor_hour(moment: datetime.datetime) -> datetime.datetime:
    return moment.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)


def hour_expression(using: str) -> Any:
    """An expression for the UTC hour an attempt was created in."""
    return dialect(connections[using]).hour_expression("created_at", settings.USE_TZ)


@dataclasses.dataclass
class Counted:
    """What one query counted."""

    #: Hour start -> counts per (backend, node, status).
    hours: dict[datetime.datetime, Cells] = dataclasses.field(default_factory=dict)
    #: Hour start -> attempts per verification verdict (probed ones only).
    verdicts: dict[datetime.datetime, dict[str, int]] = dataclasses.field(default_factory=dict)
    #: Hour start -> when the last of its attempts finished.
    finished: dict[datetime.datetime, datetime.datetime] = dataclasses.field(default_factory=dict)
    #: Moment of ``since`` -> attempts created since then, per status; and per verdict.
    since: dict[datetime.datetime, dict[str, int]] = dataclasses.field(default_factory=dict)
    since_verdicts: dict[datetime.datetime, dict[str, int]] = dataclasses.field(
        default_factory=dict
    )


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


def count_hours(
    qs: QuerySet[PurgeAttempt],
    start: datetime.datetime,
    end: datetime.datetime,
    *,
    statuses: Iterable[str] = PurgeAttempt.Status.values,
    since: Iterable[datetime.datetime] = (),
) -> Counted:
    """Counts per hour and (backend, node, status), and per verdict, of the rows in
    ``statuses`` created in [start, end); and per moment of ``since``, those created
    since then.

    One query. Naming the statuses makes the (status, created_at) index serve the time
    range on both databases (there is no index on created_at alone).
    """
    since = list(since)
    extra = {
        f"since_{i}": Count("pk", filter=Q(created_at__gte=moment))
        for i, moment in enumerate(since)
    }
    rows = (
        qs.filter(status__in=list(statuses), created_at__gte=start, created_at__lt=end)
        .order_by()
        .annotate(hour=hour_expression(qs.db))
        .values("hour", "backend", "node", "status", "verification")
        .annotate(
            n=Count("pk"),
            latency_sum=Sum("latency_ms"),
            latency_n=Count("latency_ms"),
            last=Max("finished_at"),
            **extra,
        )
    )
    found = Counted(since={m: {} for m in since}, since_verdicts={m: {} for m in since})
    row: dict[str, Any]
    for row in rows:  # type: ignore[assignment]
        hour = dialect(connections[qs.db]).hour_value(row["hour"])
        cells = found.hours.setdefault(hour, {})
        key = (row["backend"], row["node"], row["status"])
        cells.setdefault(key, Cell()).add(row["n"], row["latency_sum"], row["latency_n"])
        verdict = verdict_key(row["backend"], row["verification"]) if row["verification"] else ""
        if verdict:
            _add(found.verdicts.setdefault(hour, {}), verdict, row["n"])
        if row["last"] is not None and (
            hour not in found.finished or row["last"] > found.finished[hour]
        ):
            found.finished[hour] = row["last"]
        for i, moment in enumerate(since):
            if n := row[f"since_{i}"]:
                _add(found.since[moment], row["status"], n)
                if verdict:
                    _add(found.since_verdicts[moment], verdict, n)
    return found


def count_statuses(
    qs: QuerySet[PurgeAttempt],
    start: datetime.datetime,
    end: datetime.datetime,
    *,
    verdicts: bool = False,
) -> tuple[dict[str, int], dict[str, int]]:
    """Rows created in [start, end), per status, and (``verdicts``) per verdict: one
    query over index ranges (the verdicts read the rows too)."""
    fields = ["status", "backend", "verification"] if verdicts else ["status"]
    rows = (
        qs.filter(status__in=PurgeAttempt.Status.values, created_at__gte=start, created_at__lt=end)
        .order_by()
        .values(*fields)
        .annotate(n=Count("pk"))
    )
    by_status: dict[str, int] = {}
    by_verdict: dict[str, int] = {}
    for row in rows:
        _add(by_status, row["status"], row["n"])
        if row.get("verification"):
            _add(by_verdict, verdict_key(row["backend"], row["verification"]), row["n"])
    return by_status, by_verdict


@dataclasses.dataclass
class Kept:
    """A closed hour as kept in the cache: its finished attempts' counts."""

    #: Its pending and failed rows when it was counted.
    waiting: int
    cells: Cells
    verdicts: dict[str, int]
    #: Until when its verdicts may still change (probes of its latest purges).
    settles: datetime.datetime | None


def _read_kept() -> dict[datetime.datetime, Kept]:
    try:
        kept = shared_cache.cache().get(shared_cache.DASHBOARD_KEY)
    except Exception:  # a cache that is down: count from the rows
        logger.warning("roan: dashboard: cache %r failed; counting from the rows", exc_info=True)
        return {}
    return kept if isinstance(kept, dict) else {}


def _keep(kept: dict[datetime.datetime, Kept]) -> None:
    try:
        shared_cache.cache().set(shared_cache.DASHBOARD_KEY, kept, TIMEOUT)
    except Exception:
        logger.warning("roan: dashboard: could not keep the hours in the cache", exc_info=True)


def closed_hours(
    qs: QuerySet[PurgeAttempt],
    first: datetime.datetime,
    end: datetime.datetime,
    now: datetime.datetime,
) -> tuple[dict[datetime.datetime, Cells], dict[datetime.datetime, dict[str, int]]]:
    """Counts for each closed hour in [first, end), and its verdicts.

    The finished attempts' counts come from the cache; the pending and failed ones are
    counted from the rows (a few: the queue). An hour is counted again when it holds
    fewer pending and failed rows than when it was kept (some have finished since), and
    while its verdicts may change: probes pending, or purges finished in the last
    ``VERDICTS_SETTLE``.
    """
    if end <= first:
        return {}, {}
    kept = {
        hour: entry
        for hour, entry in _read_kept().items()
        if first <= hour < end and isinstance(entry, Kept)
    }
    waiting = count_hours(qs, first, end, statuses=UNSETTLED)
    wanted = [first + i * HOUR for i in range(round((end - first) / HOUR))]

    def unsettled(hour: datetime.datetime) -> int:
        return sum(cell.n for cell in waiting.hours.get(hour, {}).values())

    def stale(hour: datetime.datetime) -> bool:
        entry = kept.get(hour)
        return (
            entry is None
            or entry.waiting != unsettled(hour)
            or any(n and split_verdict(k)[1] == PENDING_VERDICT for k, n in entry.verdicts.items())
            or (entry.settles is not None and entry.settles > now)
        )

    recount = [hour for hour in wanted if stale(hour)]
    if recount:
        # One query over the hours to count (usually the one just closed).
        counted = count_hours(qs, min(recount), max(recount) + HOUR, statuses=FINAL)
        for hour in recount:
            last = counted.finished.get(hour)
            kept[hour] = Kept(
                unsettled(hour),
                counted.hours.get(hour, {}),
                counted.verdicts.get(hour, {}),
                last + VERDICTS_SETTLE if last is not None else None,
            )
        _keep(kept)
    hours = {}
    verdicts = {}
    for hour in wanted:
        cells = kept[hour].cells
        if hour in waiting.hours:  # the kept cells are shared: added up in copies
            cells = {key: dataclasses.replace(cell) for key, cell in cells.items()}
            for key, cell in waiting.hours[hour].items():
                cells.setdefault(key, Cell()).add(cell.n, cell.latency_sum, cell.latency_n)
        hours[hour] = cells
        found = dict(kept[hour].verdicts)
        for verdict, n in waiting.verdicts.get(hour, {}).items():
            _add(found, verdict, n)
        verdicts[hour] = found
    return hours, verdicts


def rollup(
    qs: QuerySet[PurgeAttempt],
    now: datetime.datetime,
    starts: Iterable[datetime.datetime],
    horizon: datetime.datetime,
    verdicts_since: datetime.datetime | None = None,
) -> Rollup:
    """The hours of the last ``LOOKBACK`` and the attempts since each of ``starts``
    (each at most ``LOOKBACK`` ago), as the rows have them up to ``horizon``; and the
    verdicts since ``verdicts_since`` (one of ``starts``)."""
    starts = list(dict.fromkeys(starts))
    first = floor_hour(now - LOOKBACK - datetime.timedelta(microseconds=1)) + HOUR
    end = max(floor_hour(now - GRACE), first)  # the closed hours are [first, end)
    hours, hour_verdicts = closed_hours(qs, first, end, now)
    live = count_hours(qs, end, horizon, since=starts)
    for hour, cells in live.hours.items():
        hours.setdefault(hour, {}).update(cells)
    windows = live.since
    verdicts: dict[str, int] = {}
    for start in starts:
        counts = windows[start]
        if start == verdicts_since:
            verdicts = live.since_verdicts[start]
        if start >= end:
            continue  # the live query counted it whole
        edge = min(floor_hour(start) + HOUR, end) if floor_hour(start) != start else start
        # The part-hour where the window starts, then the closed hours after it.
        if edge > start:
            by_status, by_verdict = count_statuses(
                qs, start, edge, verdicts=start == verdicts_since
            )
            for status, n in by_status.items():
                _add(counts, status, n)
            for verdict, n in by_verdict.items():
                _add(verdicts, verdict, n)
        hour = edge
        while hour < end:
            for (_backend, _node, status), cell in hours.get(hour, {}).items():
                _add(counts, status, cell.n)
            if start == verdicts_since:
                for verdict, n in hour_verdicts.get(hour, {}).items():
                    _add(verdicts, verdict, n)
            hour += HOUR
    return Rollup(hours, windows, verdicts)
