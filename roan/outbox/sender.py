"""The sender: claim due attempt rows, send them to their caches, record each outcome.

:func:`send` is what every route ends in (inline dispatch after commit, a task, the
``roan_dispatch`` worker): it claims rows so that racing senders send each attempt once,
fans out to every node in parallel with strict timeouts, and records the outcome of each
try on its row (with a jittered, capped backoff for the next one). Failures never raise
into the caller: a row that cannot be recorded stays claimed until its lease ends and is
sent again.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import datetime
import logging
import math
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router
from django.utils import timezone

from roan import backends as backend_registry
from roan import pauses
from roan.backends.base import (
    FAILED,
    GAVE_UP,
    NOT_CACHED,
    OK,
    PurgeRequest,
    PurgeResult,
    is_throttled,
    is_unreachable,
    not_sent,
)
from roan.conf import roan_settings
from roan.context import note_recorded
from roan.managers import purge_of
from roan.outbox import (
    after_response,
    completion,
    expansion,
    key_misses,
    layers,
    limits,
    verify,
    warming,
)
from roan.outbox.sql import dialect
from roan.vocabulary import CHANGE_TRIGGERS

if TYPE_CHECKING:
    from roan.models import PurgeAttempt

logger = logging.getLogger(__name__)


#: Attempts one send() claims, sends and records at most.
SEND_BATCH = 1000


def send_ids(
    ids: Sequence[int], *, using: str | None = None, batch: int = SEND_BATCH
) -> list[PurgeAttempt]:
    """Send these attempts (those still due), ``batch`` at a time, so that a big
    transaction or a backlog is sent whole rather than left for ``roan_dispatch``.

    With more than one batch, the next batch is claimed on a thread of its own (with its
    own connection) while this one is sent and recorded: the claim waits for the
    database, the send for the caches, and each goes on while the other waits. What a
    process that dies leaves is as with one batch at a time: only the batch it was
    sending can go out twice; the one it had claimed next is sent by another sender
    once the lease ends.
    """
    from roan.models import PurgeAttempt

    batch = max(1, batch)
    chunks = [ids[start : start + batch] for start in range(0, len(ids), batch)]
    db = using or router.db_for_write(PurgeAttempt)
    if len(chunks) > 1 and _claims_apart(db):
        return _send_claiming_ahead(chunks, db)
    attempts: list[PurgeAttempt] = []
    for chunk in chunks:
        attempts += send(chunk, using=db, limit=batch)
    return attempts


def _claims_apart(db: str) -> bool:
    """Whether another thread can claim for this one: not inside the caller's transaction
    (another connection would not see its rows, nor take part in it), not an in-memory
    SQLite database (another connection would open an empty one)."""
    connection = connections[db]
    if connection.in_atomic_block:
        return False
    return not dialect(connection).is_in_memory(connection)


def _claim(
    ids: Sequence[int] | None, limit: int, db: str | None
) -> tuple[list[PurgeAttempt], frozenset[str]]:
    """Claim due attempts, and the due twins of each (the same purge asked for by other
    transactions: sent once with them), leaving out the paused backends; return them and
    those."""
    from roan.models import PurgeAttempt

    paused = pauses.paused_backends()
    claimed = PurgeAttempt.objects.claim(
        ids, limit=limit, using=db, exclude_backends=paused, twins=True
    )
    return claimed, paused


def _close_here(db: str) -> None:
    connections[db].close()


def _send_claiming_ahead(chunks: list[Sequence[int]], db: str) -> list[PurgeAttempt]:
    """Send ``chunks`` with the next one claimed on a thread of its own. A batch goes in
    two halves whose outcomes are recorded on a thread while the next half is sent (see
    _Recorder), except with caches in layers: each layer waits for the inner one's
    outcomes, so the batch is sent and recorded as one (send_claimed)."""
    layered = any(layers.layers().values())
    attempts: list[PurgeAttempt] = []
    expanded: list[PurgeAttempt] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="roan-claim") as claimer:
        recorder = None if layered else _Recorder(db, claimer)
        try:
            ahead = claimer.submit(_claim, chunks[0], len(chunks[0]), db)
            for index in range(len(chunks)):
                claimed, paused = ahead.result()
                if index + 1 < len(chunks):
                    ahead = claimer.submit(_claim, chunks[index + 1], len(chunks[index + 1]), db)
                # Rows that stand for a tag's pages: expanded once this batch is done.
                claimed, tags = expansion.split(claimed)
                expanded += tags
                if not claimed:
                    continue
                if recorder is None:
                    attempts += send_claimed(claimed, using=db, paused=paused)
                    continue
                for part in _halves(limits.hold_back(claimed, using=db)):
                    recorder.before_send()
                    recorder.record(part, _send_only(part))
                attempts += claimed
            if recorder is not None:
                recorder.finish()
        finally:
            if recorder is not None:
                recorder.close()
            # The claimer's connection is its thread's own: closed there, before it ends.
            claimer.submit(_close_here, db)
    if expanded:
        attempts += _expand(expanded, db)
    return attempts


def _halves(attempts: list[PurgeAttempt]) -> list[list[PurgeAttempt]]:
    """``attempts`` in two parts of about half each, twins (the same purge) in the same
    part, so that each purge is sent once."""
    same: dict[tuple[str, ...], list[PurgeAttempt]] = defaultdict(list)
    for attempt in attempts:
        same[purge_of(attempt)].append(attempt)
    parts: list[list[PurgeAttempt]] = [[]]
    half = (len(attempts) + 1) // 2
    for group in same.values():
        if len(parts) == 1 and parts[0] and len(parts[0]) + len(group) > half:
            parts.append([])
        parts[-1] += group
    return [part for part in parts if part]


class _Recorder:
    """Records the outcomes of one part of a batch while the next part is sent.

    At most one part is being recorded while another is sent, and each part is half a
    batch: a process that dies has sent at most one batch that no row says was sent,
    the bound a sender that records before it sends again has. SQLite has one writer at
    a time: its outcomes are recorded on the claimer's thread, between its claims, not
    on a third connection that would wait for the claimer's lock. Other databases get a
    thread and a connection of their own.
    """

    def __init__(self, db: str, claimer: ThreadPoolExecutor) -> None:
        self.db = db
        own = not dialect(connections[db]).one_writer
        self.pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="roan-record") if own else None
        )
        self.executor = self.pool or claimer
        self.context = contextvars.copy_context()  # collect_written() sees the outcomes
        self.pending: collections.deque[Future[None]] = collections.deque()

    def before_send(self) -> None:
        """Wait until at most one part is still being recorded."""
        while len(self.pending) > 1:
            self.pending.popleft().result()

    def record(self, part: list[PurgeAttempt], results: dict[int, PurgeResult]) -> None:
        self.pending.append(
            self.executor.submit(self.context.run, _finish_layer, part, results, self.db)
        )

    def finish(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def close(self) -> None:
        if self.pool is not None:
            try:
                self.finish()
            finally:
                self.pool.submit(_close_here, self.db)
                self.pool.shutdown(wait=True)


def send(
    ids: Sequence[int] | None = None, *, using: str | None = None, limit: int = SEND_BATCH
) -> list[PurgeAttempt]:
    """Claim due attempts (these ``ids``, or any due ones), send them, record outcomes.

    Attempts of a paused backend are not claimed; attempts over a backend's rate limit
    are released with a later ``next_attempt_at`` (see :mod:`roan.outbox.limits`). A backend with
    ``AFTER`` is sent only once its inner caches have purged the same target (see
    :mod:`roan.outbox.layers`). Returns the attempts it handled, with their new status (still
    ``pending`` or ``failed`` for those held back).
    """
    from roan.models import PurgeAttempt

    attempts, paused = _claim(ids, limit, using)
    if not attempts:
        return []
    db = using or router.db_for_write(PurgeAttempt)
    return send_claimed(attempts, using=db, paused=paused)


def send_claimed(
    attempts: list[PurgeAttempt], *, using: str, paused: frozenset[str]
) -> list[PurgeAttempt]:
    """Send ``attempts`` that this process has claimed (by :func:`send`, or in the same
    transaction that wrote them, see ``roan.outbox.pipeline.submit``), and record the outcomes;
    ``paused``: the paused backends the claim left out. Rows that stand for a tag's pages
    are expanded, and their pages sent, after the others (:mod:`roan.outbox.expansion`)."""
    attempts, expanded = expansion.split(attempts)
    handled = _send_claimed(attempts, using=using, paused=paused) if attempts else []
    if expanded:
        handled += _expand(expanded, using)
    return handled


def _expand(tags: list[PurgeAttempt], db: str) -> list[PurgeAttempt]:
    """Write a URL attempt for each page of each of these claimed tag rows, record the
    tag rows, then send the pages; return all of them."""
    ids, results = expansion.page_rows(tags, using=db)
    _record(tags, results, using=db)
    return tags + send_ids(ids, using=db)


def _send_claimed(
    attempts: list[PurgeAttempt], *, using: str, paused: frozenset[str]
) -> list[PurgeAttempt]:
    db = using
    order = layers.layers()
    if not any(order.values()):
        # No AFTER anywhere: one layer, sent at once.
        _send_layer(limits.hold_back(attempts, using=db), db)
        return attempts
    # Inner caches first (roan.outbox.layers): the inner attempts for these targets join the
    # batch, and each layer goes once the one inside it has been sent and recorded.
    attempts += layers.pull_inner(attempts, using=db, exclude_backends=paused)
    by_layer: dict[int, list[PurgeAttempt]] = defaultdict(list)
    for attempt in limits.hold_back(attempts, using=db):
        by_layer[order.get(attempt.backend, 0)].append(attempt)
    for level in range(max(order.values()) + 1):
        layer = by_layer.pop(level, [])
        if level and layer:
            layer = layers.hold_outer(layer, using=db, paused=paused)
        if not layer:
            continue
        _send_layer(layer, db)
        released = layers.release_waiting(layer, using=db, exclude_backends=paused)
        attempts += released
        for attempt in limits.hold_back(released, using=db):
            by_layer[order.get(attempt.backend, 0)].append(attempt)
    return attempts


def _send_layer(sendable: list[PurgeAttempt], db: str) -> None:
    """Send ``sendable`` (claimed attempts), one job per backend node in parallel, and
    record the outcomes."""
    if not sendable:
        return
    _finish_layer(sendable, _send_only(sendable), db)


#: Set by :func:`outcomes_after_response` around the sends of an editor's request.
_outcomes_later: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "roan_outcomes_later", default=False
)


@contextlib.contextmanager
def outcomes_after_response() -> Iterator[None]:
    """Inside an editor's request, write the outcomes of a change's purges sent in this
    block once the response is out (``roan.outbox.after_response``): the purges go
    before the response, their outcomes are kept in memory for the admin's message, and
    the log row is written a moment later. Elsewhere nothing changes, nor for a purge
    someone asked for (not one of ``CHANGE_TRIGGERS``), a batch with a failure, or
    ``AFTER`` layers (an outer cache waits for the inner one's recorded outcomes)."""
    token = _outcomes_later.set(True)
    try:
        yield
    finally:
        _outcomes_later.reset(token)


def _finish_layer(sendable: list[PurgeAttempt], results: dict[int, PurgeResult], db: str) -> None:
    """Record the outcomes of ``sendable``, just sent, and queue their probes."""
    if (
        _outcomes_later.get()
        and after_response.in_request()
        and not connections[db].in_atomic_block
        # A purge someone asked for is written first: its page shows the row.
        and all(attempt.trigger in CHANGE_TRIGGERS for attempt in sendable)
        # A failure is written at once: it is rare, it waited for a cache anyway, and
        # the log should say it as soon as the editor can look.
        and all(r.status in (OK, NOT_CACHED) for r in results.values())
        and not any(layers.layers().values())
    ):
        now = timezone.now()
        _apply_all(sendable, results, now)
        # What the editor is told about this request's purges needs no query.
        note_recorded(sendable)
        after_response.later(lambda: _finished(sendable, results, now, db))
        return
    _record(sendable, results, using=db)
    _after_record(sendable, results, db)


def _after_record(sendable: list[PurgeAttempt], results: dict[int, PurgeResult], db: str) -> None:
    # Probes and warming fetches run on threads of their own: this one may be the
    # editor's request.
    verify.after_send(sendable, using=db)
    warming.after_send(sendable, results, using=db)


def _finished(
    sendable: list[PurgeAttempt], results: dict[int, PurgeResult], now: datetime.datetime, db: str
) -> None:
    _write(sendable, results, now, using=db)
    _after_record(sendable, results, db)


def _send_only(sendable: list[PurgeAttempt]) -> dict[int, PurgeResult]:
    """Send ``sendable``, one job per backend node in parallel; their results by id."""
    groups: dict[tuple[str, str], list[PurgeAttempt]] = defaultdict(list)
    for attempt in sendable:
        groups[(attempt.backend, attempt.node)].append(attempt)
    results: dict[int, PurgeResult] = {}
    jobs = list(groups.items())
    if len(jobs) == 1:
        results.update(_send_group(*jobs[0]))
    else:
        with ThreadPoolExecutor(max_workers=min(8, len(jobs)), thread_name_prefix="roan") as pool:
            for group_results in pool.map(lambda job: _send_group(*job), jobs):
                results.update(group_results)
    return results


def _send_group(key: tuple[str, str], attempts: list[PurgeAttempt]) -> dict[int, PurgeResult]:
    alias, node = key
    results: dict[int, PurgeResult] = {}
    try:
        backend = backend_registry.get_backend(alias)
    except ImproperlyConfigured as exc:
        for attempt in attempts:
            results[attempt.pk] = PurgeResult(status=FAILED, error=str(exc)[:500], retryable=False)
        return results
    # Twins (the same purge, asked for by several transactions) go once; each row records
    # the one outcome, and the one sent counts the others in ``coalesced``.
    firsts: dict[tuple[str, ...], PurgeAttempt] = {}
    twins: dict[int, list[PurgeAttempt]] = defaultdict(list)
    for attempt in attempts:
        first = firsts.setdefault(purge_of(attempt), attempt)
        if first is not attempt:
            twins[first.pk].append(attempt)
    unique = list(firsts.values())
    size = max(1, backend.batch_size)
    down: PurgeResult | None = None
    for start in range(0, len(unique), size):
        chunk = unique[start : start + size]
        if down is not None:
            # The node did not answer, or throttled us: don't make the caller wait a
            # timeout per batch, nor send what it would refuse (it waits as long).
            for attempt in chunk:
                results[attempt.pk] = dataclasses.replace(
                    down, http_status=None, latency_ms=None, error=not_sent(down)
                )
            continue
        requests = [PurgeRequest(a.kind, a.target, a.host, attempt=a.pk) for a in chunk]
        try:
            chunk_results = backend.purge(node, requests)
        except Exception as exc:  # a backend bug must not lose the rows
            logger.exception("roan: backend %r raised while purging", alias)
            chunk_results = [
                PurgeResult(status=FAILED, error=f"backend error: {type(exc).__name__}")
            ] * len(chunk)
        if len(chunk_results) != len(chunk):
            chunk_results = [
                PurgeResult(status=FAILED, error="backend returned the wrong number of results")
            ] * len(chunk)
        for attempt, result in zip(chunk, chunk_results, strict=True):
            results[attempt.pk] = result
            if is_unreachable(result) or is_throttled(result):
                down = result
    for attempt in unique:
        if same := twins.get(attempt.pk):
            attempt.coalesced += len(same)
            for twin in same:
                results[twin.pk] = results[attempt.pk]
    return results


def backoff_seconds(tries: int, retry_after: float | None = None) -> float:
    """Seconds to wait before try number ``tries + 1``: exponential, jittered, capped.

    A cache's ``Retry-After`` lengthens the wait up to ``ROAN_RETRY["MAX"]``, never
    beyond: a cache cannot park a purge for years. A value that is not a finite number
    of seconds is ignored.
    """
    retry = roan_settings.RETRY
    cap = float(retry["MAX"])
    delay = min(cap, float(retry["BASE"]) * float(retry["FACTOR"]) ** min(max(0, tries - 1), 64))
    delay *= random.uniform(0.75, 1.25)
    if isinstance(retry_after, int | float) and math.isfinite(retry_after) and retry_after > 0:
        delay = max(delay, min(float(retry_after), cap))
    return delay


def _apply(
    attempt: PurgeAttempt, result: PurgeResult, now: datetime.datetime, max_tries: int
) -> None:
    """Set ``attempt``'s outcome columns from ``result`` (after one more try)."""
    attempt.tries += 1
    attempt.status = result.status
    attempt.http_status = result.http_status
    attempt.latency_ms = result.latency_ms
    attempt.error = result.error[:500]
    attempt.purge_id = result.purge_id[:200]
    attempt.soft = bool(result.soft)
    attempt.claimed_until = None
    attempt.updated_at = now
    attempt.next_attempt_at = None
    attempt.finished_at = now
    if result.status == FAILED:
        if not result.retryable:
            attempt.status = GAVE_UP
        elif attempt.tries >= max_tries:
            attempt.status = GAVE_UP
            attempt.error = f"{attempt.error} (gave up after {attempt.tries} tries)"[:500]
        else:
            delay = backoff_seconds(attempt.tries, result.retry_after)
            attempt.next_attempt_at = now + datetime.timedelta(seconds=delay)
            attempt.finished_at = None


def _unrecordable(attempt: PurgeAttempt, tries: int, now: datetime.datetime, what: str) -> None:
    """Mark ``attempt`` failed (retried later) when its outcome could not be recorded."""
    attempt.tries = tries + 1
    attempt.status = FAILED
    attempt.http_status = None
    attempt.latency_ms = None
    attempt.error = f"roan could not record the outcome ({what})"[:500]
    attempt.purge_id = ""
    attempt.soft = False
    attempt.claimed_until = None
    attempt.updated_at = now
    attempt.finished_at = None
    try:
        delay = backoff_seconds(attempt.tries)
    except Exception:  # a broken ROAN_RETRY: still keep the row, an hour on
        delay = 3600.0
    attempt.next_attempt_at = now + datetime.timedelta(seconds=delay)


def _record(attempts: list[PurgeAttempt], results: dict[int, PurgeResult], *, using: str) -> None:
    now = timezone.now()
    _apply_all(attempts, results, now)
    _write(attempts, results, now, using=using)


def _apply_all(
    attempts: list[PurgeAttempt], results: dict[int, PurgeResult], now: datetime.datetime
) -> None:
    """Set each attempt's outcome columns (in memory) from its result."""
    max_tries = int(roan_settings.RETRY["MAX_ATTEMPTS"])
    for attempt in attempts:
        result = results.get(attempt.pk) or PurgeResult(status=FAILED, error="no result")
        tries = attempt.tries
        # One strange result (a custom backend's, a cache's absurd header) must not cost
        # the outcomes of the whole batch: it alone is recorded as failed, with why.
        try:
            _apply(attempt, result, now, max_tries)
        except Exception as exc:
            logger.exception("roan: cannot record the outcome of attempt %s", attempt.pk)
            _unrecordable(attempt, tries, now, type(exc).__name__)


def _write(
    attempts: list[PurgeAttempt],
    results: dict[int, PurgeResult],
    now: datetime.datetime,
    *,
    using: str,
) -> None:
    """Write the outcomes :func:`_apply_all` set, and what follows from them."""
    from roan.models import PurgeAttempt, PurgeTry

    try:
        with PurgeTry.objects.keeping(attempts, using=using):
            PurgeAttempt.objects.record(attempts, using=using)
    except Exception:
        # A value the database refuses (an out-of-range number from a custom backend):
        # write the rows one by one, so that only the bad one is marked instead.
        logger.exception("roan: recording %d outcome(s) failed; retrying row by row", len(attempts))
        _record_each(attempts, now, using=using)
    else:
        if not connections[using].in_atomic_block:
            # Committed (not in a caller's transaction that may still roll back): what
            # the editor is told about this request's purges needs no query.
            note_recorded(attempts)
    try:
        # Invalidations the provider finishes later: checked by roan_dispatch and tasks.
        completion.accepted(attempts, results, using=using)
    except Exception:
        logger.exception("roan: cannot mark invalidations in progress")
    key_misses.after_record(attempts, using=using)
    for attempt in attempts:
        log = logger.warning if attempt.status in {FAILED, GAVE_UP} else logger.debug
        log(
            "roan: %s %s on %s/%s: %s %s",
            attempt.kind,
            attempt.target,
            attempt.backend,
            attempt.node,
            attempt.status,
            attempt.error,
        )


def _record_each(attempts: list[PurgeAttempt], now: datetime.datetime, *, using: str) -> None:
    from roan.models import PurgeAttempt, PurgeTry

    for attempt in attempts:
        try:
            with PurgeTry.objects.keeping([attempt], using=using):
                PurgeAttempt.objects.record([attempt], using=using)
            continue
        except Exception as exc:
            what = type(exc).__name__
        _unrecordable(attempt, attempt.tries - 1, now, what)
        try:
            with PurgeTry.objects.keeping([attempt], using=using):
                PurgeAttempt.objects.record([attempt], using=using)
        except Exception:  # the lease runs out and the attempt is sent again
            logger.exception("roan: cannot record attempt %s", attempt.pk)
