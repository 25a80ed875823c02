"""MySQL and MariaDB: no ``UPDATE ... RETURNING``; ids from a multi-row ``INSERT`` only on
MariaDB 10.5+; a claim the database picked as a deadlock victim is taken again."""

from __future__ import annotations

from typing import Any

from roan.outbox.sql.base import Dialect, OutcomeColumns

#: ER_LOCK_DEADLOCK: InnoDB rolled the whole transaction back.
DEADLOCK = 1213
#: A ``CASE`` of this many ids, each looked up by every row it updates.
CASED_CHUNK = 1000


class MySQL(Dialect):
    claim_tries = 6

    def returns_ids_from_insert(self, connection: Any) -> bool:
        # A multi-row INSERT's ids need not be consecutive on MySQL: a row per statement.
        return bool(connection.mysql_is_mariadb and connection.mysql_version >= (10, 5))

    def is_deadlock(self, exc: Exception) -> bool:
        return exc.args[:1] == (DEADLOCK,)

    def record(
        self,
        connection: Any,
        cursor: Any,
        table: str,
        single: str,
        rows: list[tuple[Any, ...]],
        columns: OutcomeColumns,
    ) -> None:
        """One ``UPDATE ... WHERE id IN (...)`` per group of rows that share every outcome
        but their latency and next attempt time, those two set by ``CASE id``. The driver
        runs ``executemany()`` of an ``UPDATE`` as one statement and one round trip per
        row, which made recording a batch cost ten times its sending."""
        qn = connection.ops.quote_name
        for key, members in columns.groups(rows):
            for start in range(0, len(members), CASED_CHUNK):
                chunk = members[start : start + CASED_CHUNK]
                sets = [f"{qn(c)} = %s" for c in columns.shared]
                params: list[Any] = list(key)
                for column in columns.varying:
                    at = columns.all.index(column)
                    values = [row[at] for row in chunk]
                    if all(value == values[0] for value in values):
                        sets.append(f"{qn(column)} = %s")
                        params.append(values[0])
                        continue
                    whens = " ".join(["WHEN %s THEN %s"] * len(chunk))
                    sets.append(f"{qn(column)} = CASE {qn('id')} {whens} END")
                    for row, value in zip(chunk, values, strict=True):
                        params += [row[-1], value]
                marks = ", ".join(["%s"] * len(chunk))
                params += [row[-1] for row in chunk]
                cursor.execute(
                    f"UPDATE {table} SET {', '.join(sets)} "  # noqa: S608 - fixed names
                    f"WHERE {qn('id')} IN ({marks})",
                    params,
                )
