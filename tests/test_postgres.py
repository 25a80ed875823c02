"""PostgreSQL-only guarantees (deselected on other databases, never skipped)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from roan.models import PurgeAttempt
from tests.support import outbox_locks

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROW = {"backend": "default", "node": "default", "target": "/posts/", "trigger": "save"}


def test_editors_and_senders_never_wait_on_an_open_transaction() -> None:
    outbox_locks.editors_and_senders_never_wait_on_an_open_transaction(ROW)


def test_twins_are_found_by_the_whole_target() -> None:
    outbox_locks.twins_are_found_by_the_whole_target(ROW)


def test_pending_rows_go_in_one_statement_per_500(django_assert_num_queries) -> None:
    rows = [{**ROW, "target": f"/p/{i}/"} for i in range(700)]
    # Two INSERTs, in one transaction of their own: none or all are written.
    with django_assert_num_queries(4):
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
