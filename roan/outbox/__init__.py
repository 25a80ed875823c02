"""The outbox: purges written as attempt rows with the change, sent after commit.

- :mod:`roan.outbox.pipeline`: a transaction's purges collected, written and dispatched;
- :mod:`roan.outbox.sender`: claiming due rows and sending them to the backends;
- :mod:`roan.outbox.limits`, :mod:`roan.outbox.layers`: rate limits and inner caches
  first (``AFTER``); pauses are public in :mod:`roan.pauses`;
- :mod:`roan.outbox.verify`, :mod:`roan.outbox.completion`,
  :mod:`roan.outbox.key_misses`: what happened after a send;
- :mod:`roan.outbox.outcome`: what an action's rows became, in the editor's words;
- :mod:`roan.outbox.render_guard`: no page rendered from old data cached after a purge.

Public: :func:`submit`, :func:`dispatch`, :func:`send` (imported on first use).
"""

from __future__ import annotations

from typing import Any

__all__ = ["dispatch", "send", "submit"]


def __getattr__(name: str) -> Any:
    if name in ("dispatch", "submit"):
        from roan.outbox import pipeline

        return getattr(pipeline, name)
    if name == "send":
        from roan.outbox import sender

        return sender.send
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
