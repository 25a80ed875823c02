"""The contract every database dialect fulfils, with portable SQL as the default."""

from __future__ import annotations

import contextlib
import datetime
import operator
from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import Expression
from django.db.models.functions import TruncHour

#: SQLite caps bound parameters per statement (32766 since 3.32); stay well below.
CHUNK = 500


class Dialect:
    """Portable behaviour: what a database without a module of its own gets."""

    #: ``UPDATE ... RETURNING`` claims in one statement.
    claims_in_one_statement = False
    #: ``SELECT ... FOR UPDATE SKIP LOCKED`` inside the claim's ``UPDATE``.
    skips_locked_in_claim = False
    #: One writer at a time: a second connection would wait for the first's lock.
    one_writer = False
    #: How many times a claim runs when the database picked it as a deadlock victim.
    claim_tries = 1

    def returns_ids_from_insert(self, connection: Any) -> bool:
        """Whether a multi-row ``INSERT ... RETURNING`` gives each row's id, in order."""
        return True

    def is_deadlock(self, exc: Exception) -> bool:
        """Whether ``exc`` is a deadlock that rolled the whole transaction back."""
        return False

    def is_in_memory(self, connection: Any) -> bool:
        """Whether the database lives in this connection only (another connection would
        open an empty one)."""
        return False

    def datetime_param(self, connection: Any, value: datetime.datetime) -> Any:
        """A datetime as raw SQL binds it."""
        return connection.ops.adapt_datetimefield_value(value)

    def ids_condition(self, qn: Any, ids: Sequence[int]) -> tuple[str, list[Any]]:
        """A ``WHERE`` condition for rows with these ids, and its parameters."""
        return f"{qn('id')} IN ({', '.join(['%s'] * len(ids))})", list(ids)

    def lease(self, cursor: Any, head: str, ids: list[int], params: list[Any]) -> None:
        """Run ``head`` (an ``UPDATE ... WHERE id``) for ``ids``, in bounded chunks."""
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            cursor.execute(f"{head}IN ({', '.join(['%s'] * len(chunk))})", [*params, *chunk])

    def record(
        self,
        connection: Any,
        cursor: Any,
        table: str,
        single: str,
        rows: list[tuple[Any, ...]],
        columns: OutcomeColumns,
    ) -> None:
        """Write outcome ``rows`` (the values of ``columns.all``, then the id): by
        default ``single`` run for each row."""
        cursor.executemany(single, rows)

    @contextlib.contextmanager
    def own_commit(self, connection: Any) -> Iterator[None]:
        """Around a commit that only records outcomes, outside any caller's transaction."""
        yield

    def hour_expression(self, column: str, use_tz: bool) -> Expression:
        """The UTC hour of a datetime column, as an expression the dashboard groups by."""
        return TruncHour(column, tzinfo=datetime.UTC)

    def hour_value(self, value: Any) -> datetime.datetime:
        """A value of :meth:`hour_expression` as an aware datetime."""
        return value.astimezone(datetime.UTC).replace(  # type: ignore[no-any-return]
            minute=0, second=0, microsecond=0
        )


class OutcomeColumns:
    """What record() writes, shared by every dialect: all the outcome columns in order,
    those that differ from row to row of a batch (latency, next attempt) and the others,
    mostly shared by a batch's rows."""

    def __init__(self, all: tuple[str, ...], varying: tuple[str, ...]) -> None:
        self.all = all
        self.varying = varying
        self.shared = tuple(c for c in all if c not in varying)
        self._shared_of = operator.itemgetter(*(all.index(c) for c in self.shared))

    def groups(
        self, rows: list[tuple[Any, ...]]
    ) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
        """Outcome rows (the id last) grouped by every column but the varying ones: each
        group's shared values and its rows."""
        found: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        for row in rows:
            found.setdefault(self._shared_of(row), []).append(row)
        yield from found.items()


__all__ = ["CHUNK", "Dialect", "OutcomeColumns"]
