"""The dashboard's figures, charts, permissions and re-purge button (Django's test client)."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone

from roan.admin import PurgeAttemptAdmin, dashboard, register
from roan.models import PurgeAttempt
from tests.support.admin_helpers import staff_client

pytestmark = pytest.mark.django_db

URL = "/admin/roan/dashboard/"

# A project's own admin site, for the test that mounts the dashboard on one.
custom_site = admin.AdminSite(name="custom")
custom_site.register(PurgeAttempt, PurgeAttemptAdmin)
register(custom_site)
urlpatterns = [path("office/", custom_site.urls)]
NODES = {"default": {"BACKEND": "roan.backends.locmem.LocMemBackend", "NODES": ["a", "b"]}}


def add(minutes_ago: float, status: str, *, node: str = "a", **fields: Any) -> PurgeAttempt:
    """One attempt row, created ``minutes_ago`` before now."""
    target = fields.pop("target", f"/p/{PurgeAttempt.objects.count()}/")
    row = {"backend": "default", "node": node, "target": target, "trigger": "save"}
    (pk,) = PurgeAttempt.objects.write([{**row, "status": status, **fields}])
    created = timezone.now() - datetime.timedelta(minutes=minutes_ago)
    PurgeAttempt.objects.filter(pk=pk).update(created_at=created)
    return PurgeAttempt.objects.get(pk=pk)


def staff(django_user_model: Any, *perms: str) -> Client:
    return staff_client(django_user_model, "staff", list(perms))


def test_windows_count_each_status_and_the_success_rate_ignores_pending_and_skipped(
    settings: Any,
) -> None:
    settings.ROAN_BACKENDS = NODES
    add(10, "ok", latency_ms=5)
    add(20, "failed", latency_ms=50)
    add(30, "skipped")
    add(5 * 60, "ok", latency_ms=7)
    add(3 * 24 * 60, "not_cached", latency_ms=3)
    add(3 * 24 * 60, "gave_up", latency_ms=9)
    add(8 * 24 * 60, "failed")  # older than every window

    windows = {w.key: w for w in dashboard.dashboard_context()["windows"]}

    assert (windows["1h"].total, windows["24h"].total, windows["7d"].total) == (3, 4, 6)
    assert windows["1h"].success_rate == pytest.approx(50.0)  # 1 ok of 2 finished
    assert windows["24h"].success_rate == pytest.approx(200 / 3)
    assert windows["7d"].success_rate == pytest.approx(60.0)  # ok, ok, not cached of 5
    assert windows["7d"].counts == {"ok": 2, "failed": 1, "skipped": 1, "not_cached": 1,
                                    "gave_up": 1}  # fmt: skip


def test_queue_shows_pending_and_failing_counts_and_the_oldest_pending_age() -> None:
    add(1, "pending")
    oldest = add(42, "pending")
    add(3, "failed")
    queue = dashboard.dashboard_context()["queue"]
    assert (queue["pending"], queue["failing"]) == (2, 1)
    assert queue["oldest_pending"] == oldest.created_at


def test_each_node_shows_its_last_success_last_failure_and_failures_since(
    settings: Any,
) -> None:
    settings.ROAN_BACKENDS = NODES
    success = add(60, "ok", node="a")
    add(50, "failed", node="a")
    add(40, "gave_up", node="a")
    last = add(30, "failed", node="a")
    add(10, "ok", node="b")

    nodes = {n.node: n for n in dashboard.dashboard_context()["nodes"]}

    assert (nodes["a"].last_success, nodes["a"].last_failure) == (
        success.created_at,
        last.created_at,
    )
    assert nodes["a"].consecutive_failures == 3
    assert nodes["b"].consecutive_failures == 0
    assert nodes["b"].last_failure is None


def test_percentiles_use_the_nearest_rank_of_the_backends_latencies(settings: Any) -> None:
    settings.ROAN_BACKENDS = NODES
    for ms in range(1, 101):  # 1 .. 100 ms
        add(ms / 10, "ok", latency_ms=float(ms), target=f"/p/{ms}/")
    (row,) = dashboard.dashboard_context()["latencies"]
    assert (row["n"], row["p50"], row["p95"], row["p99"]) == (100, 50.0, 95.0, 99.0)


def test_the_page_renders_the_charts_with_titles_and_a_table_alternative(
    admin_client: Client,
) -> None:
    # All three in the same clock hour, whatever the time is now.
    hour = add(0, "ok", latency_ms=4).created_at.strftime("%H:00")
    add(0, "not_cached", latency_ms=6)
    add(0, "failed", latency_ms=80, error="HTTP 503")

    html = admin_client.get(URL).content.decode()

    for chart in ("roan-purge-chart", "roan-latency-chart"):
        assert re.search(rf'<svg [^>]*role="img"[^>]*aria-labelledby="{chart}-title', html)
        assert f'<desc id="{chart}-desc">' in html
    assert html.count('class="roan-table-alt"') == 2
    # That hour's bar: one segment per status, its tooltip giving the counts.
    assert f"<title>{hour}: 1 ok, 1 not cached, 1 failed</title>" in html
    for css in ("roan-ok", "roan-not-cached", "roan-failed"):
        assert f'<rect class="{css}"' in html
    assert "<script" not in html.split('id="content-main"')[1]  # no JavaScript needed


def test_queries_stay_the_same_however_many_attempts_there_are(admin_client: Client) -> None:
    def statements() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(URL).status_code == 200
        return len(queries)

    # On the configured node: the dashboard lists configured nodes only.
    add(1, "ok", node="default", latency_ms=3)
    add(2, "failed", node="default")
    statements()  # counts the closed hours once (roan.admin.rollup): one statement more
    few = statements()
    PurgeAttempt.objects.write(
        [
            {"backend": "default", "node": "default", "target": f"/many/{i}/", "trigger": "save",
             "status": ("ok", "failed", "not_cached", "gave_up")[i % 4], "latency_ms": i % 50}
            for i in range(400)
        ]
    )  # fmt: skip
    assert statements() == few


def test_the_admin_index_and_the_roan_app_page_link_to_the_dashboard(
    admin_client: Client,
) -> None:
    for page in ("/admin/", "/admin/roan/"):
        assert f'href="{URL}"' in admin_client.get(page).content.decode()


def test_staff_without_view_permission_on_attempts_get_403_and_no_link(
    django_user_model: Any,
) -> None:
    client = staff(django_user_model, "roan.view_purgerule")
    assert client.get(URL).status_code == 403
    assert URL not in client.get("/admin/").content.decode()


def test_viewers_see_the_dashboard_but_no_re_purge_button(django_user_model: Any) -> None:
    add(1, "failed", target="/broken/")
    client = staff(django_user_model, "roan.view_purgeattempt")
    response = client.get(URL)
    assert response.status_code == 200
    assert "/broken/" in response.content.decode()
    assert "Re-purge" not in response.content.decode()


def test_re_purge_needs_purge_now_post_and_csrf(
    django_user_model: Any, outbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    failed = add(1, "failed", target="/broken/")
    repurge = f"{URL}repurge/{failed.pk}/"
    viewer = staff(django_user_model, "roan.view_purgeattempt")
    assert viewer.post(repurge).status_code == 403

    user = django_user_model.objects.get(username="staff")
    user.user_permissions.add(Permission.objects.get(codename="purge_now"))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(repurge).status_code == 405
    assert client.post(repurge).status_code == 403  # no CSRF token
    page = client.get(URL).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token and "Re-purge" in page
    assert PurgeAttempt.objects.count() == 1
    assert outbox == []

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(repurge, {"csrfmiddlewaretoken": token.group(1)})

    assert response.status_code == 302 and response["Location"] == URL
    new = PurgeAttempt.objects.exclude(pk=failed.pk).get()
    assert (new.target, new.trigger, new.user_id, new.status) == (
        "/broken/",
        "admin",
        user.pk,
        "ok",
    )
    assert [r.target for _node, r in outbox] == ["/broken/"]
    failed.refresh_from_db()
    assert failed.status == "failed"


def test_latest_failures_are_newest_first_and_bounded() -> None:
    for i in range(12):
        add(100 - i, "failed" if i % 2 else "gave_up", target=f"/f/{i}/")
    add(0.5, "ok")
    failures = dashboard.dashboard_context()["failures"]
    assert [a.target for a in failures] == [f"/f/{i}/" for i in range(11, 1, -1)]


@pytest.mark.postgres
def test_every_dashboard_query_on_the_attempt_table_can_use_an_index(settings: Any) -> None:
    """With sequential scans priced out, each query reads an index by its conditions.

    ("Index Cond", not a whole index read with a "Filter": the dashboard asks for the
    ranges and equalities its indexes are ordered by.)
    """
    settings.ROAN_BACKENDS = NODES
    add(1, "ok", latency_ms=3)
    add(2, "failed")
    with CaptureQueriesContext(connection) as queries:
        dashboard.dashboard_context()
    selects = [q["sql"] for q in queries if '"roan_purgeattempt"' in q["sql"]]
    assert len(selects) >= 10
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in selects:
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on roan_purgeattempt" not in plan, f"{sql}\n{plan}"
            # roan_attempt_due is partial: it holds exactly the pending and failed rows.
            assert "Index Cond" in plan or "on roan_attempt_due" in plan, f"{sql}\n{plan}"


@pytest.mark.urls("tests.admin.test_dashboard")
def test_the_dashboard_can_live_on_a_custom_admin_site(admin_client: Client) -> None:
    add(1, "failed", target="/broken/")
    response = admin_client.get("/office/roan/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'action="/office/roan/dashboard/repurge/' in html
    assert 'href="/office/roan/purgeattempt/"' in html
    assert 'href="/office/roan/dashboard/"' in admin_client.get("/office/").content.decode()


def test_the_breadcrumbs_use_the_markup_of_the_running_django(django_user_model: Any) -> None:
    """Django 6.1's admin turned them into a list, 6.0's still has a <div>: the dashboard
    must match the admin's own pages, or they render as an unstyled numbered list."""
    client = staff(django_user_model, "roan.view_purgeattempt")
    crumbs = re.compile(r'<(\w+) class="breadcrumbs"')
    [admins] = crumbs.findall(client.get("/admin/roan/purgeattempt/").content.decode())
    [ours] = crumbs.findall(client.get(URL).content.decode())
    assert ours == admins


