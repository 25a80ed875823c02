"""roan_prune: retention from ROAN_RETENTION_DAYS or --days, deleted in short batches."""

from __future__ import annotations

import datetime
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from roan.models import PurgeAttempt

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command("roan_prune", *args, stdout=out)
    return out.getvalue()


def attempts(days_old: int, *statuses: str) -> None:
    PurgeAttempt.objects.write(
        [
            {
                "backend": "default",
                "node": "default",
                "target": f"/{days_old}/{status}/{i}/",
                "trigger": "api",
                "status": status,
            }
            for i, status in enumerate(statuses)
        ]
    )
    PurgeAttempt.objects.filter(target__startswith=f"/{days_old}/").update(
        created_at=timezone.now() - datetime.timedelta(days=days_old, minutes=1)
    )


def left() -> list[str]:
    return sorted(PurgeAttempt.objects.values_list("target", flat=True))


def test_the_retention_setting_is_the_default_and_days_overrides_it(settings) -> None:
    attempts(100, "ok")
    attempts(20, "ok", "skipped")
    attempts(5, "not_cached")
    with pytest.raises(CommandError, match="ROAN_RETENTION_DAYS"):
        run()
    settings.ROAN_RETENTION_DAYS = 30
    assert "would delete 1 " in run("--dry-run")
    assert len(left()) == 4
    assert "deleted 1 " in run()
    assert left() == ["/20/ok/0/", "/20/skipped/1/", "/5/not_cached/0/"]
    assert "deleted 2 " in run("--days", "10")
    assert left() == ["/5/not_cached/0/"]


def test_pending_and_failed_attempts_are_never_pruned(settings) -> None:
    settings.ROAN_RETENTION_DAYS = 1
    attempts(50, "pending", "failed", "gave_up")
    assert "deleted 1 " in run()
    assert left() == ["/50/failed/1/", "/50/pending/0/"]
    assert "deleted 0 " in run("--status", "ok")


def test_rows_go_in_batches_each_its_own_short_statement() -> None:
    attempts(40, *["ok"] * 7)
    with CaptureQueriesContext(connection) as queries:
        assert "deleted 7 " in run("--days", "30", "--batch", "3")
    deletes = [
        q["sql"]
        for q in queries
        if q["sql"].upper().startswith("DELETE") and "overflowedtag" not in q["sql"]
    ]
    # 3 + 3 + 1 rows, each batch's kept tries first (by attempt id), then the attempts.
    assert len(deletes) == 3 * 2
    # The table each DELETE names, however the database quotes it ("x" or `x`).
    tables = [re.findall(r'DELETE FROM [`"]?(\w+)', sql, re.IGNORECASE)[:1] for sql in deletes]
    assert tables == [["roan_purgetry"], ["roan_purgeattempt"]] * 3
    # Not one long transaction: each statement commits on its own (autocommit), so no
    # transaction spans two batches, and no row is loaded or sent through signals first.
    assert not any(q["sql"].upper().startswith(("BEGIN", "SAVEPOINT")) for q in queries)
    on_attempts = [
        q for q in queries if "roan_purgeattempt" in q["sql"] and "roan_purgetry" not in q["sql"]
    ]
    assert len(on_attempts) == 3 * 2 + 1  # (ids, delete) per batch, then ids: none left

    assert left() == []


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(CommandError, match="0 or more"):
        run("--days", "-1")
    with pytest.raises(CommandError, match="1 or more"):
        run("--days", "1", "--batch", "0")
