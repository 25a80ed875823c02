"""An in-process backend for tests and development: it records instead of purging.

Like Django's locmem e-mail backend, every request "sent" is appended to
:data:`outbox` as ``(node, PurgeRequest)``. ``FAIL`` makes it answer like a failing
cache: ``True`` for a node that is down ("connection refused"), or an HTTP status such
as ``503``, ``429`` or ``403``, mapped exactly as the HTTP backends map a real answer
(so ``404`` answers ``not_cached``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import result_for_status
from roan.backends.base import (
    ALL,
    FAILED,
    OK,
    PREFIX,
    TAG,
    URL,
    BaseBackend,
    PurgeRequest,
    PurgeResult,
    Timer,
)

logger = logging.getLogger(__name__)

#: Every request this backend was asked to send, in order, as ``(node, request)``.
outbox: list[tuple[str, PurgeRequest]] = []


class LocMemBackend(BaseBackend):
    """Records every request in :data:`outbox`; answers ``ok`` unless told to ``FAIL``."""

    capabilities = frozenset({URL, PREFIX, TAG, ALL})
    batch_size = 100
    options_accepted: ClassVar[frozenset[str]] = frozenset({"NODES", "FAIL"})

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        where = f"ROAN_BACKENDS[{alias!r}]"
        self._nodes = self._list_option(options, "NODES", default=("default",))
        if not self._nodes or len(set(self._nodes)) != len(self._nodes):
            raise ImproperlyConfigured(f"{where}['NODES'] must be distinct names, and some.")
        fail = options.get("FAIL", False)
        if not (isinstance(fail, bool) or (isinstance(fail, int) and 400 <= fail <= 599)):
            raise ImproperlyConfigured(
                f"{where}['FAIL'] must be True/False or an HTTP error status (400-599), "
                f"not {fail!r}."
            )
        self.fail: bool | int = fail

    @property
    def nodes(self) -> tuple[str, ...]:
        return self._nodes

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        results = []
        for request in requests:
            with Timer() as timer:
                outbox.append((node, request))
            if self.fail is True:
                result = PurgeResult(FAILED, latency_ms=timer.ms, error="connection refused")
            elif self.fail:
                result = result_for_status(int(self.fail), timer.ms, {})
            else:
                result = PurgeResult(OK, http_status=200, latency_ms=timer.ms)
            logger.debug(
                "%s: %s %s on %s -> %s", self.alias, request.kind, request.target, node, result
            )
            results.append(result)
        return results
