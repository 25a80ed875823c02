"""Checks that PostgreSQL and MySQL/MariaDB share (called from tests/test_postgres.py and
tests/test_mysql.py): the editor's write holds nothing another transaction wants."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db import connection, transaction

from roan.models import PurgeAttempt


def editors_and_senders_never_wait_on_an_open_transaction(row: dict[str, Any]) -> None:
    """An editor's transaction that wrote requests for two shared targets and is still
    open (as a slow admin save is) makes neither another editor, writing the same targets
    in the other order, nor a sender wait; and nobody sends its rows before it commits.

    With a unique pending key written in the editor's transaction, the second editor
    waited for the first (and in the other order, deadlocked)."""
    first, second = {**row, "target": "/shared/a/"}, {**row, "target": "/shared/b/"}
    wrote = threading.Event()
    release = threading.Event()
    theirs: list[int] = []

    def slow_editor() -> None:
        try:
            with transaction.atomic():
                theirs.extend(PurgeAttempt.objects.write([first, second]))
                wrote.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_editor)
    thread.start()
    try:
        assert wrote.wait(30)
        started = time.monotonic()
        with transaction.atomic():
            mine = PurgeAttempt.objects.write([second]) + PurgeAttempt.objects.write([first])
        claimed = PurgeAttempt.objects.claim(mine, twins=True)
        waited = time.monotonic() - started
        # The open transaction's rows are neither seen nor waited for.
        assert sorted(a.pk for a in claimed) == sorted(mine)
        assert waited < 2, f"an editor waited {waited:.1f} s for another's transaction"
    finally:
        release.set()
        thread.join(30)
    # Once committed, they are due like any other.
    assert sorted(a.pk for a in PurgeAttempt.objects.claim(None, twins=True)) == sorted(theirs)


def twins_are_found_by_the_whole_target(row: dict[str, Any]) -> None:
    """2048 characters of four-byte UTF-8 would break any index on the target itself: the
    key is a digest, and a target differing only in case is another page."""
    long = {**row, "target": "/" + "\N{GRINNING FACE}" * 2047}
    ids = PurgeAttempt.objects.write([long, long, {**row, "target": "/Posts/"}])
    claimed = PurgeAttempt.objects.claim(ids[:1], twins=True)
    assert sorted(a.pk for a in claimed) == ids[:2]
    assert {a.target for a in claimed} == {long["target"]}
