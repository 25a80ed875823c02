"""The purge log: append-only, its columns and filters, a bounded count, re-purge."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from roan.admin import CappedCountPaginator, LogQuerySet, log
from roan.models import PurgeAttempt
from tests.support.admin_helpers import attempt
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db


def test_the_purge_log_is_append_only(admin_client) -> None:
    row = attempt(target="/x/")
    assert admin_client.get("/admin/roan/purgeattempt/").status_code == 200
    assert admin_client.get("/admin/roan/purgeattempt/add/").status_code == 403
    change = admin_client.post(f"/admin/roan/purgeattempt/{row.pk}/change/", {"target": "/y/"})
    assert change.status_code == 403
    row.refresh_from_db()
    assert row.target == "/x/"


def test_columns_show_a_status_badge_with_text_and_link_rule_and_object(
    admin_client, post_rule
) -> None:
    post = Post.objects.create(title="Hello", slug="hello")
    attempt(
        status="gave_up",
        target="/posts/hello/",
        http_status=403,
        latency_ms=12.34,
        rule=post_rule,
        rule_name="posts",
        content_type_id=post_rule.content_type_id,
        object_pk=str(post.pk),
        object_repr="Hello",
    )

    html = admin_client.get("/admin/roan/purgeattempt/").text

    assert '<span class="roan-badge roan-status-gave_up"' in html and ">gave up</span>" in html
    assert f'<a href="/admin/testapp/post/{post.pk}/change/">Hello</a>' in html
    assert f'<a href="/admin/roan/purgerule/{post_rule.pk}/change/">posts</a>' in html
    assert "12.3 ms" in html and "/posts/hello/" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=failed", ["/failed/"]),
        ("backend=other", ["/other/"]),
        ("trigger__exact=admin", ["/admin/"]),
        ("q=fail", ["/failed/"]),
    ],
)
def test_filters_and_search(admin_client, settings, query, expected) -> None:
    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
        "other": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
    }
    attempt(target="/failed/", status="failed")
    attempt(target="/other/", backend="other")
    attempt(target="/admin/", trigger="admin")

    response = admin_client.get(f"/admin/roan/purgeattempt/?{query}")

    assert [a.target for a in response.context["cl"].result_list] == expected


def test_the_list_never_counts_the_whole_table(admin_client, monkeypatch) -> None:
    monkeypatch.setattr(CappedCountPaginator, "cap", 5)
    for n in range(12):
        attempt(target=f"/p/{n}/")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/admin/roan/purgeattempt/")

    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)
    assert "more than 5 purge attempts" in response.text
    assert len(response.context["cl"].result_list) == 12  # the page itself is not capped


def test_re_purge_writes_new_attempts_and_leaves_old_rows_alone(
    admin_client, outbox, django_capture_on_commit_callbacks
) -> None:
    old = attempt(target="/again/", status="failed", error="503", trigger="save")
    before = PurgeAttempt.objects.values().get(pk=old.pk)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/roan/purgeattempt/",
            {"action": "repurge_selected", "_selected_action": [old.pk, old.pk]},
            follow=True,
        )

    # The commit (and so the send) comes after the response in this test.
    assert "Re-purging 1 target, /again/ on default: 1 waiting to be sent." in response.text
    assert PurgeAttempt.objects.values().get(pk=old.pk) == before
    new = PurgeAttempt.objects.exclude(pk=old.pk).get()
    assert (new.target, new.trigger, new.user.username, new.status) == (
        "/again/",
        "admin",
        "admin",
        "ok",
    )
    assert [r.target for _node, r in outbox] == ["/again/"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("status__exact=gave_up", "roan_attempt_status"),
        ("trigger__exact=retry", "roan_attempt_trigger"),
        ("backend=rare", "roan_attempt_backend"),
        ("rule__id__exact={rule}", "roan_attempt_rule"),
    ],
)
def test_postgresql_serves_the_filtered_list_from_an_index(
    admin_client, settings, post_rule, query, index
) -> None:
    settings.ROAN_BACKENDS = {"rare": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    query = query.format(rule=post_rule.pk)
    table = PurgeAttempt._meta.db_table
    with connection.cursor() as cursor:
        # 200,000 ordinary rows and a few of the kind filtered for, then fresh statistics.
        cursor.execute(
            f"""
            INSERT INTO {table} (created_at, updated_at, status, backend, node, host, kind,
                target, error, purge_id, tries, coalesced, trigger, rule_name, object_pk,
                object_repr, rule_id)
            SELECT now() - make_interval(secs => n), now(),
                CASE WHEN n %% 5000 = 0 THEN 'gave_up' ELSE 'ok' END,
                CASE WHEN n %% 5000 = 1 THEN 'rare' ELSE 'default' END, 'default', '', 'url',
                '/p/' || n || '/', '', '', 1, 0,
                CASE WHEN n %% 5000 = 2 THEN 'retry' ELSE 'save' END, '', '', '',
                CASE WHEN n %% 5000 = 3 THEN %s END
            FROM generate_series(1, 200000) AS n
            """,
            [post_rule.pk],
        )
        cursor.execute(f"ANALYZE {table}")
    response = admin_client.get(f"/admin/roan/purgeattempt/?{query}")
    cl = response.context["cl"]
    assert len(cl.result_list) == 40
    plan = cl.queryset[: cl.list_per_page].explain()
    assert index in plan, plan
    assert f"Seq Scan on {table}" not in plan, plan


@pytest.mark.parametrize("kind", ["year", "month", "day"])
def test_the_date_hierarchy_finds_the_same_dates_as_django_without_a_full_scan(
    settings, kind
) -> None:
    settings.TIME_ZONE = "Europe/Berlin"  # days and months begin at local midnight
    moments = [
        "2025-12-31T22:30:00Z",
        "2025-12-31T23:30:00Z",
        "2026-01-02T10:00:00Z",
        "2026-03-29T00:30:00Z",
        "2026-03-29T23:30:00Z",
        "2027-06-01T12:00:00Z",
    ]
    for moment in moments:
        row = attempt()
        PurgeAttempt.objects.filter(pk=row.pk).update(created_at=moment)
    queryset = PurgeAttempt.objects.all()
    log = LogQuerySet(model=PurgeAttempt, query=queryset.query)

    if not (kind == "day" and connection.vendor == "mysql"):
        # Days over more than 400 days fall back to Django's datetimes() (the admin never
        # asks that), which on MySQL/MariaDB needs the server's time-zone tables.
        assert log.datetimes("created_at", kind) == djangos_datetimes(queryset, kind)
    assert log.filter(created_at__year=2026).datetimes("created_at", kind) == (
        djangos_datetimes(queryset.filter(created_at__year=2026), kind)
    )


def djangos_datetimes(queryset, kind: str) -> list:
    """What Django's own ``datetimes()`` answers. On MySQL/MariaDB that needs the server's
    time-zone tables (CONVERT_TZ), which roan's does not: there the same truncation is
    done here in Python."""
    if connection.vendor != "mysql":
        return list(queryset.datetimes("created_at", kind))
    from django.utils import timezone

    def start(moment):
        local = timezone.localtime(moment).replace(hour=0, minute=0, second=0, microsecond=0)
        if kind in {"month", "year"}:
            local = local.replace(day=1)
        if kind == "year":
            local = local.replace(month=1)
        return local.replace(tzinfo=None)

    starts = {start(m) for m in queryset.values_list("created_at", flat=True)}
    return [timezone.make_aware(s) for s in sorted(starts)]


def test_the_date_hierarchy_drills_down(admin_client) -> None:
    for moment in ["2025-05-01T12:00:00Z", "2026-01-02T12:00:00Z", "2026-01-05T12:00:00Z"]:
        row = attempt()
        PurgeAttempt.objects.filter(pk=row.pk).update(created_at=moment)

    years = admin_client.get("/admin/roan/purgeattempt/").text
    days = admin_client.get(
        "/admin/roan/purgeattempt/?created_at__year=2026&created_at__month=1"
    ).text

    assert "?created_at__year=2025" in years and "?created_at__year=2026" in years
    assert "created_at__day=2" in days and "created_at__day=5" in days
    assert "created_at__day=3" not in days


# -- the attempt's own page ----------------------------------------------------------------------


def field_text(page: str, name: str) -> str:
    """The text the attempt page shows for one field (tags stripped)."""
    import re

    block = page.split(f"field-{name}", 1)[1]
    value = block.split('<div class="readonly">', 1)[1].split("</div>", 1)[0]
    return re.sub(r"<[^>]+>", "", value).strip()


def test_the_attempt_page_shows_rounded_latency_created_time_and_links_the_object(
    admin_client, post_rule
) -> None:
    import datetime

    from django.utils import timezone

    post = Post.objects.create(title="Hello", slug="hello")
    PurgeAttempt.objects.all().delete()
    row = attempt(
        target="/posts/hello/",
        latency_ms=6.022481000002244,
        content_type_id=post_rule.content_type_id,
        object_pk=str(post.pk),
        object_repr="Hello",
    )
    created = datetime.datetime(2026, 12, 2, 1, 2, 3, tzinfo=datetime.UTC)
    PurgeAttempt.objects.filter(pk=row.pk).update(created_at=created)

    page = admin_client.get(f"/admin/roan/purgeattempt/{row.pk}/change/").content.decode()

    assert field_text(page, "latency") == "6.0 ms"
    assert "6.022481" not in page
    assert field_text(page, "created_exact") == timezone.localtime(created).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    assert f'<a href="/admin/testapp/post/{post.pk}/change/">Hello</a>' in page
    assert 'id="roan-repurge"' in page and "csrfmiddlewaretoken" in page


def test_the_attempt_page_re_purges_through_the_log_s_path(
    admin_client, outbox, django_capture_on_commit_callbacks
) -> None:
    old = attempt(target="/again/", status="failed", error="503")

    assert admin_client.get(f"/admin/roan/purgeattempt/{old.pk}/repurge/").status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/roan/purgeattempt/{old.pk}/repurge/", follow=True)

    assert response.redirect_chain[-1][0] == f"/admin/roan/purgeattempt/{old.pk}/change/"
    assert "Re-purging 1 target, /again/ on default:" in response.text
    new = PurgeAttempt.objects.exclude(pk=old.pk).get()
    assert (new.target, new.trigger, new.user.username) == ("/again/", "admin", "admin")
    assert [r.target for _node, r in outbox] == ["/again/"]


def test_the_attempt_page_offers_no_re_purge_without_the_permission(
    django_user_model, outbox
) -> None:
    from tests.support.admin_helpers import VIEW, staff_client

    row = attempt(target="/x/")
    client = staff_client(django_user_model, "viewer", VIEW)

    page = client.get(f"/admin/roan/purgeattempt/{row.pk}/change/")

    assert page.status_code == 200 and 'id="roan-repurge"' not in page.text
    assert client.post(f"/admin/roan/purgeattempt/{row.pk}/repurge/").status_code == 403
    assert PurgeAttempt.objects.count() == 1


# -- empty states -----------------------------------------------------------------------------


def empty_text(page: str) -> str:
    import re

    box = page.split('id="roan-empty">', 1)[1].split("</div>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", box)).strip()


def test_an_empty_log_says_what_will_appear_and_how_to_cause_it(admin_client) -> None:
    page = admin_client.get("/admin/roan/purgeattempt/").content.decode()

    text = empty_text(page)
    assert text.startswith("No purge attempts yet. Every purge roan sends or skips is listed")
    assert "To see one, add a purge rule (or check the rules), then save an object" in text
    assert 'href="/admin/roan/purgerule/add/"' in page and "Or purge URLs by hand." in text

    attempt(target="/x/")
    filtered = admin_client.get("/admin/roan/purgeattempt/?status__exact=failed").text
    assert empty_text(filtered).startswith("No purge attempt matches this search or these")
    assert 'id="roan-empty"' not in admin_client.get("/admin/roan/purgeattempt/").text


def test_an_empty_rules_list_says_what_a_rule_is_and_offers_to_add_one(admin_client) -> None:
    page = admin_client.get("/admin/roan/purgerule/").content.decode()

    assert empty_text(page).startswith("No purge rules yet. A rule names the pages to purge")
    assert "Add a purge rule" in page


def test_an_empty_dashboard_says_how_to_fill_it(admin_client) -> None:
    import re

    page = admin_client.get("/admin/roan/dashboard/").content.decode()

    box = page.split('id="roan-empty">', 1)[1].split("</p>", 1)[0]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", box)).strip()
    assert text.startswith("No purges in the last 7 days. The figures fill in as roan purges")
    attempt(target="/x/")
    assert 'id="roan-empty"' not in admin_client.get("/admin/roan/dashboard/").text


@pytest.mark.parametrize("language", ["en", "de", "fr"])
def test_the_row_checkbox_and_the_labels_are_djangos_own(language: str) -> None:
    rows = [
        attempt(status="gave_up", kind="prefix", target="/a/", verification="verified"),
        attempt(status="pending", kind="tag", target="post-1"),
    ]
    modeladmin = admin.site.get_model_admin(PurgeAttempt)
    with translation.override(language):
        for row in rows:
            django_own = admin.ModelAdmin.action_checkbox(modeladmin, row)
            assert modeladmin.action_checkbox(row) == django_own
            for field in ("status", "kind", "trigger", "verification", "completion"):
                display = getattr(row, f"get_{field}_display")()
                assert log.label(row, field) == display
