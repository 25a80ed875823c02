"""What the code running now has asked of roan: the context variables every route reads
(suppressed purges, held dispatch, the acting user, the ids an action wrote).

Context variables follow threads and ``asyncio`` tasks, so a block's
``suppress_purges()`` or acting user never leaks into another request.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from roan.conf import roan_settings

#: When set to False (``suppress_purges()``), nothing is collected in this context.
_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("roan_enabled", default=True)


#: When set (``roan.testing.capture_purges()``), requests are recorded here instead.
capturing: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "roan_capture", default=None
)


#: When set (``hold_dispatch()``), committed pending ids go here instead of being sent.
held_ids: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "roan_held", default=None
)


#: When set (``collect_written()``), the id of every attempt row written goes here too.
written_ids: contextvars.ContextVar[WrittenIds | None] = contextvars.ContextVar(
    "roan_written", default=None
)


class WrittenIds(list[int]):
    """The ids ``collect_written()`` collects, and what this process recorded of them.

    ``recorded`` maps an attempt id to the (status, error, backend) its send wrote and
    committed in the block: what the editor is told needs no query for the rows the
    request sent itself (:func:`roan.outbox.outcome.outcome`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.recorded: dict[int, tuple[str, str, str]] = {}


def note_recorded(attempts: Iterable[Any]) -> None:
    """Keep the outcomes of ``attempts``, just written and committed, for the block of
    ``collect_written()`` around this code, if any."""
    written = written_ids.get()
    if written is not None:
        for attempt in attempts:
            written.recorded[attempt.pk] = (attempt.status, attempt.error, attempt.backend)


#: Who to name on attempts collected in this context: a user id, or a function giving one.
_user_id: contextvars.ContextVar[int | Callable[[], int | None] | None] = contextvars.ContextVar(
    "roan_user", default=None
)


@contextlib.contextmanager
def suppress_purges() -> Iterator[None]:
    """Collect no purges inside the block (data migrations, seeding, bulk fixes)."""
    token = _enabled.set(False)
    try:
        yield
    finally:
        _enabled.reset(token)


#: When set to False (``unindexed()``), pages rendered in this context are not indexed.
_indexing: contextvars.ContextVar[bool] = contextvars.ContextVar("roan_indexing", default=True)


def indexing() -> bool:
    return _indexing.get()


@contextlib.contextmanager
def unindexed() -> Iterator[None]:
    """Render pages without writing them to the URL<->tag index: renders no cache keeps
    (``roan_audit``'s reference copy), which must not lengthen a page's rows."""
    token = _indexing.set(False)
    try:
        yield
    finally:
        _indexing.reset(token)


@contextlib.contextmanager
def hold_dispatch() -> Iterator[list[int]]:
    """Write pending attempts in the block, but do not dispatch them when it commits.

    Yields the list that collects their ids; the caller passes it to :func:`dispatch`
    itself, after the commit (the admin does so once its response has been sent). Rows
    it never dispatches stay pending for ``roan_dispatch``.
    """
    held: list[int] = []
    token = held_ids.set(held)
    try:
        yield held
    finally:
        held_ids.reset(token)


@contextlib.contextmanager
def collect_written() -> Iterator[WrittenIds]:
    """Yield a list that collects the id of every attempt row :func:`submit` writes in the
    block (pending, skipped, and older pending rows a purge was merged into), so that the
    admin can tell the editor what became of a save or a manual purge; its ``recorded``
    holds the outcomes the block's own sends committed."""
    written = WrittenIds()
    token = written_ids.set(written)
    try:
        yield written
    finally:
        written_ids.reset(token)


def is_active() -> bool:
    return roan_settings.ENABLED and _enabled.get()


def is_capturing() -> bool:
    """Whether ``roan.testing.capture_purges()`` records purges here instead of roan."""
    return capturing.get() is not None


def current_user_id() -> int | None:
    value = _user_id.get()
    return value() if callable(value) else value


@contextlib.contextmanager
def acting_user_lookup(value: int | Callable[[], int | None] | None) -> Iterator[None]:
    """Name this user id (or the one ``value()`` gives) on purges collected in the block."""
    token = _user_id.set(value)
    try:
        yield
    finally:
        _user_id.reset(token)
