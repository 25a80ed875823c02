"""Run a database block again when it lost a lock race: a deadlock, a serialization
failure, a lock wait that timed out, SQLite's "database is locked".

Only for what roan reads or writes outside a caller's transaction (after commit, in the
probe thread, when a page is indexed): there, the database rolled back just the failed
statement's own transaction, and the block can simply run again. Inside an atomic block
a retry is useless (PostgreSQL refuses every statement until the rollback, and MySQL
rolled the whole transaction back): the error goes to the caller, as it always did.

A retried block must be safe to run twice. roan's are: reads, updates that set the same
values again, and purges written again at worst (sent twice, which costs nothing).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db import Error as DatabaseError
from django.db import connections

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Tries in all (the first included).
TRIES = 4
#: Seconds before the second try; doubled for each next one, times 0.5 to 1.5 at random
#: so that the processes that collided do not collide again.
FIRST_WAIT = 0.05

#: PostgreSQL: deadlock_detected, serialization_failure.
SQLSTATES = frozenset({"40P01", "40001"})
#: MySQL and MariaDB: ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT.
MYSQL_CODES = frozenset({1213, 1205})
#: SQLite: SQLITE_BUSY after the busy timeout, SQLITE_LOCKED.
SQLITE_MESSAGES = ("database is locked", "database table is locked")

_DRIVERS = ("sqlite3", "psycopg", "psycopg2", "MySQLdb", "pymysql")


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` (Django's wrapper or the driver's own error, or one caused by
    either) says the statement lost a lock race, and running it again may succeed."""
    for error in _chain(exc):
        from_driver = type(error).__module__.partition(".")[0] in _DRIVERS
        if not (isinstance(error, DatabaseError) or from_driver):
            continue
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if state in SQLSTATES:
            return True
        code = error.args[0] if error.args else None
        if isinstance(code, int) and code in MYSQL_CODES:
            return True
        if isinstance(code, str) and code.startswith(SQLITE_MESSAGES):
            return True
    return False


def retried(block: Callable[[], T], *, using: str | Iterable[str], what: str) -> T:
    """``block()``, run up to ``TRIES`` times while it fails with a retryable error and
    no transaction is open on the database(s) ``using``; any other error, or the last
    one, is raised. ``what`` names the block in the log."""
    aliases = [using] if isinstance(using, str) else list(using)
    for tried in range(1, TRIES + 1):
        inside = any(connections[alias].in_atomic_block for alias in aliases)
        try:
            return block()
        except Exception as exc:
            if inside or tried == TRIES or not is_retryable(exc):
                raise
            wait = FIRST_WAIT * 2 ** (tried - 1) * random.uniform(0.5, 1.5)
            logger.info("roan: %s lost a lock race (%s); trying again", what, exc)
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
