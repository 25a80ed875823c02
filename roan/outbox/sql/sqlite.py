"""SQLite: one writer at a time; claims in one ``UPDATE ... RETURNING`` (3.35+), outcomes
joined from ``VALUES`` (3.33+), commits that only record outcomes unsynced in WAL mode."""

from __future__ import annotations

import contextlib
import datetime
import sqlite3
from collections.abc import Iterator
from typing import Any

from django.db.models import CharField, Expression
from django.db.models.functions import Substr

from roan.outbox.sql.base import Dialect, OutcomeColumns

#: Rows per statement when recording, below the connection's parameter limit.
RECORD_CHUNK = 5000
#: ``PRAGMA synchronous = FULL``.
FULL_SYNC = 2


class SQLite(Dialect):
    one_writer = True
    claims_in_one_statement = sqlite3.sqlite_version_info >= (3, 35)
    #: ``UPDATE ... FROM``.
    updates_from = sqlite3.sqlite_version_info >= (3, 33)

    def parameter_limit(self, connection: Any) -> int:
        """How many parameters one statement may bind on this (open) connection."""
        raw = connection.connection
        return int(raw.getlimit(connection.Database.SQLITE_LIMIT_VARIABLE_NUMBER))

    def is_in_memory(self, connection: Any) -> bool:
        return bool(connection.is_in_memory_db())

    def record(
        self,
        connection: Any,
        cursor: Any,
        table: str,
        single: str,
        rows: list[tuple[Any, ...]],
        columns: OutcomeColumns,
    ) -> None:
        """3.33+: one ``UPDATE ... FROM (VALUES ...)`` per group of rows that share every
        outcome but their latency and next attempt time, those two joined in by id. A
        prepared ``UPDATE`` run for each row costs SQLite a statement step and reset per
        row, which made recording take longer than sending the batch."""
        if not self.updates_from:
            cursor.executemany(single, rows)
            return
        qn = connection.ops.quote_name
        limit = self.parameter_limit(connection)
        at = [columns.all.index(c) for c in columns.varying]
        sets = ", ".join(
            [
                *(f"{qn(c)} = %s" for c in columns.shared),
                *(f"{qn(c)} = v.column{i + 2}" for i, c in enumerate(columns.varying)),
            ]
        )
        width = 1 + len(columns.varying)
        per = max(1, min(RECORD_CHUNK, (limit - len(columns.shared)) // width))
        mark = f"({', '.join(['%s'] * width)})"
        for key, members in columns.groups(rows):
            for start in range(0, len(members), per):
                chunk = members[start : start + per]
                params = list(key)
                for row in chunk:
                    params.append(row[-1])
                    params += [row[i] for i in at]
                cursor.execute(
                    f"UPDATE {table} SET {sets} "  # noqa: S608 - fixed column names
                    f"FROM (VALUES {', '.join([mark] * len(chunk))}) AS v "
                    f"WHERE {table}.{qn('id')} = v.column1",
                    params,
                )

    @contextlib.contextmanager
    def own_commit(self, connection: Any) -> Iterator[None]:
        """In WAL mode, a commit that only records outcomes does not wait for the disk
        (``synchronous = NORMAL`` for that commit alone). A power loss can then cost the
        last such commits and never the database's consistency: those rows are left
        claimed, as if the sender had died before recording, and are sent again once
        their lease ends. Not in rollback-journal mode, where NORMAL could corrupt the
        file."""
        level = self._wal_sync_level(connection)
        if level is None:
            yield
            return
        raw = connection.connection
        raw.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            raw.execute(f"PRAGMA synchronous = {int(level)}")

    def _wal_sync_level(self, connection: Any) -> int | None:
        """The connection's ``synchronous`` level when it is in WAL mode and waits for the
        disk at each commit (FULL or EXTRA), else None; read once per opened connection."""
        connection.ensure_connection()
        raw = connection.connection
        known = getattr(connection, "_roan_wal_sync", None)
        if known is not None and known[0] is raw:
            return known[1]  # type: ignore[no-any-return]
        level: int | None = None
        try:
            journal = str(raw.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            sync = int(raw.execute("PRAGMA synchronous").fetchone()[0])
            if journal == "wal" and sync >= FULL_SYNC:
                level = sync
        except Exception:  # not worth a failed outcome: commit as the connection says
            level = None
        connection._roan_wal_sync = (raw, level)
        return level

    def hour_expression(self, column: str, use_tz: bool) -> Expression:
        if not use_tz:
            return super().hour_expression(column, use_tz)
        # Django's TruncHour calls a Python function per row on SQLite (about 10 us each,
        # a third of a second for a busy day); the stored text "YYYY-MM-DD HH:MM:SS" is
        # already UTC, so its first 13 characters are the hour.
        return Substr(column, 1, 13, output_field=CharField())

    def hour_value(self, value: Any) -> datetime.datetime:
        if isinstance(value, str):  # "YYYY-MM-DD HH" in UTC, see hour_expression()
            return datetime.datetime.strptime(value, "%Y-%m-%d %H").replace(tzinfo=datetime.UTC)
        return super().hour_value(value)
