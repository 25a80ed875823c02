"""MySQL and MariaDB: the guarantees PostgreSQL gives (deselected on other databases).

The machine's MariaDB has no time-zone tables loaded, which is how a stock server starts.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import roan
from roan import managers
from roan.admin import dashboard
from roan.models import PurgeAttempt
from tests.support.admin_helpers import staff_client
from tests.testapp.models import Post

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]

ROW = {"backend": "default", "node": "default", "target": "/posts/", "trigger": "save"}


def test_two_transactions_purging_the_same_url_leave_one_pending_row(settings) -> None:
    settings.ROAN_DISPATCH = "task"  # no worker runs: the rows stay pending
    for _ in range(2):
        with transaction.atomic():
            roan.purge_urls(["/posts/"])
    [row] = PurgeAttempt.objects.filter(target="/posts/")
    assert (row.status, row.coalesced) == ("pending", 1)


def test_a_claimed_row_takes_no_more_requests_and_a_new_one_starts() -> None:
    """A change committed after the send must be purged again."""
    [first] = PurgeAttempt.objects.write([ROW])
    [claimed] = PurgeAttempt.objects.claim([first])
    [second] = PurgeAttempt.objects.write([ROW])
    assert second != claimed.pk
    assert PurgeAttempt.objects.write([ROW]) == [second]
    assert PurgeAttempt.objects.get(pk=second).coalesced == 1


def test_long_targets_with_any_characters_coalesce_too() -> None:
    """2048 characters of four-byte UTF-8 would break any index on the target itself."""
    row = {**ROW, "target": "/" + "\N{GRINNING FACE}" * 2047}
    [row_id] = PurgeAttempt.objects.write([row])
    assert PurgeAttempt.objects.write([row]) == [row_id]
    assert PurgeAttempt.objects.get(pk=row_id).target == row["target"]
    # A target that differs only in case is another page.
    assert PurgeAttempt.objects.write([{**ROW, "target": "/Posts/"}]) != [row_id]


@pytest.mark.parametrize("returning", [True, False], ids=["mariadb-returning", "mysql-select"])
def test_ids_come_back_in_order_with_and_without_returning(monkeypatch, returning) -> None:
    """MySQL has no INSERT ... RETURNING: the ids are read back by key (forced here)."""
    if not returning:
        monkeypatch.setattr(managers, "_returns_ids_from_upsert", lambda connection: False)
    [old] = PurgeAttempt.objects.write([{**ROW, "target": "/b/"}])
    rows = [
        {**ROW, "target": "/a/"},
        {**ROW, "target": "/b/"},  # merged into old
        {**ROW, "target": "/c/", "status": "skipped", "error": "no"},
        {**ROW, "target": "/d/"},
    ]
    ids = PurgeAttempt.objects.write(rows)
    assert ids[1] == old
    targets = dict(PurgeAttempt.objects.filter(pk__in=ids).values_list("pk", "target"))
    assert [targets[i] for i in ids] == ["/a/", "/b/", "/c/", "/d/"]
    assert PurgeAttempt.objects.get(pk=old).coalesced == 1


def test_a_sender_cannot_take_a_row_that_an_open_transaction_merged_into() -> None:
    """SKIP LOCKED: the claim neither waits for the editor's transaction nor takes the row."""
    assert connection.features.has_select_for_update_skip_locked
    [row_id] = PurgeAttempt.objects.write([ROW])
    merged = threading.Event()
    release = threading.Event()

    def editor() -> None:
        try:
            with transaction.atomic():
                assert PurgeAttempt.objects.write([ROW]) == [row_id]
                merged.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=editor)
    thread.start()
    try:
        assert merged.wait(30)
        assert PurgeAttempt.objects.claim([row_id]) == []
    finally:
        release.set()
        thread.join(30)
    [claimed] = PurgeAttempt.objects.claim([row_id])
    assert (claimed.pk, claimed.coalesced) == (row_id, 1)


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
