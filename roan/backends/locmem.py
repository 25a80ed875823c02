"""An in-process backend for tests and development: it records instead of purging.

Like Django's locmem e-mail backend, every request "sent" is appended to
:data:`outbox` as ``(node, PurgeRequest)``. ``FAIL`` makes it answer like a failing
cache (``True`` for a connection failure, or an HTTP status such as ``503``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

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

#: Every request this backend was asked to send, in order, as ``(node, request)``.
outbox: list[tuple[str, PurgeRequest]] = []


class LocMemBackend(BaseBackend):
    capabilities = frozenset({URL, PREFIX, TAG, ALL})
    batch_size = 100
    options_accepted: ClassVar[frozenset[str]] = frozenset({"NODES", "FAIL"})

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self._nodes = self._list_option(options, "NODES", default=("default",))
        if not self._nodes:
            raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}]['NODES'] is empty.")
        fail = options.get("FAIL", False)
        if not isinstance(fail, bool | int):
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['FAIL'] must be True/False or an HTTP status."
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
                results.append(PurgeResult(FAILED, latency_ms=timer.ms, error="connection refused"))
            elif self.fail:
                status = int(self.fail)
                results.append(
                    PurgeResult(
                        FAILED,
                        http_status=status,
                        latency_ms=timer.ms,
                        error=f"HTTP {status}",
                        retryable=status >= 500 or status in (408, 429),
                    )
                )
            else:
                results.append(PurgeResult(OK, http_status=200, latency_ms=timer.ms))
        return results
