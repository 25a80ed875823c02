"""Work an editor's request leaves for after its response.

Django sends ``request_finished`` when the WSGI server closes the response, once its
bytes are out: the editor has the answer, and what runs then costs them nothing. roan
keeps there what must happen soon but need not be waited for:

- the pages of a tag past ``ROAN_MAX_INLINE_TAG_URLS`` (``roan.tags.purges``);
- the second look at the tag index after a change commits (``roan.tags.purges``);
- writing the outcomes of the purges sent inside the request (``roan.outbox.sender``):
  the purges themselves go out before the response, so the page is fresh when the
  editor's browser asks for it; what each answered is kept in memory for the admin's
  message and written to the log a moment later. A process that dies in between leaves
  those rows claimed, and they are sent again when their lease ends: a purge twice,
  never none.

Outside a request (a shell, a command, a worker, a test without the request signals)
the work runs at once.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any

from django.core.signals import request_finished, request_started
from django.dispatch import receiver

logger = logging.getLogger(__name__)

#: This request's work for after its response, and whether each item sends purges.
#: A context variable, not a thread's: under ASGI one thread runs many requests' sync
#: code, and asgiref carries each request's context into it.
_after: contextvars.ContextVar[list[tuple[Callable[[], None], bool]] | None] = (
    contextvars.ContextVar("roan_after_response", default=None)
)


def in_request() -> bool:
    """Whether this thread is running a request whose response is not out yet."""
    return _after.get() is not None


def later(work: Callable[[], None], *, sends: bool = False) -> None:
    """Run ``work`` once this request's response is out, or now outside a request.

    ``sends``: it sends purges the editor is told are queued (:func:`sends_queued`)."""
    queue = _after.get()
    if queue is None:
        work()
    else:
        queue.append((work, sends))


def sends_queued() -> bool:
    """Whether this request has purges to send once its response is out."""
    return any(sends for _work, sends in _after.get() or ())


@receiver(request_started, dispatch_uid="roan.outbox.after_response.request_started")
def _on_request_started(**kwargs: Any) -> None:
    _after.set([])


@receiver(request_finished, dispatch_uid="roan.outbox.after_response.request_finished")
def _on_request_finished(**kwargs: Any) -> None:
    queue = _after.get() or []
    _after.set(None)  # what the work below queues runs at once
    for work, _sends in queue:
        try:
            work()
        except Exception:  # one failure must not cost the others
            logger.exception("roan: work left for after the response failed")
