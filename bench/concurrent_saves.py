"""Concurrent editors: saves per second, save latency and failed saves, roan on and off.

    .venv/bin/python bench/concurrent_saves.py [--seconds 4] [--rounds 2]
        [--editors 1,4,16] [--engines sqlite,postgresql,mariadb]
        [--pg-url URL] [--mysql-url URL] [--tracebacks]

Issue 24: editors saving at the same time deadlock inside roan's write of attempt rows
(an upsert on the unique pending key, in the editor's transaction) on PostgreSQL and
MariaDB. This measures what concurrent editors see, with roan and without it, in the same
run and on the same database.

The site is the example blog in small: 3 authors, 5 tags, 10 posts per editor (each
editor saves only its own posts; every post has one of the 3 authors). An editor is a
thread with its own database connection; a save is

    with transaction.atomic():
        post.title = ...; post.save()
        post.tags.set(2 or 3 of the 5 tags, at random)

Rules purge shared targets: on Post (save and m2m) ``/``, ``/posts/``,
``/authors/{author.username}/`` and ``/posts/{slug}/``; on Tag (m2m) ``/tags/{slug}/``.
So every save purges ``/`` and ``/posts/``, one of 3 author pages and 2-5 tag pages, the
same targets as the other editors. Dispatch is inline (the default): after the commit,
the editor's thread sends its purges to a real nginx with the cache purge module on
loopback (tests/support/caches.py), inside the timed save.

"roan off" is ``ROAN_ENABLED = False`` (roan installed, its receivers return at once),
switched in the same process between cells. Each database gets a fresh database and one
worker process; in every round each number of editors runs roan off and roan on one after
the other, the order alternating, each for ``--seconds``. The table pools the rounds: saves
per second, p50 and p95 of the successful saves' latency, the worker process's CPU per
successful save (all threads; the rest of a save is waiting for locks, the database or
nginx), failed saves (any exception out of the save; an editor's warm-up save, which
runs while the others warm up, is tried again and its failures counted too) and errors
roan logged without raising (a send that failed). Editors are threads of one process, so
their Python runs one at a time (the GIL), as in a threaded WSGI server. Below it, at
each number of editors, roan on against roan off, with the goals of issue 24 at 16
editors: no failed save, throughput >= 0.7x, p95 <= 2x.

Databases: SQLite on a file in WAL mode (``timeout`` 20, ``transaction_mode``
IMMEDIATE); PostgreSQL at ``--pg-url`` (or PG_URL, DATABASE_URL; default
postgres://postgres@127.0.0.1:5432/postgres); MariaDB/MySQL at ``--mysql-url`` (or
MYSQL_URL; default mysql://root@127.0.0.1:3306/). A server that does not answer is
skipped with a line that says so. The databases are named roan_bench_concurrent_* and
dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import admin_sql, mysql_admin_sql, mysql_database, postgres_database, run_worker

ROOT = Path(__file__).resolve().parent.parent

AUTHORS = 3
TAGS = 5
POSTS_PER_EDITOR = 10
POST_TEMPLATES = "/\n/posts/\n/authors/{author.username}/\n/posts/{slug}/"
TAG_TEMPLATES = "/tags/{slug}/"
#: Issue 24's goals at the largest number of editors.
GOAL_THROUGHPUT = 0.7
GOAL_P95 = 2.0


# -- the worker: one process per database ----------------------------------------------------


class _ErrorCount(logging.Handler):
    """Counts the errors roan logs (a send that failed never raises into the save)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.first = ""

    def emit(self, record: logging.LogRecord) -> None:
        # handle() holds the handler's lock around emit().
        self.count += 1
        if not self.first:
            self.first = logging.Formatter().format(record)

    def take(self) -> tuple[int, str]:
        self.acquire()
        try:
            taken = (self.count, self.first)
            self.count, self.first = 0, ""
        finally:
            self.release()
        return taken


