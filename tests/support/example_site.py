"""The example site as ``make demo`` runs it: migrated, seeded and served by runserver in
its own process, on a free port, with its own SQLite file and page cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.caches import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "example"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "ROAN_EXAMPLE_SQLITE": str(tmp_path / "demo.sqlite3"),
        "ROAN_EXAMPLE_CACHE_DIR": str(tmp_path / "pages"),
        "ROAN_EXAMPLE_HOSTS": f"127.0.0.1:{port}",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = [sys.executable, str(EXAMPLE / "manage.py")]
    for command in (["migrate", "--noinput", "-v0"], ["seed_demo"]):
        subprocess.run([*manage, *command], env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(base + "/", timeout=1).close()
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(10)
