"""One daemon thread per process that runs queued jobs one after the other, after the
sender is done with them: the verification probes and the warming fetches.

The thread starts with the first job, closes its database connections whenever the
queue runs dry, and ends; the next :meth:`BackgroundQueue.put` starts a new one. Jobs
wait at most ``limit`` deep: a full queue refuses the rest (the caller says what that
means for them), so a burst of purges never holds unbounded memory.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from django.db import connections

logger = logging.getLogger(__name__)

_Job = TypeVar("_Job")


class BackgroundQueue(Generic[_Job]):
    def __init__(self, name: str, run: Callable[[_Job], object], limit: int, failed: str) -> None:
        #: The thread's name; ``run(job)`` does one job; ``failed`` is the log message of
        #: a job that raised, formatted with the job.
        self.name, self.run, self.limit, self.failed = name, run, limit, failed
        self._jobs: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None

    def put(self, jobs: Sequence[_Job]) -> list[_Job]:
        """Queue ``jobs``; returns those refused because the queue is full."""
        with self._cond:
            room = max(0, self.limit - len(self._jobs) - self._busy)
            taken, refused = list(jobs[:room]), list(jobs[room:])
            self._jobs.extend(taken)
            if taken and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return refused

    def drain(self, timeout: float) -> bool:
        """Wait until every queued job has run (or ``timeout`` seconds); True if all did.

        ``roan_dispatch`` calls this before it exits, so its jobs are not lost.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._jobs:
                    # Idle: give the thread's database connections back, and end.
                    connections.close_all()
                    self._thread = None
                    self._cond.notify_all()
                    return
                job = self._jobs.popleft()
                self._busy += 1
            try:
                self.run(job)
            except Exception:
                logger.exception(self.failed, job)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()
