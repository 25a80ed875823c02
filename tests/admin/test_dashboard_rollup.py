"""The dashboard's kept hours (roan.admin.rollup) give the figures a direct count gives."""

from __future__ import annotations

import datetime
import io
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Count, Max, Sum
from django.utils import timezone

from roan import shared_cache
from roan.admin import dashboard, rollup
from roan.models import PurgeAttempt

pytestmark = pytest.mark.django_db

NODES = {
    "default": {"BACKEND": "roan.backends.locmem.LocMemBackend", "NODES": ["a", "b"]},
    "other": {"BACKEND": "roan.backends.locmem.LocMemBackend", "NODES": ["c"]},
}
VERDICTS = ["", "verified", "", "still_cached", "pending", "unverifiable", ""]
STATUSES = ["ok", "ok", "not_cached", "failed", "gave_up", "skipped", "pending", "ok"]


def add(at: datetime.datetime, status: str, *, node: str = "a", **fields: Any) -> int:
    backend = "other" if node == "c" else "default"
    row = {"backend": backend, "node": node, "target": f"/p/{at.timestamp()}/{node}/"}
    (pk,) = PurgeAttempt.objects.write([{**row, "trigger": "save", "status": status, **fields}])
    PurgeAttempt.objects.filter(pk=pk).update(created_at=at)
    return pk


def fill(now: datetime.datetime, step_minutes: int = 37) -> None:
    """Rows every ``step_minutes`` over eight days back and one hour ahead (a clock ahead)."""
    minutes = -59
    i = 0
    while minutes < 8 * 24 * 60:
        at = now - datetime.timedelta(minutes=minutes)
        status = STATUSES[i % len(STATUSES)]
        latency = None if status in ("pending", "skipped") else float(i % 17 + 1)
        verdict = VERDICTS[i % len(VERDICTS)] if status in ("ok", "not_cached") else ""
        add(at, status, node="abc"[i % 3], latency_ms=latency, verification=verdict)
        minutes += step_minutes
        i += 1


def direct_windows(now: datetime.datetime) -> dict[str, dict[str, int]]:
    horizon = now + datetime.timedelta(hours=1)
    found = {}
    for key, _label, delta in dashboard.WINDOWS:
        rows = (
            PurgeAttempt.objects.filter(created_at__gte=now - delta, created_at__lte=horizon)
            .order_by()
            .values("status")
            .annotate(n=Count("pk"))
        )
        found[key] = {row["status"]: row["n"] for row in rows}
    return found


def direct_hours(now: datetime.datetime) -> list[tuple[int, int, int, int, dict[str, Any]]]:
    current = rollup.floor_hour(now)
    result = []
    for i in range(dashboard.HOURS - 1, -1, -1):
        start = current - datetime.timedelta(hours=i)
        rows = PurgeAttempt.objects.filter(
            created_at__gte=start, created_at__lt=start + datetime.timedelta(hours=1)
        ).order_by()
        by = {row["status"]: row["n"] for row in rows.values("status").annotate(n=Count("pk"))}
        latency = {
            row["backend"]: (round(row["s"], 6), row["n"])
            for row in rows.filter(latency_ms__isnull=False)
            .values("backend")
            .annotate(s=Sum("latency_ms"), n=Count("pk"))
        }
        failed = by.pop("failed", 0) + by.pop("gave_up", 0)
        ok, not_cached = by.pop("ok", 0), by.pop("not_cached", 0)
        result.append((ok, not_cached, failed, sum(by.values()), latency))
    return result


def direct_last_failures(now: datetime.datetime) -> dict[str, Any]:
    rows = PurgeAttempt.objects.filter(
        created_at__gte=now - datetime.timedelta(days=7),
        created_at__lte=now + datetime.timedelta(hours=1),
        status__in=["failed", "gave_up"],
    )
    return {node: rows.filter(node=node).aggregate(m=Max("created_at"))["m"] for node in "abc"}


def direct_verification(now: datetime.datetime) -> dict[str, Any]:
    rows = (
        PurgeAttempt.objects.filter(
            created_at__gte=now - datetime.timedelta(hours=24),
            created_at__lte=now + datetime.timedelta(hours=1),
        )
        .exclude(verification="")
        .order_by()
        .values("verification")
        .annotate(n=Count("pk"))
    )
    return {row["verification"]: row["n"] for row in rows}


def shown(now: datetime.datetime) -> tuple[dict[str, dict[str, int]], list[Any]]:
    context = dashboard.dashboard_context(now)
    verdicts = direct_verification(now)
    shown_verdicts = context["verification"]
    assert shown_verdicts["any"] == bool(verdicts)
    assert shown_verdicts["verified"] == verdicts.get("verified", 0)
    assert shown_verdicts["still_cached"] == verdicts.get("still_cached", 0)
    assert shown_verdicts["pending"] == verdicts.get("pending", 0)
    unverified = verdicts.get("unverifiable", 0) + verdicts.get("pending", 0)
    assert shown_verdicts["unverified"] == unverified
    assert {n.node: n.last_failure for n in context["nodes"]} == direct_last_failures(now)
    windows = {w.key: w.counts for w in context["windows"]}
    hours = [
        (
            h.ok,
            h.not_cached,
            h.failed,
            h.other,
            {b: (round(h.latency_sum[b], 6), h.latency_n[b]) for b in h.latency_n},
        )
        for h in context["hours"]
    ]
    return windows, hours


