"""PostgreSQL: claims in one ``UPDATE ... RETURNING`` that skips locked rows, ids and
outcomes as arrays."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from roan.outbox.sql.base import Dialect, OutcomeColumns

#: Rows per statement when recording: any number travels as one array per column.
RECORD_CHUNK = 5000


class PostgreSQL(Dialect):
    claims_in_one_statement = True
    skips_locked_in_claim = True

    def datetime_param(self, connection: Any, value: datetime.datetime) -> Any:
        return value  # psycopg binds aware datetimes itself

    def ids_condition(self, qn: Any, ids: Sequence[int]) -> tuple[str, list[Any]]:
        return f"{qn('id')} = ANY(%s::bigint[])", [list(ids)]

    def lease(self, cursor: Any, head: str, ids: list[int], params: list[Any]) -> None:
        cursor.execute(head + "= ANY(%s::bigint[])", [*params, ids])

    def record(
        self,
        connection: Any,
        cursor: Any,
        table: str,
        single: str,
        rows: list[tuple[Any, ...]],
        columns: OutcomeColumns,
    ) -> None:
        """One ``UPDATE ... FROM unnest()`` per group of rows that share every outcome but
        their latency and next attempt time (a batch is usually one or two groups). Only
        ids and the varying columns travel as arrays: psycopg dumps array elements in
        Python, which cost more than the update itself."""
        qn = connection.ops.quote_name
        varying = columns.varying
        sets = ", ".join(
            [*(f"{qn(c)} = %s" for c in columns.shared), *(f"{qn(c)} = v.{c}" for c in varying)]
        )
        sql = (
            f"UPDATE {table} SET {sets} "  # noqa: S608 - fixed column names
            "FROM unnest(%s::bigint[], %s::float8[], %s::timestamptz[]) "
            f"AS v(id, {', '.join(varying)}) WHERE {table}.{qn('id')} = v.id"
        )
        at = [columns.all.index(c) for c in varying]
        for key, members in columns.groups(rows):
            for start in range(0, len(members), RECORD_CHUNK):
                chunk = members[start : start + RECORD_CHUNK]
                arrays = [[row[-1] for row in chunk], *([row[i] for row in chunk] for i in at)]
                cursor.execute(sql, [*key, *arrays])
