"""What roan costs an editor's save, measured against the same save without roan.

    .venv/bin/python bench/save_overhead.py [--n 2000] [--rounds 5] [--database-url URL]

Four setups, each in its own process with a fresh database, run in interleaved rounds:

    none        roan not installed
    installed   roan installed, no rule for the model saved
    one-rule    one rule with three templates on the model saved
    fifty-rules fifty rules on other models, plus the one matching rule

The workload is an editor's save: load a post (with its author, as a change form does),
change the title, save it in its own transaction. roan's own work inside the transaction
is timed, the pending attempt rows included; the sending after commit is switched off
(those rows stay pending, and coalesce), because that cost belongs to the cache, not to
the save. Prints median ms per save, the ratio to "none" and statements per save.
SQLite always (with the default rollback journal, and in WAL mode as production SQLite
sites run it); PostgreSQL too with --database-url or DATABASE_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from _common import admin_sql, postgres_database, run_worker

ROOT = Path(__file__).resolve().parent.parent
SETUPS = ("none", "installed", "one-rule", "fifty-rules")


def settings_for(setup: str, database: dict[str, object]) -> dict[str, object]:
    apps = ["django.contrib.auth", "django.contrib.contenttypes", "tests.testapp"]
    if setup != "none":
        apps.insert(2, "roan")
    return {
        "INSTALLED_APPS": apps,
        "DATABASES": {"default": database},
        "USE_TZ": True,
        "SECRET_KEY": "bench",
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        "ROAN_BACKENDS": {"default": {"BACKEND": "roan.backends.locmem.LocMemBackend"}},
        "ROAN_RULES_TTL": 60,
        "ROOT_URLCONF": "tests.urls",
    }


def add_rules(setup: str) -> None:
    from django.contrib.contenttypes.models import ContentType

    from roan.models import PurgeRule
    from tests.testapp.models import Author, Comment, Post, Tag

    if setup in {"one-rule", "fifty-rules"}:
        PurgeRule.objects.create(
            name="post pages",
            content_type=ContentType.objects.get_for_model(Post),
            templates="/posts/\n/posts/{slug}/\n/authors/{author.username}/",
        )
    if setup == "fifty-rules":
        others = [(Author, "/authors/{username}/"), (Tag, "/tags/{slug}/"), (Comment, "/c/{pk}/")]
        for i in range(50):
            model, template = others[i % 3]
            PurgeRule.objects.create(
                name=f"other {i}",
                content_type=ContentType.objects.get_for_model(model),
                templates=f"/other-{i}{template}",
            )


def worker(setup: str, n: int, database: dict[str, object]) -> dict[str, float]:
    """Runs in a child process: migrate, seed, time ``n`` saves, return the figures."""
    import django
    from django.conf import settings

    settings.configure(**settings_for(setup, database))
    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    if setup != "none":
        import roan.pipeline

        roan.pipeline.dispatch = lambda ids, using=None: None  # measure the save, not the cache
    from tests.testapp.models import Author, Post

    authors = Author.objects.bulk_create(Author(username=f"a{i}") for i in range(10))
    Post.objects.bulk_create(
        Post(title=f"Post {i}", slug=f"post-{i}", author=authors[i % 10]) for i in range(100)
    )
    if setup != "none":
        add_rules(setup)
    posts = list(Post.objects.select_related("author").order_by("pk"))

    def save(i: int) -> None:
        post = posts[i % len(posts)]
        post.title = f"Title {i}"
        with transaction.atomic():
            post.save()

    for i in range(200):  # warm up: rule index, statement caches, the first pending rows
        save(i)
    # Statements are counted in a loop of their own: query logging costs time.
    with CaptureQueriesContext(connection) as queries:
        for i in range(200):
            save(i)
    start = time.perf_counter()
    for i in range(n):
        save(i)
    elapsed = time.perf_counter() - start
    return {"ms": elapsed * 1000 / n, "statements": len(queries.captured_queries) / 200}


def sqlite_database(tmp: Path, name: str, wal: bool = False) -> dict[str, object]:
    database: dict[str, object] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(tmp / f"{name}.sqlite3"),
    }
    if wal:
        database["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;"}
    return database


def run_once(setup: str, n: int, engine: str, url: str, tmp: Path) -> dict[str, float]:
    name = f"roan_bench_{setup.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    if engine == "postgresql":
        admin_sql(url, f'CREATE DATABASE "{name}"')
        database = postgres_database(url, name)
    else:
        database = sqlite_database(tmp, name, wal=engine == "sqlite-wal")
    try:
        result: dict[str, float] = run_worker(
            __file__, ["--worker", setup, "--n", str(n)], database
        )
    finally:
        if engine == "postgresql":
            admin_sql(url, f'DROP DATABASE IF EXISTS "{name}"')
    return result


def report(engine: str, url: str, n: int, rounds: int) -> None:
    results: dict[str, list[dict[str, float]]] = {s: [] for s in SETUPS}
    with tempfile.TemporaryDirectory(prefix="roan-bench-") as tmp:
        for _ in range(rounds):
            for setup in SETUPS:  # interleaved, so drift on a shared machine hits all alike
                results[setup].append(run_once(setup, n, engine, url, Path(tmp)))
    base_ms = statistics.median(r["ms"] for r in results["none"])
    base_q = statistics.median(r["statements"] for r in results["none"])
    print(f"\n{engine}: {n} saves x {rounds} rounds, each save its own transaction")
    print(f"{'setup':<12} {'ms/save':>8} {'ratio':>6} {'stmts/save':>11} {'extra':>6}")
    for setup in SETUPS:
        ms = statistics.median(r["ms"] for r in results[setup])
        q = statistics.median(r["statements"] for r in results[setup])
        print(f"{setup:<12} {ms:8.3f} {ms / base_ms:6.2f} {q:11.2f} {q - base_q:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="timed saves per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, json.loads(args.db))))
        return
    import django

    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, {os.cpu_count()} CPUs"
    )
    report("sqlite", "", args.n, args.rounds)
    report("sqlite-wal", "", args.n, args.rounds)
    if args.database_url:
        report("postgresql", args.database_url, args.n, args.rounds)


if __name__ == "__main__":
    main()
