"""Real task workers (django-tasks-db's ``db_worker``, django-rq's ``rqworker``), or other
commands, on the test database.

``workers`` is a fixture that starts them: each is a separate Django process reaching the
test database by name (so the test needs ``transactional_db``) with the ROAN_* settings
the test has switched, passed as JSON (see tests/settings.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from tests.support.caches import stop_process

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, worker_id: str) -> None:
        self.proc = proc
        self.log = log
        self.worker_id = worker_id

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait(self, seconds: float) -> int:
        """Wait for a ``--batch`` worker to run out of work and exit."""
        try:
            return self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker still running after {seconds}s:\n{self.output()}"
            ) from None

    def stop(self) -> None:
        stop_process(self.proc)


def roan_settings_json() -> str:
    """The ROAN_* settings (and TASKS, RQ_QUEUES) as this test process sees them now."""
    names = [n for n in dir(settings) if n.startswith("ROAN_")] + ["TASKS", "RQ_QUEUES"]
    return json.dumps({n: getattr(settings, n) for n in names if hasattr(settings, n)})


@pytest.fixture
def workers(transactional_db: None) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []
    logs = Path(tempfile.mkdtemp(prefix="roan-workers-"))

    def start(*args: str, worker_id: str = "", command: str = "db_worker", **env: Any) -> Worker:
        """A ``db_worker`` (long-running unless ``--batch``), or another ``command``."""
        worker_id = worker_id or f"w{len(started)}"
        log = logs / f"{worker_id}.log"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "ROAN_DB_NAME": str(connection.settings_dict["NAME"]),
            "ROAN_TEST_SETTINGS": roan_settings_json(),
            "PYTHONPATH": str(ROOT),
            **env,
        }
        argv = [sys.executable, "-m", "django", command, *args]
        if command == "db_worker":
            argv += [
                "--no-startup-delay", "--no-reload", "--worker-id", worker_id,
                "--interval", "0.1", "-v", "2",
            ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=ROOT
            )
        worker = Worker(proc, log, worker_id)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    for path in logs.iterdir():
        path.unlink()
    logs.rmdir()


@pytest.fixture
def shared_sqlite(monkeypatch) -> Iterator[None]:
    """On SQLite, this process and the worker open their connections as a site with
    several processes should (tests/settings.py: SQLITE_SHARED_OPTIONS)."""
    from django.conf import settings as django_settings
    from django.db import connection

    if connection.vendor != "sqlite":
        yield
        return
    monkeypatch.setenv("ROAN_SQLITE_SHARED", "1")  # for the worker's settings
    options = connection.settings_dict.setdefault("OPTIONS", {})
    saved = dict(options)
    options.update(django_settings.SQLITE_SHARED_OPTIONS)
    connection.close()  # reopened with the options at the next query
    yield
    options.clear()
    options.update(saved)
    connection.close()


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll ``condition`` until it holds; return how long that took."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds}s: {what}")
