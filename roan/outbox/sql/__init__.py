"""What differs between databases, in one place: a :class:`~roan.outbox.sql.base.Dialect`
per vendor (:mod:`.postgresql`, :mod:`.sqlite`, :mod:`.mysql`), chosen once per
connection by :func:`dialect`. No module outside this package tells databases apart.

The contract is small: how attempt rows are inserted (ids returned, or a row per
statement), claimed (one ``UPDATE ... RETURNING`` or ``SELECT ... FOR UPDATE`` then an
``UPDATE``), leased and recorded, and the few facts the sender and the dashboard need
(one writer at a time, an in-memory database, an hour expression).
"""

from __future__ import annotations

from typing import Any

from roan.outbox.sql.base import Dialect


def dialect(connection: Any) -> Dialect:
    """The dialect of ``connection`` (a Django database wrapper), kept on it."""
    found: Dialect | None = getattr(connection, "_roan_dialect", None)
    if found is None:
        found = connection._roan_dialect = _dialect_of(connection.vendor)
    return found


def _dialect_of(vendor: str) -> Dialect:
    if vendor == "postgresql":
        from roan.outbox.sql.postgresql import PostgreSQL

        return PostgreSQL()
    if vendor == "sqlite":
        from roan.outbox.sql.sqlite import SQLite

        return SQLite()
    if vendor == "mysql":
        from roan.outbox.sql.mysql import MySQL

        return MySQL()
    return Dialect()


__all__ = ["Dialect", "dialect"]
