"""QuerySets for roan's models, and the one write path for attempt rows."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import operator
import random
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.db import OperationalError, connections, models, router, transaction
from django.db.models import signals
from django.db.models.base import ModelState
from django.utils import timezone

from roan.outbox.sql import dialect
from roan.outbox.sql.base import CHUNK as _INSERT_CHUNK
from roan.outbox.sql.base import OutcomeColumns
from roan.signals import rules_changed
from roan.vocabulary import Completion

if TYPE_CHECKING:
    from roan.models import BackendState, PurgeAttempt, PurgeRule, PurgeTry


class PurgeRuleQuerySet(models.QuerySet["PurgeRule"]):
    """Every bulk write route bumps the rule stamp after commit, like ``save()`` does."""

    def _changed(self) -> None:
        rules_changed.send(sender=self.model, using=self.db)

    def update(self, **kwargs: Any) -> int:
        kwargs.setdefault("updated_at", timezone.now())
        count = super().update(**kwargs)
        self._changed()
        return count

    def delete(self) -> tuple[int, dict[str, int]]:
        result = super().delete()
        self._changed()
        return result

    def bulk_create(self, objs: Iterable[PurgeRule], *args: Any, **kwargs: Any) -> list[PurgeRule]:
        created = super().bulk_create(objs, *args, **kwargs)
        self._changed()
        return created

    def bulk_update(
        self, objs: Iterable[PurgeRule], fields: Iterable[str], batch_size: int | None = None
    ) -> int:
        objs = list(objs)
        now = timezone.now()
        for obj in objs:
            obj.updated_at = now
        count = super().bulk_update(objs, [*fields, "updated_at"], batch_size=batch_size)
        self._changed()
        return count


class PurgeRuleManager(models.Manager["PurgeRule"]):
    def get_queryset(self) -> PurgeRuleQuerySet:
        return PurgeRuleQuerySet(self.model, using=self._db)

    def get_by_natural_key(self, name: str) -> PurgeRule:
        return self.get(name=name)


class BackendStateManager(models.Manager["BackendState"]):
    def get_by_natural_key(self, alias: str) -> BackendState:
        return self.get(alias=alias)


_logger = logging.getLogger(__name__)

# What the write path fills in when a row does not say; every NOT NULL column is here.
_REQUIRED: dict[str, Any] = {
    "status": "pending",
    "host": "",
    "kind": "url",
    "error": "",
    "purge_id": "",
    "tries": 0,
    "coalesced": 0,
    "rule_name": "",
    "object_pk": "",
    "object_repr": "",
}
# Nullable columns, written only when some row of the statement has a value.
_OPTIONAL = (
    "http_status",
    "latency_ms",
    "next_attempt_at",
    "claimed_until",
    "finished_at",
    "rule_id",
    "content_type_id",
    "user_id",
)
_DATETIMES = frozenset(
    {"created_at", "updated_at", "next_attempt_at", "claimed_until", "finished_at"}
)
# A claim takes at most this many twins (requests for a purge it took) per attempt taken:
# a backlog of thousands of saves of one page still goes out once.
_TWINS_PER_CLAIMED = 10


def dedup_key(backend: str, node: str, host: str, kind: str, target: str) -> str:
    """What makes two attempts the same purge: 32 hex digits over the five columns.

    Each part is prefixed with its length, so no choice of values can make two different
    tuples hash alike by moving a separator.
    """
    text = "".join(f"{len(part)}:{part}" for part in (backend, node, host, kind, target))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


#: The purge an attempt stands for, as ``(backend, node, host, kind, target)``: attempts
#: alike in these are twins, sent once with one outcome for each (see :func:`dedup_key`).
purge_of = operator.attrgetter("backend", "node", "host", "kind", "target")


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _insert_sql(
    connection: Any, table: str, columns: tuple[str, ...], rows: int, returning: bool
) -> str:
    """A plain multi-row ``INSERT``: no conflict clause, no key another transaction holds."""
    qn = connection.ops.quote_name
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = (
        f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) "  # noqa: S608
        f"VALUES {', '.join([one] * rows)}"
    )
    return f"{sql} RETURNING {qn('id')}" if returning else sql


# What sending changes on an attempt row, in the order record() writes it.
_OUTCOME_COLUMNS = (
    "status",
    "http_status",
    "latency_ms",
    "error",
    "purge_id",
    "tries",
    "claimed_until",
    "updated_at",
    "next_attempt_at",
    "finished_at",
    "coalesced",
    "soft",
)
# What a claim reads of each row: what the sender, the rate limits, the layers, the
# status checks and the verification read or write on a claimed attempt.
_CLAIMED = frozenset(
    {
        "id",
        "coalesced",
        # roan.outbox.key_misses tells the index's purges by their rule name.
        "rule_name",
        # roan.outbox.sender writes a save's outcomes after the response, not others'.
        "trigger",
        "status",
        "backend",
        "node",
        "host",
        "kind",
        "target",
        "tries",
        "error",
        "purge_id",
        "next_attempt_at",
        "claimed_until",
        "updated_at",
        "completion",
        "completion_check_at",
    }
)
# What the claim's UPDATE sets, and so need not read back.
_SET_BY_CLAIM = frozenset({"claimed_until", "updated_at"})
# The outcomes that differ from row to row of a batch; the others are mostly shared.
_OUTCOMES = OutcomeColumns(_OUTCOME_COLUMNS, varying=("latency_ms", "next_attempt_at"))
# record() reads a thousand rows' outcomes at a time: these run in C.
_outcomes_of = operator.attrgetter(*_OUTCOME_COLUMNS)
_OUTCOME_DATETIMES = tuple(i for i, c in enumerate(_OUTCOME_COLUMNS) if c in _DATETIMES)


class PurgeAttemptQuerySet(models.QuerySet["PurgeAttempt"]):
    def due(self, now: datetime.datetime | None = None) -> PurgeAttemptQuerySet:
        """Pending or failed attempts whose time has come and that nobody holds."""
        now = now or timezone.now()
        return self.filter(
            models.Q(status="pending") | models.Q(status="failed"),
            models.Q(next_attempt_at__isnull=True) | models.Q(next_attempt_at__lte=now),
        ).filter(models.Q(claimed_until__isnull=True) | models.Q(claimed_until__lt=now))


class PurgeAttemptManager(models.Manager["PurgeAttempt"]):
    """Attempt rows are written here and nowhere else."""

    _sql_cache: dict[tuple[str, tuple[str, ...], int, bool], str] = {}

    def get_queryset(self) -> PurgeAttemptQuerySet:
        return PurgeAttemptQuerySet(self.model, using=self._db)

    def due(self, now: datetime.datetime | None = None) -> PurgeAttemptQuerySet:
        return self.get_queryset().due(now)

    def write(self, rows: Sequence[dict[str, Any]], using: str | None = None) -> list[int]:
        """Insert attempt rows in as few statements as possible; return their ids.

        Plain inserts only: every request gets a row of its own, and nothing here reads,
        updates or locks a row that another transaction wrote, so concurrent editors
        never wait on each other here. Twins (same backend, node, host, kind and target)
        are merged by the sender, which sends them once (see :meth:`claim`)."""
        if not rows:
            return []
        db = using or router.db_for_write(self.model)
        connection = connections[db]
        returning = dialect(connection).returns_ids_from_insert(connection)
        # Several statements: one transaction, so that a failure leaves no part written.
        several = len(rows) > _INSERT_CHUNK or (not returning and len(rows) > 1)
        alone = several and not connection.in_atomic_block
        ids: list[int] = []
        with transaction.atomic(using=db, savepoint=False) if alone else _nothing():
            for start in range(0, len(rows), _INSERT_CHUNK):
                ids.extend(self._insert(rows[start : start + _INSERT_CHUNK], db, returning))
        return ids

    def _insert(self, rows: Sequence[dict[str, Any]], db: str, returning: bool) -> list[int]:
        # This runs inside every save that fires a rule, so it is written for speed: the
        # SQL text is cached, and values go to the driver as they are except datetimes
        # (the only type here that a backend adapts).
        connection = connections[db]
        adapt = connection.ops.adapt_datetimefield_value
        now = adapt(timezone.now())
        # Plain VALUES rows, not one array per column: with psycopg's default client-side
        # binding, dumping arrays costs more than the statement itself (bench/save_overhead.py).
        optional = tuple(c for c in _OPTIONAL if any(row.get(c) is not None for row in rows))
        columns: tuple[str, ...] = (
            "created_at",
            "updated_at",
            "backend",
            "node",
            "target",
            "trigger",
        )
        columns += tuple(_REQUIRED) + optional
        columns += ("dedup_key",)
        params: list[Any] = []
        for row in rows:
            params += (now, now, row["backend"], row["node"], row["target"], row["trigger"])
            params += [row.get(c, default) for c, default in _REQUIRED.items()]
            for column in optional:
                value = row.get(column)
                params.append(adapt(value) if column in _DATETIMES and value is not None else value)
            params.append(
                dedup_key(
                    row["backend"],
                    row["node"],
                    row.get("host", ""),
                    row.get("kind", "url"),
                    row["target"],
                )
            )
        with connection.cursor() as cursor:
            if returning:
                cursor.execute(self._sql(connection, columns, len(rows), returning=True), params)
                return [row[0] for row in cursor.fetchall()]
            # MySQL: one row per statement, its id from the cursor.
            width = len(columns)
            single = self._sql(connection, columns, 1, returning=False)
            ids = []
            for i in range(len(rows)):
                cursor.execute(single, params[i * width : (i + 1) * width])
                ids.append(cursor.lastrowid)
            return ids

    def _sql(self, connection: Any, columns: tuple[str, ...], rows: int, returning: bool) -> str:
        key = (connection.alias, columns, rows, returning)
        sql = self._sql_cache.get(key)
        if sql is None:
            sql = self._sql_cache[key] = _insert_sql(
                connection, self.model._meta.db_table, columns, rows, returning
            )
        return sql

    def claim(
        self,
        ids: Sequence[int] | None,
        *,
        limit: int = 1000,
        using: str | None = None,
        exclude_backends: Collection[str] = (),
        any_time: bool = False,
        twins: bool = False,
    ) -> list[PurgeAttempt]:
        """Take due attempts (these ``ids``, or any) for sending, under a lease.

        ``any_time``: also those whose ``next_attempt_at`` has not come (the outer
        attempts an inner cache's purge releases, see :mod:`roan.outbox.layers`); never one
        that another sender holds. ``twins``: also the due attempts for the same purge
        (backend, node, host, kind and target) as those taken, up to ten times ``limit``
        more (recording them costs a fraction of sending), so
        that the sender sends each purge once for all the requests waiting for it. Where
        the database has SKIP LOCKED (PostgreSQL, MariaDB 10.6+, MySQL 8), rows another
        sender holds are skipped, never waited for.
        """
        db = using or router.db_for_write(self.model)
        connection = connections[db]
        # InnoDB may still pick a claim as a deadlock victim (against another sender's
        # claim or a prune); it rolled the claim back whole, so take again.
        sql = dialect(connection)
        tries = 1 if connection.in_atomic_block else sql.claim_tries
        for attempt in range(tries):
            try:
                claimed = self._claim(ids, limit, db, exclude_backends, any_time)
                if twins and claimed:
                    more = _TWINS_PER_CLAIMED * limit
                    claimed += self._claim_twins(claimed, more, db, exclude_backends)
                return claimed
            except OperationalError as exc:
                if attempt + 1 == tries or not sql.is_deadlock(exc):
                    raise
            # Apart, so that the same senders do not meet this one again.
            time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
        raise AssertionError("unreachable")

    def _claim_twins(
        self,
        claimed: Sequence[PurgeAttempt],
        limit: int,
        db: str,
        exclude_backends: Collection[str],
    ) -> list[PurgeAttempt]:
        """Claim the due attempts that share a key with ``claimed`` (at most ``limit``):
        requests for the same purge written by other transactions, sent with these."""
        keys = sorted({dedup_key(*purge_of(a)) for a in claimed})
        taken: list[PurgeAttempt] = []
        for start in range(0, len(keys), _INSERT_CHUNK):
            if len(taken) >= limit:
                break
            taken += self._claim(
                None,
                limit - len(taken),
                db,
                exclude_backends,
                False,
                keys=keys[start : start + _INSERT_CHUNK],
            )
        return taken

    def _claim(
        self,
        ids: Sequence[int] | None,
        limit: int,
        db: str,
        exclude_backends: Collection[str],
        any_time: bool,
        *,
        keys: Sequence[str] = (),
    ) -> list[PurgeAttempt]:
        from roan.conf import roan_settings

        now = timezone.now()
        lease = now + datetime.timedelta(seconds=roan_settings.RETRY["LEASE"])
        connection = connections[db]
        if dialect(connection).claims_in_one_statement:
            # Atomic on its own; inside a caller's transaction a savepoint keeps a failure
            # from aborting it (PostgreSQL).
            with transaction.atomic(using=db) if connection.in_atomic_block else _nothing():
                return self._claim_returning(
                    ids, limit, db, exclude_backends, any_time, now, lease, keys
                )
        with transaction.atomic(using=db):
            qs = self.get_queryset().using(db)
            if any_time:
                qs = qs.filter(
                    models.Q(status="pending") | models.Q(status="failed"),
                    models.Q(claimed_until__isnull=True) | models.Q(claimed_until__lt=now),
                )
            else:
                qs = qs.due(now)
            if ids is not None:
                qs = qs.filter(pk__in=list(ids))
            if keys:
                qs = qs.filter(dedup_key__in=list(keys))
            if exclude_backends:  # paused: left pending and unclaimed
                qs = qs.exclude(backend__in=list(exclude_backends))
            connection = connections[db]
            if connection.features.has_select_for_update_skip_locked:
                qs = qs.select_for_update(skip_locked=True)
            elif connection.features.has_select_for_update:
                # MariaDB 10.5 has no SKIP LOCKED: wait for other senders' claims rather
                # than read the same rows and send them twice.
                qs = qs.select_for_update()
            claimed = list(qs.order_by("id")[:limit])
            if claimed:
                self._lease([a.pk for a in claimed], lease, now, db)
                for attempt in claimed:
                    attempt.claimed_until = lease
        return claimed

    def write_claimed(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        using: str,
        exclude_backends: Collection[str] = (),
    ) -> tuple[list[int], list[PurgeAttempt]]:
        """Write attempt rows (as :meth:`write`) for this process to send itself: the
        pending ones that are due are written claimed, under a lease, so they need no
        claim of their own after the commit. Return the ids written and the claimed
        attempts (built from what was written, no query). The rows of the
        ``exclude_backends`` (paused) are written unclaimed, for ``resume()``.

        Still one ``INSERT`` and nothing else: the rows are this transaction's own, so
        nobody can take them before it commits. A failure here is the caller's, as a
        failed write is.
        """
        from roan.conf import roan_settings

        now = timezone.now()
        lease = now + datetime.timedelta(seconds=roan_settings.RETRY["LEASE"])
        mine = [
            i
            for i, row in enumerate(rows)
            if row.get("status", "pending") == "pending"
            and row["backend"] not in exclude_backends
            and row.get("claimed_until") is None
            and (row.get("next_attempt_at") is None or row["next_attempt_at"] <= now)
        ]
        if mine:
            rows = list(rows)
            for i in mine:
                rows[i] = {**rows[i], "claimed_until": lease}
        ids = self.write(rows, using=using)
        names = [f.attname for f in self._claimed_fields()]
        values = []
        for i in mine:
            row = rows[i]
            known = {
                **_REQUIRED,
                "next_attempt_at": None,
                "completion": Completion.NONE,
                "completion_check_at": None,
                **{name: row[name] for name in names if name in row},
                "id": ids[i],
                "updated_at": now,
            }
            values.append([known[name] for name in names])
        return ids, self._built(using, names, values)

    def renew(self, attempts: Sequence[PurgeAttempt], *, using: str) -> list[PurgeAttempt]:
        """Lease again those of ``attempts`` (claimed by this process) that are still under
        its lease, for one that is near its end (a transaction that lasted); return them.
        Rows another sender took meanwhile are left to it."""
        from roan.conf import roan_settings

        now = timezone.now()
        lease = now + datetime.timedelta(seconds=roan_settings.RETRY["LEASE"])
        by_lease: dict[datetime.datetime | None, list[PurgeAttempt]] = {}
        for attempt in attempts:
            by_lease.setdefault(attempt.claimed_until, []).append(attempt)
        rows = self.get_queryset().using(using)
        kept: list[PurgeAttempt] = []
        with transaction.atomic(using=using):
            for held, group in by_lease.items():
                pks = [attempt.pk for attempt in group]
                rows.filter(pk__in=pks, claimed_until=held).update(
                    claimed_until=lease, updated_at=now
                )
                # Read back in this transaction: the rows that carry this new lease.
                mine = set(
                    rows.filter(pk__in=pks, claimed_until=lease).values_list("pk", flat=True)
                )
                for attempt in group:
                    if attempt.pk in mine:
                        attempt.claimed_until, attempt.updated_at = lease, now
                        kept.append(attempt)
        return kept

    def _claim_returning(
        self,
        ids: Sequence[int] | None,
        limit: int,
        db: str,
        exclude_backends: Collection[str],
        any_time: bool,
        now: datetime.datetime,
        lease: datetime.datetime,
        keys: Sequence[str] = (),
    ) -> list[PurgeAttempt]:
        """The claim as one ``UPDATE ... RETURNING`` (PostgreSQL, SQLite 3.35+), instead
        of the ORM's ``SELECT ... FOR UPDATE`` and the lease's ``UPDATE``. On PostgreSQL
        the inner ``SELECT`` skips rows another sender holds, and the ``UPDATE`` checks its
        conditions again on a row that changed meanwhile, so two senders never both take
        a row; SQLite has one writer at a time."""
        connection = connections[db]
        qn = connection.ops.quote_name
        sql_of = dialect(connection)
        table = qn(self.model._meta.db_table)
        at = sql_of.datetime_param(connection, now)
        # Given ids, the rows are found by their primary key. The status is then only a
        # filter, written so that no index can serve it: a planner with stale statistics
        # (a backlog written a moment ago) would otherwise scan every pending row of the
        # status index for each claim.
        status = qn("status") if ids is None else f"({qn('status')} || '')"
        where = [
            f"{status} IN ('pending', 'failed')",
            f"({qn('claimed_until')} IS NULL OR {qn('claimed_until')} < %s)",
        ]
        params: list[Any] = [at]
        if not any_time:
            where.append(f"({qn('next_attempt_at')} IS NULL OR {qn('next_attempt_at')} <= %s)")
            params.append(at)
        if ids is not None:
            ids = list(ids)
            if not ids:
                return []
            condition, values = sql_of.ids_condition(qn, ids)
            where.append(condition)
            params += values
        if keys:
            where.append(f"{qn('dedup_key')} IN ({', '.join(['%s'] * len(keys))})")
            params += keys
        if exclude_backends:
            backends = list(exclude_backends)
            where.append(f"{qn('backend')} NOT IN ({', '.join(['%s'] * len(backends))})")
            params += backends
        inner = (
            f"SELECT {qn('id')} FROM {table} WHERE {' AND '.join(where)} "  # noqa: S608
            f"ORDER BY {qn('id')} LIMIT %s"
        )
        params.append(limit)
        if sql_of.skips_locked_in_claim:
            inner += " FOR UPDATE SKIP LOCKED"
        fields = self._returned_fields()
        names = [f.attname for f in fields]
        sql = (
            f"UPDATE {table} SET {qn('claimed_until')} = %s, {qn('updated_at')} = %s "  # noqa: S608
            f"WHERE {qn('id')} IN ({inner}) "
            f"RETURNING {', '.join(qn(f.column or f.attname) for f in fields)}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [sql_of.datetime_param(connection, lease), at, *params])
            rows = cursor.fetchall()
        claimed = self._build(db, names, rows, connection)
        for attempt in claimed:
            # Set by this statement: no need to read them back and convert them.
            attempt.claimed_until = lease
            attempt.updated_at = now
        claimed.sort(key=lambda a: a.pk)
        return claimed

    def _build(
        self, db: str, names: list[str], rows: list[tuple[Any, ...]], connection: Any
    ) -> list[PurgeAttempt]:
        """Model instances from the claim's rows, as ``Model.from_db`` makes them, at a
        fraction of its cost: a claim builds a thousand at a time, and ``__init__``'s
        loop over every field (the deferred ones included) was a third of the claim.

        The instance is the same (its ``_state`` says which database and that it is not
        new; the columns not read are deferred), and ``post_init`` is still sent to any
        receiver; with a ``pre_init`` receiver the ORM's own way is taken.
        """
        convert = self._converters(connection)
        if convert:
            converted = []
            for row in rows:
                values = list(row)
                for i, col, funcs in convert:
                    if values[i] is not None:  # NULL stays None through every converter
                        for func in funcs:
                            values[i] = func(values[i], col, connection)
                converted.append(values)
            rows = converted  # type: ignore[assignment]
        return self._built(db, names, rows)

    def _built(
        self, db: str, names: list[str], rows: Sequence[Sequence[Any]]
    ) -> list[PurgeAttempt]:
        """Instances from Python values of the columns ``names`` (in the model's field
        order), the others deferred (see :meth:`_build`)."""
        model = self.model
        orm = signals.pre_init.has_listeners(model)
        notify = signals.post_init.has_listeners(model)
        new = object.__new__
        built = []
        for values in rows:
            if orm:
                built.append(model.from_db(db, names, list(values)))
                continue
            attempt = new(model)
            state = attempt._state = ModelState()
            state.adding, state.db = False, db
            attempt.__dict__.update(zip(names, values, strict=True))
            if notify:
                signals.post_init.send(sender=model, instance=attempt)
            built.append(attempt)
        return built

    def _claimed_fields(self) -> list[Any]:
        """The columns a claim reads: what sending and recording use. The others (the
        origin, the verification) are left deferred: a caller that reads one gets it
        with a query, and a thousand rows cost half as much to read and build."""
        return [f for f in self.model._meta.concrete_fields if f.attname in _CLAIMED]

    def _returned_fields(self) -> list[Any]:
        """The columns the claim's ``RETURNING`` reads: those it does not set itself."""
        return [f for f in self._claimed_fields() if f.attname not in _SET_BY_CLAIM]

    _converter_cache: dict[str, list[tuple[int, Any, list[Any]]]] = {}

    def _converters(self, connection: Any) -> list[tuple[int, Any, list[Any]]]:
        """What the ORM does to each column it reads (SQLite's datetimes are text)."""
        convert = self._converter_cache.get(connection.alias)
        if convert is None:
            table = self.model._meta.db_table
            cols = [f.get_col(table) for f in self._returned_fields()]
            convert = self._converter_cache[connection.alias] = [
                (i, col, funcs)
                for i, col in enumerate(cols)
                if (
                    funcs := [
                        *connection.ops.get_db_converters(col),
                        *col.get_db_converters(connection),
                    ]
                )
            ]
        return convert

    def _lease(
        self, ids: list[int], lease: datetime.datetime, now: datetime.datetime, db: str
    ) -> None:
        # Plain SQL: the ORM resolves each of a thousand ids as an expression, which
        # costs more than the UPDATE itself.
        connection = connections[db]
        qn = connection.ops.quote_name
        sql = dialect(connection)
        head = (
            f"UPDATE {qn(self.model._meta.db_table)} "  # noqa: S608 - fixed names
            f"SET {qn('claimed_until')} = %s, {qn('updated_at')} = %s WHERE {qn('id')} "
        )
        with connection.cursor() as cursor:
            params = [sql.datetime_param(connection, lease), sql.datetime_param(connection, now)]
            sql.lease(cursor, head, ids, params)

    def record(self, attempts: Sequence[PurgeAttempt], using: str | None = None) -> None:
        """Write the outcome columns of sent ``attempts`` (status, HTTP status, latency,
        error, purge id, tries, lease, next attempt, finished), as set on the objects.

        ``bulk_update`` builds a ``CASE WHEN id = ...`` per row and column, which costs
        more than sending the purges. Here each database writes groups of like outcomes
        its own way (:meth:`roan.outbox.sql.base.Dialect.record`), in one transaction.
        """
        if not attempts:
            return
        db = using or router.db_for_write(self.model)
        connection = connections[db]
        qn = connection.ops.quote_name
        table = qn(self.model._meta.db_table)
        adapt = connection.ops.adapt_datetimefield_value
        adapted: dict[datetime.datetime, Any] = {}  # most rows share "now"
        rows = []
        for attempt in attempts:
            values = list(_outcomes_of(attempt))
            for i in _OUTCOME_DATETIMES:
                if (value := values[i]) is not None:
                    if (done := adapted.get(value)) is None:
                        done = adapted[value] = adapt(value)
                    values[i] = done
            values.append(attempt.pk)
            rows.append(tuple(values))
        sets = ", ".join(f"{qn(c)} = %s" for c in _OUTCOME_COLUMNS)
        single = f"UPDATE {table} SET {sets} WHERE {qn('id')} = %s"  # noqa: S608
        # Outside a caller's transaction, the commit is roan's own (see Dialect.own_commit).
        own = not connection.in_atomic_block
        with dialect(connection).own_commit(connection) if own else contextlib.nullcontext():
            self._record_rows(db, connection, table, single, rows, own=own)

    def _record_rows(
        self,
        db: str,
        connection: Any,
        table: str,
        single: str,
        rows: list[tuple[Any, ...]],
        *,
        own: bool,
    ) -> None:
        if len(rows) == 1 and own:
            # A save's usual outcome: one statement is atomic on its own, and a
            # transaction around it would cost a BEGIN and a COMMIT more.
            with connection.cursor() as cursor:
                cursor.execute(single, rows[0])
            return
        # In a caller's transaction this is a savepoint: a row the database refuses must
        # not abort the caller's transaction (PostgreSQL), _record_each goes on row by row.
        with transaction.atomic(using=db), connection.cursor() as cursor:
            dialect(connection).record(connection, cursor, table, single, rows, _OUTCOMES)


class PurgeTryManager(models.Manager["PurgeTry"]):
    """Every try of an attempt, kept: the audit log says what each send did, not only the
    last one.

    An attempt row holds its latest try (status, HTTP status, latency, error), which the
    next try overwrites. So when the sender records a try that failed and will be
    retried, it also writes that try as a ``PurgeTry`` row, in the transaction that
    records the outcome (:meth:`keeping`). The common path costs nothing: a try that ends
    the attempt (ok, not cached, skipped, gave up) is only on the attempt row. Every try
    is thus a ``PurgeTry`` or the attempt row itself, and :meth:`of` reads them in order.

    Kept when the try happens rather than from the claimed row at the next try: by then
    the row may say something else (a layered cache's "waiting for ..." in its error, a
    rate limit's release in its time), and a try whose retry never comes is kept too.
    """

    def _retried(self, attempts: Sequence[PurgeAttempt]) -> list[PurgeTry]:
        return [
            self.model(
                attempt_id=attempt.pk,
                number=attempt.tries,
                finished_at=attempt.updated_at,
                status=attempt.status,
                http_status=attempt.http_status,
                latency_ms=attempt.latency_ms,
                error=attempt.error,
            )
            for attempt in attempts
            if attempt.status == "failed" and attempt.tries >= 1
        ]

    @contextlib.contextmanager
    def keeping(self, attempts: Sequence[PurgeAttempt], *, using: str) -> Iterator[None]:
        """Keep the failed tries of ``attempts`` (outcomes set on the objects, not yet
        written), in one transaction with what the block writes (their outcomes).

        Nothing is opened when no try failed. Keeping the tries never costs the outcomes:
        a failure there is logged and the block runs all the same; a failure in the block
        rolls the tries back with it, so no try is kept for an outcome not recorded.
        """
        kept = self._retried(attempts)
        if not kept:
            yield
            return
        with transaction.atomic(using=using):
            try:
                with transaction.atomic(using=using):
                    # A sender whose lease ran out records the same try number as the
                    # one that took the attempt over: kept once.
                    self.using(using).bulk_create(kept, ignore_conflicts=True)
            except Exception:
                _logger.exception("roan: cannot keep %d failed tries", len(kept))
            yield

    def of(self, attempt: PurgeAttempt) -> list[PurgeTry]:
        """Every try of ``attempt`` that roan knows, first to last; an unsaved object
        stands for the try only the attempt row holds."""
        if not attempt.tries:
            return []
        db = router.db_for_read(self.model, instance=attempt)
        found = list(self.using(db).filter(attempt_id=attempt.pk).order_by("number"))
        if all(kept.number != attempt.tries for kept in found):
            found.append(
                self.model(
                    attempt_id=attempt.pk,
                    number=attempt.tries,
                    finished_at=attempt.finished_at or attempt.updated_at,
                    status=attempt.status,
                    http_status=attempt.http_status,
                    latency_ms=attempt.latency_ms,
                    error=attempt.error,
                )
            )
        return found

    def retried_counts(self, since: dict[str, datetime.datetime]) -> dict[str, int]:
        """For each key, how many tries since its time failed and were (to be) retried.

        One query over a range of the ``finished_at`` index, the only column it reads.
        """
        if not since:
            return {}
        counts = {
            key: models.Count("finished_at", filter=models.Q(finished_at__gte=when))
            for key, when in since.items()
        }
        found = (
            self.get_queryset()
            .order_by()
            .filter(finished_at__gte=min(since.values()))
            .aggregate(**counts)
        )
        return {key: found[key] or 0 for key in since}