def test_only_configured_nodes_are_listed_not_old_aliases_nor_skipped_rows(
    admin_client: Client, settings: Any
) -> None:
    settings.ROAN_BACKENDS = NODES
    add(10, "ok", node="a")
    add(10, "ok", backend="mem", node="mem")  # an alias no longer configured
    add(10, "skipped", node="")  # a skipped row has no node

    response = admin_client.get(URL)

    assert [(n.backend, n.node) for n in response.context["nodes"]] == [
        ("default", "a"),
        ("default", "b"),
    ]
    assert [row["backend"] for row in response.context["latencies"]] == ["default"]
    rows = re.findall(r'<tr class="roan-node[^"]*">\s*<th scope="row">([^<]*)', response.text)
    assert rows == ["default", "default"]


def test_a_paused_backend_is_shown_with_what_waits_for_it(
    admin_client: Client, admin_user: Any, settings: Any
) -> None:
    from roan import pauses

    settings.ROAN_BACKENDS = NODES
    pauses.pause("default", user=admin_user)
    for _ in range(3):
        add(1, "pending")

    page = admin_client.get(URL).content.decode()

    paused = page.split('id="roan-paused">')[1].split("</td>")[0]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", paused)).strip()
    assert text.startswith("default ")
    assert "by admin: 3 attempts wait" in text
    assert "Resume on the Backends page" in text
    assert page.count('roan-badge roan-state-paused">paused</span>') == 2  # nodes a and b
    pauses.resume("default")
    pauses.forget_paused()  # resume() does it once its transaction commits
    assert 'id="roan-paused"' not in admin_client.get(URL).text


