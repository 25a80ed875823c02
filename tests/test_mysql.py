"""MySQL and MariaDB: the guarantees PostgreSQL gives (deselected on other databases).

The machine's MariaDB has no time-zone tables loaded, which is how a stock server starts.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from roan.admin import dashboard
from roan.models import PurgeAttempt
from roan.outbox.sql.mysql import MySQL
from tests.support import outbox_locks
from tests.support.admin_helpers import staff_client
from tests.testapp.models import Post

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]

ROW = {"backend": "default", "node": "default", "target": "/posts/", "trigger": "save"}


def test_editors_and_senders_never_wait_on_an_open_transaction() -> None:
    outbox_locks.editors_and_senders_never_wait_on_an_open_transaction(ROW)


def test_twins_are_found_by_the_whole_target() -> None:
    outbox_locks.twins_are_found_by_the_whole_target(ROW)


@pytest.mark.parametrize("returning", [True, False], ids=["mariadb-returning", "mysql-rows"])
def test_ids_come_back_in_order_with_and_without_returning(monkeypatch, returning) -> None:
    """MySQL has no INSERT ... RETURNING: each row is then its own statement (forced here)."""
    if not returning:
        monkeypatch.setattr(MySQL, "returns_ids_from_insert", lambda self, connection: False)
    rows = [
        {**ROW, "target": "/a/"},
        {**ROW, "target": "/b/"},
        {**ROW, "target": "/c/", "status": "skipped", "error": "no"},
        {**ROW, "target": "/b/"},  # a twin: a row of its own
    ]
    ids = PurgeAttempt.objects.write(rows)
    assert len(set(ids)) == 4
    targets = dict(PurgeAttempt.objects.filter(pk__in=ids).values_list("pk", "target"))
    assert [targets[i] for i in ids] == ["/a/", "/b/", "/c/", "/b/"]


def test_racing_claims_take_each_attempt_once() -> None:
    ids = PurgeAttempt.objects.write([{**ROW, "target": f"/r/{i}/"} for i in range(300)])
    start = threading.Barrier(3)
    taken: list[list[int]] = [[], [], []]

    def sender(mine: list[int]) -> None:
        try:
            start.wait(30)
            while batch := PurgeAttempt.objects.claim(None, limit=20):
                mine.extend(a.pk for a in batch)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, args=(mine,)) for mine in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [pk for mine in taken for pk in mine]
    assert sorted(every) == sorted(ids)  # each once, none left behind


def test_an_admin_save_of_a_post_with_a_rule_sends_its_purge(
    make_rule, outbox, django_user_model
) -> None:
    make_rule("posts", "/posts/\n/posts/{slug}/")
    post = Post.objects.create(title="T", slug="t")
    outbox.clear()
    PurgeAttempt.objects.all().delete()
    client = staff_client(django_user_model, "editor", ["testapp.change_post"])
    response = client.post(
        f"/admin/testapp/post/{post.pk}/change/",
        {"title": "New", "slug": "t", "body": "", "views": "0"},
    )
    assert response.status_code == 302, response.content[:2000]
    assert sorted(r.target for _node, r in outbox) == ["/posts/", "/posts/t/"]
    assert set(PurgeAttempt.objects.values_list("target", "status")) == {
        ("/posts/", "ok"),
        ("/posts/t/", "ok"),
    }


def test_the_dashboard_counts_per_hour_without_time_zone_tables(
    django_user_model: Any, settings: Any
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mysql.time_zone_name")
        (zones,) = cursor.fetchone()
    now = timezone.now()
    ids = PurgeAttempt.objects.write(
        [{**ROW, "target": f"/h/{i}/", "status": "ok", "latency_ms": 4.0} for i in range(3)]
    )
    PurgeAttempt.objects.filter(pk=ids[0]).update(created_at=now - datetime.timedelta(hours=2))
    with CaptureQueriesContext(connection) as queries:
        buckets = dashboard.dashboard_context()["hours"]
    # CONVERT_TZ() answers NULL without the tables: the buckets would be empty.
    assert not [q for q in queries if "CONVERT_TZ" in q["sql"]]
    assert [b.ok for b in buckets][-3:] == [1, 0, 2], f"time-zone tables: {zones}"

    client = staff_client(django_user_model, "viewer", ["roan.view_purgeattempt"])
    response = client.get("/admin/roan/dashboard/")
    assert response.status_code == 200


def test_django_finds_nothing_in_roan_this_database_cannot_create() -> None:
    """Partial constraints and indexes are skipped on MySQL (models.W036, W037): the
    coalescing and the index of rows to send must not depend on them."""
    from django.apps import apps
    from django.core import checks

    roan_app = apps.get_app_config("roan")
    found = checks.run_checks(app_configs=[roan_app], databases=["default"])
    assert [m.id for m in found if m.id and m.id.startswith("models.")] == []
