"""What roan reads and writes after commit is tried again when it loses a lock race
(roan.retrying): the tag index look-up of a committed change still purges, a real error
is not tried again, and nothing is retried inside a caller's transaction."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse
from django.test import RequestFactory

from roan import retrying
from roan.backends.base import URL
from roan.backends.locmem import LocMemBackend
from roan.models import PurgeAttempt
from roan.tags import index as tag_index
from roan.tags import purges as tag_purges
from roan.tags.collect import object_tag
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


class URLOnlyBackend(LocMemBackend):
    """A cache that cannot purge by tag (as nginx): its tag purges go through the index."""

    capabilities = frozenset({URL})


def lose_a_lock_race() -> None:
    """Fail as a statement that lost a lock race fails on this database, for real."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$"
            )
        elif connection.vendor == "mysql":
            cursor.execute(
                "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, "
                "MESSAGE_TEXT = 'Deadlock found when trying to get lock'"
            )
        else:
            # Another process holds SQLite's write lock; this write gives up after 10 ms.
            cursor.execute("PRAGMA busy_timeout")
            (waited,) = cursor.fetchone()
            other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                cursor.execute("PRAGMA busy_timeout = 10")
                cursor.execute("UPDATE roan_purgeattempt SET id = id WHERE id < 0")
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {int(waited)}")
                other.rollback()
                other.close()
    raise AssertionError("the statement did not fail")


def fail_a_query() -> None:
    """Fail as a bug does: a table that does not exist."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM roan_no_such_table")


@pytest.fixture
def url_only(settings: Any, outbox: list[Any]) -> list[Any]:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {"pages": {"BACKEND": f"{__name__}.URLOnlyBackend"}}
    return outbox


def remember(path: str, tag: str) -> None:
    response = HttpResponse("page")
    response["Cache-Control"] = "public, max-age=300"
    tag_index.remember(RequestFactory().get(path), response, frozenset({tag}))


def failing_after_commit(
    monkeypatch: pytest.MonkeyPatch, failure: Callable[[], None]
) -> list[bool]:
    """Make the first tag index look-up outside a transaction (the one after commit) run
    ``failure`` first; return whether each look-up was inside one."""
    calls: list[bool] = []
    expand = tag_purges.expand

    def expand_once_failing(*args: Any, **kwargs: Any) -> Any:
        inside = connection.in_atomic_block
        calls.append(inside)
        if not inside and calls.count(False) == 1:
            failure()
        return expand(*args, **kwargs)

    monkeypatch.setattr(tag_purges, "expand", expand_once_failing)
    return calls


def save_while_a_page_is_indexed(post: Post, late: str) -> None:
    with transaction.atomic():
        post.title = "After"
        post.save()
        # A page rendered before the commit, indexed after the save looked at the index:
        # only the look-up after commit finds it.
        remember(late, object_tag(Post, post.pk))


def test_a_look_up_after_commit_that_lost_a_lock_race_is_tried_again(
    url_only: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    post = Post.objects.create(title="Before", slug=uuid.uuid4().hex)
    url_only.clear()
    PurgeAttempt.objects.all().delete()
    calls = failing_after_commit(monkeypatch, lose_a_lock_race)
    monkeypatch.setattr(retrying, "FIRST_WAIT", 0.001)
    late = f"/late/{uuid.uuid4().hex[:8]}/"

    save_while_a_page_is_indexed(post, late)

    assert calls.count(False) == 2  # failed once after commit, then tried again
    assert [request.target for _node, request in url_only] == [late]
    assert list(PurgeAttempt.objects.values_list("target", "status")) == [(late, "ok")]


def test_a_look_up_after_commit_that_failed_otherwise_is_not_tried_again(
    url_only: list[Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    post = Post.objects.create(title="Before", slug=uuid.uuid4().hex)
    url_only.clear()
    calls = failing_after_commit(monkeypatch, fail_a_query)
    late = f"/late/{uuid.uuid4().hex[:8]}/"

    save_while_a_page_is_indexed(post, late)

    assert calls.count(False) == 1
    assert url_only == []
    assert "looking at the tag index after commit failed" in caplog.text


def test_a_lost_lock_race_is_retryable_and_a_bug_is_not() -> None:
    with pytest.raises(DatabaseError) as lost:
        lose_a_lock_race()
    with pytest.raises(DatabaseError) as bug:
        fail_a_query()
    assert retrying.is_retryable(lost.value)
    assert retrying.is_retryable(lost.value.__cause__)  # the driver's own error, too
    assert not retrying.is_retryable(bug.value)
    assert not retrying.is_retryable(ValueError("database is locked"))


def test_nothing_is_tried_again_inside_a_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "FIRST_WAIT", 0.001)
    tries: list[int] = []

    def block() -> int:
        tries.append(1)
        if len(tries) == 1:
            lose_a_lock_race()
        return len(tries)

    assert retrying.retried(block, using="default", what="a test") == 2
    tries.clear()
    with pytest.raises(DatabaseError), transaction.atomic():
        retrying.retried(block, using="default", what="a test")
    assert len(tries) == 1