@pytest.mark.parametrize("minute", [0, 3, 17, 59])
def test_the_figures_equal_a_direct_count_cold_and_kept(settings: Any, minute: int) -> None:
    settings.ROAN_BACKENDS = NODES
    now = timezone.now().replace(minute=minute, second=30, microsecond=0)
    fill(now)
    expected = (direct_windows(now), direct_hours(now))
    assert sum(expected[0]["7d"].values()) > 200
    assert shown(now) == expected  # counted from the rows, then kept
    assert shared_cache.cache().get(shared_cache.DASHBOARD_KEY)
    assert shown(now) == expected  # from the kept hours


def test_new_attempts_in_the_current_hour_show_at_once(settings: Any) -> None:
    settings.ROAN_BACKENDS = NODES
    now = timezone.now()
    fill(now)
    shown(now)
    for status in ("ok", "failed", "pending", "not_cached"):
        add(now - datetime.timedelta(seconds=5), status, latency_ms=3.0)
    later = now + datetime.timedelta(seconds=1)
    assert shown(later) == (direct_windows(later), direct_hours(later))


def test_an_hour_later_the_closed_hour_is_kept_and_the_figures_still_match(
    settings: Any,
) -> None:
    settings.ROAN_BACKENDS = NODES
    now = timezone.now().replace(minute=50, second=0, microsecond=0)
    fill(now, step_minutes=11)
    shown(now)
    later = now + datetime.timedelta(minutes=40)  # the hour of ``now`` closed 15 minutes ago
    assert shown(later) == (direct_windows(later), direct_hours(later))


def test_a_second_view_counts_no_finished_attempt_of_a_closed_hour(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ROAN_BACKENDS = NODES
    now = timezone.now()
    fill(now)
    shown(now)
    ranges: list[tuple[datetime.datetime, datetime.datetime, list[str]]] = []
    count_hours = rollup.count_hours

    def spy(qs: Any, start: Any, end: Any, **kwargs: Any) -> Any:
        ranges.append((start, end, sorted(kwargs.get("statuses", ["all"]))))
        return count_hours(qs, start, end, **kwargs)

    monkeypatch.setattr(rollup, "count_hours", spy)
    assert shown(now) == (direct_windows(now), direct_hours(now))
    # The week's waiting rows, and the rows since the last closed hour.
    closed_end = rollup.floor_hour(now - rollup.GRACE)
    assert [r for r in ranges if r[2] != ["failed", "pending"]] == [
        (closed_end, now + datetime.timedelta(hours=1), ["all"])
    ]


def test_attempts_of_a_closed_hour_that_finish_later_are_counted_again(settings: Any) -> None:
    settings.ROAN_BACKENDS = NODES
    now = timezone.now()
    fill(now)
    three_hours_ago = now - datetime.timedelta(hours=3)
    pending = add(three_hours_ago, "pending")
    failed = add(three_hours_ago, "failed", latency_ms=40.0)
    add(now - datetime.timedelta(days=2), "failed", node="b", latency_ms=9.0)
    shown(now)  # kept with two waiting rows in that hour
    # As the sender records an outcome: with the time it finished.
    finished = timezone.now()
    PurgeAttempt.objects.filter(pk=pending).update(
        status="ok", latency_ms=5.0, finished_at=finished
    )
    assert shown(now) == (direct_windows(now), direct_hours(now))
    PurgeAttempt.objects.filter(pk=failed).update(
        status="gave_up", latency_ms=50.0, finished_at=finished
    )
    assert shown(now) == (direct_windows(now), direct_hours(now))
    # Probes end (pending ones, and the verdicts of purges that just finished).
    PurgeAttempt.objects.filter(verification="pending").update(verification="verified")
    assert shown(now) == (direct_windows(now), direct_hours(now))
    PurgeAttempt.objects.filter(pk=pending).update(verification="still_cached")
    assert shown(now) == (direct_windows(now), direct_hours(now))
    # A failed row retried (failed again, another latency) is counted from the rows.
    PurgeAttempt.objects.filter(status="failed").update(latency_ms=77.0)
    assert shown(now) == (direct_windows(now), direct_hours(now))


def test_the_log_deletes_nothing_and_pruning_the_week_forgets_the_kept_hours(
    settings: Any, admin_client: Any
) -> None:
    settings.ROAN_BACKENDS = NODES
    now = timezone.now()
    fill(now)
    shown(now)
    doomed = PurgeAttempt.objects.filter(
        status="ok", created_at__lt=now - datetime.timedelta(hours=3)
    )
    pk = doomed.values_list("pk", flat=True)[0]
    # Append-only, for a superuser too: roan_prune is how the log shrinks.
    response = admin_client.post(f"/admin/roan/purgeattempt/{pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert PurgeAttempt.objects.filter(pk=pk).exists()
    call_command("roan_prune", days=2, stdout=io.StringIO())
    assert shared_cache.cache().get(shared_cache.DASHBOARD_KEY) is None
    assert shown(now) == (direct_windows(now), direct_hours(now))


def test_the_page_counts_from_the_rows_when_the_cache_fails(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ROAN_BACKENDS = NODES
    now = timezone.now()
    fill(now)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache down")

    cache = shared_cache.cache()
    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(cache, "set", broken)
    assert shown(now) == (direct_windows(now), direct_hours(now))
