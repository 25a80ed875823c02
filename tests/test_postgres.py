"""PostgreSQL-only guarantees (deselected on other databases, never skipped)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from roan.models import PurgeAttempt

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROW = {"backend": "default", "node": "default", "target": "/posts/", "trigger": "save"}


def test_a_sender_cannot_take_a_row_that_an_open_transaction_merged_into() -> None:
    """Otherwise the purge could go out before the merging change commits."""
    [row_id] = PurgeAttempt.objects.write([ROW])  # pending, committed, unclaimed
    merged = threading.Event()
    release = threading.Event()

    def editor() -> None:
        try:
            with transaction.atomic():
                assert PurgeAttempt.objects.write([ROW]) == [row_id]  # merged: row locked
                merged.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=editor)
    thread.start()
    try:
        assert merged.wait(10)
        assert PurgeAttempt.objects.claim([row_id]) == []  # skipped while locked
    finally:
        release.set()
        thread.join(10)
    [claimed] = PurgeAttempt.objects.claim([row_id])
    assert claimed.pk == row_id
    assert claimed.coalesced == 1


def test_pending_rows_go_in_one_statement_per_500(django_assert_num_queries) -> None:
    rows = [{**ROW, "target": f"/p/{i}/"} for i in range(700)]
    with django_assert_num_queries(2):
        ids = PurgeAttempt.objects.write(rows)
    assert len(set(ids)) == 700
    assert PurgeAttempt.objects.filter(status="pending").count() == 700


def test_a_save_claims_its_rows_by_key_while_a_backlog_waits(post_rule, settings) -> None:
    """A paused (or down) backend leaves thousands of pending rows, written since the
    planner last looked at the table: each save's claim still finds its own rows by their
    primary key instead of reading every pending row of the status index."""
    from django.test.utils import CaptureQueriesContext

    from tests.testapp.models import Post

    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
        "paused": {"BACKEND": "roan.backends.locmem.LocMemBackend", "PAUSED": True},
    }
    done = [{**ROW, "target": f"/done/{i}/", "status": "ok"} for i in range(200)]
    PurgeAttempt.objects.write(done)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE roan_purgeattempt")  # statistics: nothing pending
    backlog = [{**ROW, "backend": "paused", "target": f"/wait/{i}/"} for i in range(3000)]
    PurgeAttempt.objects.write(backlog)

    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        post = Post.objects.create(title="One", slug="one")
    claims = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("UPDATE")
        and '"claimed_until" = ' in q["sql"]
        and "LIMIT" in q["sql"]
    ]
    assert claims, "the save claimed its rows in its transaction"
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + claims[0])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "roan_purgeattempt_pkey" in plan
    assert "roan_attempt_status" not in plan
    # And the save's purges went out; the backlog still waits.
    mine = PurgeAttempt.objects.filter(target__in=["/posts/", f"/posts/{post.slug}/"])
    assert sorted(mine.values_list("backend", "status")) == [
        ("default", "ok"), ("default", "ok"), ("paused", "pending"), ("paused", "pending")
    ]  # fmt: skip
    assert PurgeAttempt.objects.filter(backend="paused", status="pending").count() == 3002
