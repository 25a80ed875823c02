"""How long the dashboard and the purge log list take to render with 1,000,000 attempts.

    .venv/bin/python bench/dashboard.py [--rows 1000000] [--requests 7] [--database-url URL]

Fills a fresh database with ``--rows`` attempts spread over the last 30 days (a site
purging about 1,400 URLs an hour and keeping a month of history): three nodes on two
backends, mostly ok, some not cached, skipped and gave up, a few hundred pending and
failing now, and one node failing for the last 20 minutes; each failed try that was
retried is kept as a try row, as the sender does (4 per attempt that gave up). Then it
renders, as a signed-in superuser through Django's test client (full middleware,
templates and queries; no network), each of:

    dashboard   /admin/roan/dashboard/
    log         /admin/roan/purgeattempt/
    log-failed  /admin/roan/purgeattempt/?status__exact=failed
    attempt     the page of an attempt that gave up after 5 tries (its Tries table)

``--requests`` times after one warm-up request, and prints the median and the slowest
time, the number of SQL statements and the three slowest statements of one request.
SQLite always; PostgreSQL too with --database-url or DATABASE_URL (in a database of its
own, created and dropped here). The goal is at most 150 ms per page (issue 31).

``--keep NAME`` keeps the filled databases for the next run (PostgreSQL database NAME,
SQLite file ``$TMPDIR/NAME.sqlite3``): a run that finds them filled skips the fill, so
10,000,000 rows are loaded once and measured before and after a change. The rows'
times are relative to the fill, so a kept database ages (its last hour empties); drop
it with ``--drop``. ``--engines`` picks the engines (default: sqlite, and postgresql
when a URL is given).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import admin_sql, postgres_database, run_worker

PAGES = {
    "dashboard": "/admin/roan/dashboard/",
    "log": "/admin/roan/purgeattempt/",
    "log-failed": "/admin/roan/purgeattempt/?status__exact=failed",
}
NODES = [("nginx", "nginx-a"), ("nginx", "nginx-b"), ("varnish", "varnish-1")]
COLUMNS = (
    "created_at", "updated_at", "status", "backend", "node", "host", "kind", "target",
    "http_status", "latency_ms", "error", "purge_id", "tries", "coalesced", "next_attempt_at",
    "claimed_until", "finished_at", "trigger", "rule_id", "rule_name", "content_type_id",
    "object_pk", "object_repr", "user_id",
)  # fmt: skip


def configure(database: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    from tests import settings as test_settings

    values = {k: getattr(test_settings, k) for k in dir(test_settings) if k.isupper()}
    values["DATABASES"] = {"default": database}
    values["ROAN_BACKENDS"] = {
        "nginx": {"BACKEND": "roan.backends.locmem.LocMemBackend", "NODES": ["nginx-a", "nginx-b"]},
        "varnish": {"BACKEND": "roan.backends.locmem.LocMemBackend", "NODES": ["varnish-1"]},
    }
    settings.configure(**values)
    django.setup()


TRY_COLUMNS = (
    "attempt_id",
    "number",
    "finished_at",
    "status",
    "http_status",
    "latency_ms",
    "error",
)


def attempts(
    n: int, now: datetime.datetime, rule_id: int, ct_id: int, user_id: int, tries: list[Any]
) -> Any:
    """Yield ``n`` attempt rows (tuples in COLUMNS order), oldest first; append their
    kept tries to ``tries`` (tuples in TRY_COLUMNS order; attempt ids count from 1)."""
    rng = random.Random(42)
    span = datetime.timedelta(days=30).total_seconds()
    for i in range(n):
        created = now - datetime.timedelta(seconds=span * (1 - i / n))
        age = (now - created).total_seconds()
        backend, node = NODES[i % 3]
        latency: float | None = round(rng.lognormvariate(math.log(6), 0.6), 2)
        http: int | None = 200
        error = ""
        next_at = None
        finished: datetime.datetime | None = created
        roll = rng.random()
        if node == "varnish-1" and age < 20 * 60:
            status, http, error = "failed", 503, "HTTP 503 from varnish-1"
            next_at = now + datetime.timedelta(seconds=30)
        elif age < 5 * 60 and roll < 0.3:
            status, latency, http, finished = "pending", None, None, None
        elif roll < 0.93:
            status = "ok"
        elif roll < 0.97:
            status, http = "not_cached", 404
        elif roll < 0.995:
            status, latency, http, error = "skipped", None, None, "backend cannot purge a prefix"
        else:
            status, http, error = "gave_up", 502, "HTTP 502 after 5 tries"
        count = 5 if status == "gave_up" else (0 if status == "pending" else 1)
        kept = count - 1 if status == "gave_up" else (1 if status == "failed" else 0)
        for number in range(1, kept + 1):
            at = created + datetime.timedelta(seconds=5 * 2**number)
            tries.append((i + 1, number, at, "failed", http, latency, f"HTTP {http}"))
        trigger = "save" if roll < 0.85 else ("delete" if roll < 0.9 else "admin")
        slug = f"post-{rng.randrange(20_000)}"
        # Pending rows are unique per target (the partial unique constraint).
        target = f"/pending/{i}/" if status == "pending" else f"/posts/{slug}/"
        yield (
            created, created, status, backend, node, "", "url", target, http, latency, error, "",
            count, 0, next_at, None, finished, trigger,
            rule_id if trigger != "admin" else None, "post pages", ct_id, slug, slug,
            user_id if trigger == "admin" else None,
        )  # fmt: skip


def fill(n: int) -> float:
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType

    from roan.models import PurgeAttempt, PurgeRule, PurgeTry
    from tests.testapp.models import Post

    start = time.perf_counter()
    ct = ContentType.objects.get_for_model(Post)
    rule = PurgeRule.objects.create(name="post pages", content_type=ct, templates="/posts/{slug}/")
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    now = datetime.datetime.now(datetime.UTC)
    tries: list[Any] = []
    rows = attempts(n, now, rule.pk, ct.pk, user.pk, tries)
    load(PurgeAttempt._meta.db_table, COLUMNS, rows)
    load(PurgeTry._meta.db_table, TRY_COLUMNS, tries)
    return time.perf_counter() - start


def load(table: str, columns: tuple[str, ...], rows: Any) -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            copy = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
            with cursor.cursor.copy(copy) as out:
                for row in rows:
                    out.write_row(row)
        else:
            adapt = connection.ops.adapt_datetimefield_value
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: E501
            batch: list[tuple[Any, ...]] = []
            for row in rows:
                batch.append(
                    tuple(adapt(v) if isinstance(v, datetime.datetime) else v for v in row)
                )
                if len(batch) == 10_000:
                    cursor.executemany(sql, batch)
                    batch.clear()
            cursor.executemany(sql, batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")  # what autovacuum does after a bulk load


def worker(database: dict[str, Any], n: int, requests: int) -> dict[str, Any]:
    """Runs in a child process: migrate, fill, render each page, return the figures."""
    configure(database)
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from roan.models import PurgeAttempt

    setup_test_environment()
    call_command("migrate", verbosity=0)
    kept = PurgeAttempt.objects.exists()  # the rows are loaded in one transaction
    filled = 0.0 if kept else fill(n)
    client = Client()
    client.login(username="bench", password="bench")
    result: dict[str, Any] = {"fill_s": filled, "kept": kept, "pages": {}}
    gave_up = PurgeAttempt.objects.filter(status="gave_up").order_by("-id").values("id")[0]
    pages = {**PAGES, "attempt": f"/admin/roan/purgeattempt/{gave_up['id']}/change/"}
    for name, url in pages.items():
        response = client.get(url)  # warm-up: templates, statement caches
        assert response.status_code == 200, (url, response.status_code)
        # Django clears connection.queries when a request starts, so time statements here.
        queries: list[tuple[float, str]] = []

        def timed(execute: Any, sql: str, *args: Any, queries: list[Any] = queries) -> Any:
            start = time.perf_counter()
            try:
                return execute(sql, *args)
            finally:
                queries.append(((time.perf_counter() - start) * 1000, sql))

        with connection.execute_wrapper(timed):
            client.get(url)
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
        slowest = sorted(queries, reverse=True)[:3]
        result["pages"][name] = {
            "median_ms": statistics.median(times),
            "max_ms": max(times),
            "statements": len(queries),
            "slowest": [(ms, " ".join(sql.split())[:150]) for ms, sql in slowest],
        }
    return result


def sqlite_database(tmp: Path) -> dict[str, Any]:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp / "bench.sqlite3")}


def run(engine: str, url: str, n: int, requests: int, keep: str = "") -> None:
    name = keep or f"roan_dash_bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="roan-bench-") as tmp:
        if engine == "postgresql":
            if not keep or not _pg_exists(url, name):
                admin_sql(url, f'CREATE DATABASE "{name}"')
            database = postgres_database(url, name)
        elif keep:
            database = {**sqlite_database(Path(tmp)), "NAME": str(_kept_sqlite(keep))}
        else:
            database = sqlite_database(Path(tmp))
        try:
            worker_args = ["--worker", "--rows", str(n), "--requests", str(requests)]
            result = run_worker(__file__, worker_args, database, timeout=7200)
        finally:
            if engine == "postgresql" and not keep:
                admin_sql(url, f'DROP DATABASE IF EXISTS "{name}"')
    filled = "kept" if result["kept"] else f"filled in {result['fill_s']:.0f} s"
    print(f"\n{engine}: {n:,} attempts ({filled}), {requests} requests")
    print(f"{'page':<11} {'median ms':>10} {'max ms':>8} {'stmts':>6}  slowest statements (ms)")
    for page, figures in result["pages"].items():
        print(
            f"{page:<11} {figures['median_ms']:10.1f} {figures['max_ms']:8.1f}"
            f" {figures['statements']:6d}"
        )
        for ms, sql in figures["slowest"]:
            print(f"{'':<39}{ms:7.1f}  {sql}")


def _kept_sqlite(name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{name}.sqlite3"


def _pg_exists(url: str, name: str) -> bool:
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, password=parts.password,
        dbname="postgres", autocommit=True,
    ) as conn:  # fmt: skip
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        return found is not None


def drop(name: str, url: str) -> None:
    """Drop the databases ``--keep NAME`` kept."""
    _kept_sqlite(name).unlink(missing_ok=True)
    if url:
        admin_sql(url, f'DROP DATABASE IF EXISTS "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=7, help="timed requests per page")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--keep", default="", help="keep the filled databases under this name")
    parser.add_argument("--drop", action="store_true", help="drop the databases --keep kept")
    parser.add_argument("--engines", default="", help="sqlite,postgresql (default: both)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.db), args.rows, args.requests)))
        return
    if args.drop:
        drop(args.keep, args.database_url)
        return
    import django

    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, {os.cpu_count()} CPUs"
    )
    engines = args.engines.split(",") if args.engines else ["sqlite", "postgresql"]
    if "sqlite" in engines:
        run("sqlite", "", args.rows, args.requests, args.keep)
    if args.database_url and "postgresql" in engines:
        run("postgresql", args.database_url, args.rows, args.requests, args.keep)


if __name__ == "__main__":
    main()
