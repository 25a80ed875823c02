"""roan.outbox.key_misses: a backend whose purges of indexed pages mostly find nothing is named
in the log, at most once per interval."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from roan.models import PurgeAttempt
from roan.outbox import key_misses

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    key_misses.reset()
    yield
    key_misses.reset()


def rows(status: str, count: int, *, rule_name: str = "tag blog.post") -> list[PurgeAttempt]:
    row = {"backend": "edge", "node": "n", "trigger": "save", "rule_name": rule_name}
    ids = PurgeAttempt.objects.write(
        [{**row, "target": f"/p/{i}/", "status": status} for i in range(count)]
    )
    return list(PurgeAttempt.objects.filter(pk__in=ids))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "roan.outbox.key_misses"]


def test_mostly_not_cached_warns_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "roan.outbox.key_misses")
    missed = rows("not_cached", 9)
    rows("ok", 3)
    key_misses.after_record(missed, using="default")
    [message] = warnings(caplog)
    assert "'edge': 9 of its last 12 purges of pages known to be cached" in message
    assert key_misses.MESSAGE in message
    key_misses.after_record(missed, using="default")  # rate-limited: no second look
    assert len(warnings(caplog)) == 1


def test_a_few_misses_or_purges_from_rules_say_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "roan.outbox.key_misses")
    missed = rows("not_cached", 4)
    rows("ok", 8)
    key_misses.after_record(missed, using="default")
    key_misses.reset()
    ruled = rows("not_cached", 20, rule_name="")
    key_misses.after_record(ruled, using="default")
    assert warnings(caplog) == []
    assert key_misses.misses("edge") == key_misses.Misses("edge", 4, 12)
    assert not key_misses.Misses("edge", 5, 9).keys_differ  # too few to tell