def worker(args: argparse.Namespace, database: dict[str, Any]) -> dict[str, Any]:
    """Runs in a child process: migrate, seed, run every cell; return the raw figures."""
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "roan",
            "tests.testapp",
        ],
        DATABASES={"default": database},
        USE_TZ=True,
        SECRET_KEY="bench",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        ROAN_BACKENDS={
            "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": args.location}
        },
        ROAN_DISPATCH="inline",
        ROAN_RULES_TTL=60,
        ROAN_ENABLED=True,
        ROOT_URLCONF="tests.urls",
    )
    django.setup()
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connections, transaction

    from roan import pauses, suppress_purges
    from roan.models import PurgeAttempt, PurgeRule
    from tests.testapp.models import Author, Post, Tag

    call_command("migrate", verbosity=0)
    editor_counts = [int(e) for e in args.editors.split(",")]
    with suppress_purges():
        authors = Author.objects.bulk_create(Author(username=f"author-{i}") for i in range(AUTHORS))
        tags = Tag.objects.bulk_create(Tag(slug=f"tag-{i}") for i in range(TAGS))
        posts = Post.objects.bulk_create(
            Post(title=f"Post {i}", slug=f"post-{i}", author=authors[i % AUTHORS])
            for i in range(max(editor_counts) * POSTS_PER_EDITOR)
        )
        through = Post.tags.through
        through.objects.bulk_create(
            through(post_id=post.pk, tag_id=tags[(i + k) % TAGS].pk)
            for i, post in enumerate(posts)
            for k in range(2)
        )
    PurgeRule.objects.create(
        name="post pages",
        content_type=ContentType.objects.get_for_model(Post),
        templates=POST_TEMPLATES,
        on_save=True,
        on_m2m=True,
    )
    PurgeRule.objects.create(
        name="tag pages",
        content_type=ContentType.objects.get_for_model(Tag),
        templates=TAG_TEMPLATES,
        on_save=True,
        on_m2m=True,
    )
    tag_ids = [tag.pk for tag in tags]
    pauses.paused_backends()  # as after the first send: the paused list is cached
    errors = _ErrorCount()
    logging.getLogger("roan").addHandler(errors)

    def save(post: Any, rng: random.Random, i: int) -> None:
        with transaction.atomic():
            post.title = f"Title {i}"
            post.save()
            post.tags.set(rng.sample(tag_ids, rng.choice((2, 3))))

    def cell(editors: int, enabled: bool, seconds: float, seed: int) -> dict[str, Any]:
        settings.ROAN_ENABLED = enabled
        started = [0.0]
        cpu = [0.0]
        deadline = [math.inf]

        def go() -> None:  # run once every editor has warmed up, before any goes on
            started[0] = time.perf_counter()
            cpu[0] = time.process_time()
            deadline[0] = started[0] + seconds
            errors.take()  # what the warm-ups logged does not count

        barrier = threading.Barrier(editors + 1, action=go)
        latencies: list[list[float]] = [[] for _ in range(editors)]
        failures: Counter[str] = Counter()
        first_tb: dict[str, str] = {}
        lock = threading.Lock()
        ends = [0.0] * editors

        def editor(e: int) -> None:
            rng = random.Random(seed * 1000 + e)
            slugs = [f"post-{e * POSTS_PER_EDITOR + k}" for k in range(POSTS_PER_EDITOR)]
            own = Post.objects.select_related("author").filter(slug__in=slugs)
            mine = list(own.order_by("pk"))
            # Warm up this thread's connection and statements; a warm-up save that fails
            # (they run at the same time too) counts, and is tried again.
            for attempt in range(10):
                try:
                    save(mine[0], rng, -1 - attempt)
                    break
                except Exception as exc:
                    name = f"warm-up: {type(exc).__module__}.{type(exc).__qualname__}"
                    with lock:
                        failures[name] += 1
                        first_tb.setdefault(name, traceback.format_exc())
            barrier.wait()
            i = 0
            while time.perf_counter() < deadline[0]:
                post = mine[i % len(mine)]
                began = time.perf_counter()
                try:
                    save(post, rng, i)
                except Exception as exc:
                    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
                    with lock:
                        failures[name] += 1
                        first_tb.setdefault(name, traceback.format_exc())
                else:
                    latencies[e].append((time.perf_counter() - began) * 1000)
                i += 1
            ends[e] = time.perf_counter()

        def run(e: int) -> None:
            try:
                editor(e)
            finally:
                connections.close_all()  # this thread's connection

        threads = [threading.Thread(target=run, args=(e,)) for e in range(editors)]
        for thread in threads:
            thread.start()
        barrier.wait()
        for thread in threads:
            thread.join()
        elapsed = max([*ends, started[0] + 1e-9]) - started[0]
        cpu_s = time.process_time() - cpu[0]
        logged, first_logged = errors.take()
        return {
            "editors": editors,
            "roan": enabled,
            "seconds": elapsed,
            "cpu": cpu_s,
            "latencies": [round(ms, 3) for one in latencies for ms in one],
            "failures": dict(failures),
            "tracebacks": first_tb,
            "roan_errors": logged,
            "roan_error_first": first_logged,
        }

    # Warm up the process: rule index, nginx connection, imports.
    rng = random.Random(0)
    warm = list(Post.objects.select_related("author").order_by("pk")[:5])
    for i in range(10):
        save(warm[i % len(warm)], rng, i)
    cells = []
    for r in range(args.rounds):
        for k, editors in enumerate(editor_counts):
            order = (False, True) if (r + k) % 2 == 0 else (True, False)
            for enabled in order:
                cells.append(cell(editors, enabled, args.seconds, seed=r * 100 + k))
    settings.ROAN_ENABLED = True
    left = dict(
        Counter(
            PurgeAttempt.objects.exclude(status__in=["ok", "not_cached"]).values_list(
                "status", flat=True
            )
        )
    )
    return {"cells": cells, "unsent": left, "attempts": PurgeAttempt.objects.count()}


