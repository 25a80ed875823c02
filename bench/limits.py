"""What the rate limit and the pause switch cost a sender.

    .venv/bin/python bench/limits.py [--rounds 5] [--database-url URL]

Prints medians over the rounds:

    take()       microseconds per token-bucket call, in a LocMemCache and in a real Redis
                 (a redis-server started on a free loopback port, when it is installed)
    send()       one send() of 1,000 due attempts on an in-memory backend: ms and SQL
                 statements with no limit, and with a limit that lets 100 through (the
                 other 900 go back to the queue with a later next_attempt_at)
    pause read   SQL statements the sender spends on the pause switches per send() once
                 their list is cached (ROAN_CACHE), and on a cold cache

SQLite in a temporary file, or PostgreSQL with --database-url / DATABASE_URL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def database(url: str) -> dict[str, Any]:
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{tempfile.mkdtemp()}/bench.db"}
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


def start_redis() -> tuple[subprocess.Popen[bytes] | None, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        return None, ""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
        except OSError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    args = parser.parse_args()

    redis_proc, redis_url = start_redis()
    caches: dict[str, Any] = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    if redis_url:
        caches["redis"] = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
        }
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "roan"],
        DATABASES={"default": database(args.database_url)},
        USE_TZ=True,
        SECRET_KEY="bench",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        CACHES=caches,
        ROAN_BACKENDS={"mem": {"BACKEND": "roan.backends.locmem.LocMemBackend"}},
        ROAN_RULES_TTL=60,
    )
    django.setup()
    from django.core.cache import caches as cache_handler
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from roan import pauses
    from roan.backends import options
    from roan.models import PurgeAttempt
    from roan.outbox import limits
    from roan.outbox.sender import send

    call_command("migrate", verbosity=0)
    try:
        # take(): many calls on a bucket that never runs dry.
        big = options.RateLimit(rate=1e9, burst=1e9)
        for alias in ["default", *(["redis"] if redis_url else [])]:
            with override_settings(ROAN_CACHE=alias):
                samples = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    for _ in range(2000):
                        limits.take("bench", big, 1)
                    samples.append((time.perf_counter() - started) / 2000 * 1e6)
            print(f"take() in {alias:8} {statistics.median(samples):8.1f} us per call")

        def one_send(rate_limit: dict[str, float] | None) -> tuple[float, int, int]:
            PurgeAttempt.objects.all().delete()
            cache_handler["default"].clear()
            options: dict[str, Any] = {"BACKEND": "roan.backends.locmem.LocMemBackend"}
            if rate_limit:
                options["RATE_LIMIT"] = rate_limit
            rows = [
                {"backend": "mem", "node": "default", "target": f"/p/{i}/", "trigger": "api"}
                for i in range(1000)
            ]
            PurgeAttempt.objects.write(rows)
            with override_settings(ROAN_BACKENDS={"mem": options}):
                pauses.paused_backends()  # warm the paused list, as a running sender has it
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    sent = send(None, limit=1000)
                    ms = (time.perf_counter() - started) * 1000
            done = sum(1 for a in sent if a.status == "ok")
            return ms, len(queries), done

        for label, limit in [("no limit", None), ("limit 100", {"RATE": 1000, "BURST": 100})]:
            results = [one_send(limit) for _ in range(args.rounds)]
            ms = statistics.median(r[0] for r in results)
            print(
                f"send() 1000 due, {label:9}: {ms:7.1f} ms, {results[0][1]} statements, "
                f"{results[0][2]} sent"
            )

        cache_handler["default"].clear()
        with CaptureQueriesContext(connection) as cold:
            pauses.paused_backends()
        with CaptureQueriesContext(connection) as warm:
            pauses.paused_backends()
        print(f"pause read: {len(cold)} statement(s) cold, {len(warm)} once cached")
        print(f"database: {connection.vendor}")
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    main()