def test_latency_lines_never_look_alike_past_five_backends(settings: Any) -> None:
    now = timezone.now()
    buckets = [dashboard.Hour(now)]
    backends = [f"b{n}" for n in range(12)]
    chart = dashboard.latency_chart(buckets, backends)

    looks = [s["css"] for s in chart["series"]]
    assert len(set(looks)) == 12
    colours = [css.split()[0] for css in looks[: dashboard.SERIES_COLOURS]]
    assert len(set(colours)) == dashboard.SERIES_COLOURS == 8
    css = (Path(dashboard.__file__).parent.parent / "static/roan/dashboard.css").read_text()
    for n in range(dashboard.SERIES_COLOURS):
        assert f".roan-series-{n} polyline" in css
    assert ".roan-dash-1 polyline" in css


def test_purges_of_pages_known_to_be_cached_that_find_nothing_are_named(
    admin_client: Client, settings: Any
) -> None:
    settings.ROAN_BACKENDS = NODES
    for _ in range(8):
        add(1, "not_cached", rule_name="tag blog.post")
    for _ in range(3):
        add(1, "ok", rule_name="tag blog.post")
    # Purges from rules say nothing: the page may never have been cached.
    for _ in range(20):
        add(1, "ok")

    html = admin_client.get(URL).content.decode()

    assert 'id="roan-keys-differ"' in html
    text = re.sub(r"\s+", " ", html)
    assert "default: 8 of the last 11 purges of pages known to be cached" in text
    assert "the cache key probably differs: check HOSTS and the purge location" in text

    PurgeAttempt.objects.filter(status="not_cached").delete()
    assert 'id="roan-keys-differ"' not in admin_client.get(URL).content.decode()
