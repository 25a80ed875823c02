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