# -- the driver --------------------------------------------------------------------------------


def _answers(engine: str, url: str) -> str:
    """Why the server of ``url`` cannot be used ("" if it answers)."""
    parts = urlsplit(url)
    try:
        if engine == "postgresql":
            import psycopg

            psycopg.connect(
                host=parts.hostname, port=parts.port or 5432, user=parts.username,
                password=parts.password, dbname="postgres", connect_timeout=5,
            ).close()  # fmt: skip
        else:
            import MySQLdb

            MySQLdb.connect(
                host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                user=parts.username or "root", password=parts.password or "", connect_timeout=5,
            ).close()  # fmt: skip
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return ""


def run_engine(engine: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any] | None:
    name = f"roan_bench_concurrent_{uuid.uuid4().hex[:8]}"
    url = {"postgresql": args.pg_url, "mariadb": args.mysql_url}.get(engine, "")
    if engine != "sqlite":
        problem = _answers(engine, url)
        if problem:
            print(f"{engine}: skipped, no answer at {url} ({problem})", flush=True)
            return None
    database: dict[str, Any]
    if engine == "postgresql":
        admin_sql(url, f'CREATE DATABASE "{name}"')
        database = postgres_database(url, name)
    elif engine == "mariadb":
        mysql_admin_sql(url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        database = mysql_database(url, name)
    else:
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(tmp / f"{name}.sqlite3"),
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;",
            },
        }
    worker_args = [
        "--worker", "--location", args.location, "--seconds", str(args.seconds),
        "--rounds", str(args.rounds), "--editors", args.editors,
    ]  # fmt: skip
    print(f"{engine}: running ({database['NAME']})", flush=True)
    try:
        result: dict[str, Any] = run_worker(__file__, worker_args, database)
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or "").strip().splitlines()[-15:])
        print(f"{engine}: the worker failed (exit {exc.returncode}):\n{tail}", flush=True)
        return None
    finally:
        if engine == "postgresql":
            admin_sql(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        elif engine == "mariadb":
            mysql_admin_sql(url, f"DROP DATABASE IF EXISTS `{name}`")
    return result


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def pooled(cells: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [ms for c in cells for ms in c["latencies"]]
    failures: Counter[str] = Counter()
    for c in cells:
        failures.update(c["failures"])
    seconds = sum(c["seconds"] for c in cells)
    return {
        "per_s": len(latencies) / seconds if seconds else 0.0,
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "saves": len(latencies),
        "failed": sum(failures.values()),
        "failures": failures,
        "roan_errors": sum(c["roan_errors"] for c in cells),
        "cpu_ms": sum(c["cpu"] for c in cells) * 1000 / len(latencies) if latencies else math.nan,
        # Per round, for the spread of the ratio.
        "rounds": [len(c["latencies"]) / c["seconds"] if c["seconds"] else 0.0 for c in cells],
    }


def excerpt(lines: list[str]) -> list[str]:
    """A traceback's frames in roan and in this script (each with its source line), and
    the exception."""
    kept: list[str] = []
    for i, line in enumerate(lines):
        if line.lstrip().startswith("File ") and (
            "/roan/" in line or "concurrent_saves.py" in line
        ):
            kept.append(line.strip().replace(str(ROOT) + "/", ""))
            if i + 1 < len(lines) and not lines[i + 1].lstrip().startswith("File "):
                kept.append("  " + lines[i + 1].strip())
    return [*kept, lines[-1]]


def report(engine: str, result: dict[str, Any], args: argparse.Namespace) -> None:
    editor_counts = [int(e) for e in args.editors.split(",")]
    print(f"\n{engine}: {args.rounds} rounds x {args.seconds:g} s per cell, pooled")
    print(
        f"{'editors':>7} {'roan':>4} {'saves/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'cpu ms':>6} {'saves':>6} {'failed':>6} {'logged':>6}"
    )
    figures: dict[tuple[int, bool], dict[str, Any]] = {}
    for editors in editor_counts:
        for enabled in (False, True):
            cells = [c for c in result["cells"] if c["editors"] == editors and c["roan"] == enabled]
            f = figures[editors, enabled] = pooled(cells)
            print(
                f"{editors:7d} {'on' if enabled else 'off':>4} {f['per_s']:8.1f} "
                f"{f['p50']:8.1f} {f['p95']:8.1f} {f['cpu_ms']:6.1f} {f['saves']:6d} "
                f"{f['failed']:6d} {f['roan_errors']:6d}"
            )
    print(f"{'editors':>7}  roan on / off: throughput (per round)      p95   failed on")
    for editors in editor_counts:
        on, off = figures[editors, True], figures[editors, False]
        ratio = on["per_s"] / off["per_s"] if off["per_s"] else math.nan
        p95 = on["p95"] / off["p95"] if off["p95"] else math.nan
        per_round = [a / b for a, b in zip(on["rounds"], off["rounds"], strict=True) if b]
        spread = f"{min(per_round):.2f}-{max(per_round):.2f}" if per_round else "-"
        line = f"{editors:7d}  {ratio:24.2f}x ({spread:>9})  {p95:6.2f}x {on['failed']:8d}"
        if editors == max(editor_counts):
            met = [
                on["failed"] == 0 and off["failed"] == 0,
                ratio >= GOAL_THROUGHPUT,
                p95 <= GOAL_P95,
            ]
            verdict = ", ".join(
                f"{goal} {'met' if ok else 'NOT met'}"
                for goal, ok in zip(
                    ("0 failures", f">= {GOAL_THROUGHPUT}x", f"p95 <= {GOAL_P95:g}x"),
                    met,
                    strict=True,
                )
            )
            line += f"   goals: {verdict}"
        print(line)
    failures: Counter[str] = Counter()
    tracebacks: dict[str, str] = {}
    for c in result["cells"]:
        for name, count in c["failures"].items():
            failures[f"{name} (roan {'on' if c['roan'] else 'off'}, {c['editors']} editors)"] += (
                count
            )
        for name, text in c["tracebacks"].items():
            tracebacks.setdefault(name, text)
    for what, count in failures.most_common():
        print(f"  failed: {count:5d} x {what}")
    for name, text in tracebacks.items():
        lines = text.rstrip().splitlines()
        shown = lines if args.tracebacks else excerpt(lines)
        print(f"  first {name}{'' if args.tracebacks else ' (roan frames; --tracebacks)'}:")
        print("\n".join(f"    {line}" for line in shown))
    logged = [c["roan_error_first"] for c in result["cells"] if c["roan_error_first"]]
    if logged:
        first = logged[0].splitlines()
        print("  first error roan logged:\n    " + "\n    ...\n    ".join({*first[:1], first[-1]}))
    unsent = sum(result["unsent"].values())
    print(
        f"  attempt rows at the end: {result['attempts']}, not sent: {unsent}"
        + (f" {result['unsent']}" if unsent else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per cell (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="on/off pairs per editor count")
    parser.add_argument("--editors", default="1,4,16", help="comma-separated editor counts")
    parser.add_argument("--engines", default="sqlite,postgresql,mariadb")
    parser.add_argument(
        "--pg-url",
        "--database-url",
        dest="pg_url",
        default=os.environ.get("PG_URL")
        or os.environ.get("DATABASE_URL")
        or "postgres://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument(
        "--mysql-url", default=os.environ.get("MYSQL_URL") or "mysql://root@127.0.0.1:3306/"
    )
    parser.add_argument("--tracebacks", action="store_true", help="print whole tracebacks")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--location", default="", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(worker(args, json.loads(args.db))))
        return
    sys.path.insert(0, str(ROOT))
    import django

    from tests.support.caches import Origin, start_nginx

    engines = [e for e in ("sqlite", "postgresql", "mariadb") if e in args.engines.split(",")]
    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"inline dispatch to nginx (cache purge module) on loopback",
        flush=True,
    )
    origin = Origin()
    nginx = start_nginx(origin.port)
    args.location = f"{nginx.url}/purge"
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="roan-bench-") as tmp:
            for engine in engines:
                result = run_engine(engine, args, Path(tmp))
                if result is not None:
                    results[engine] = result
    finally:
        nginx.close()
        origin.close()
    for engine, result in results.items():
        report(engine, result, args)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
