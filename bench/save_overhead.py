"""What roan costs an editor's save, measured against the same save without roan.

    .venv/bin/python bench/save_overhead.py [--n 2000] [--rounds 5] [--database-url URL]

Four setups, each in its own process with a fresh database, run in interleaved rounds:

    none        roan not installed
    installed   roan installed, no rule for the model saved
    one-rule    one rule with three templates on the model saved
    fifty-rules fifty rules on other models, plus the one matching rule

The workload is an editor's save: load a post (with its author, as a change form does),
change the title, save it in its own transaction. roan's own work inside the transaction
is timed: the attempt rows, and with inline dispatch their claim for this process (so the
rows do not coalesce: each save writes its own, as when they are sent). The sending after
commit is switched off, because that cost belongs to the cache, not to the save.
Prints median ms per save, the ratio to "none" and statements per save.
SQLite always (with the default rollback journal, and in WAL mode as production SQLite
sites run it); PostgreSQL too with --database-url or DATABASE_URL.

A second table measures the whole default path, sending included, as a new user meets it
(one rule with the static template ``/posts/``), each setup in its own process:

    none        roan not installed
    locmem      ROAN_DISPATCH = "inline" (the default) to a LocMemBackend (no network)
    nginx       inline to a real nginx on loopback (the tests' helper starts it)
    nginx-off   the same with HOSTS and ``VERIFY: False``: no verification
    nginx-sample  the same with HOSTS and no VERIFY: the sampled verification (the
                default; ROAN_VERIFY_SAMPLE 0.1, one probe a second, on its own thread)
    nginx-full  the same with ``VERIFY: True``: every purge marked pending in the
                request, probed on the thread
    task        ROAN_DISPATCH = "task" on the database task backend: the enqueue
                included, the worker not
    admin-none  an admin change-form POST through Django's test client, roan's receivers
                disconnected and no rule; timed whole, and until its response was ready
                (what roan does after the response, writing the outcomes of the purges
                it sent, is not the editor's wait)
    admin-roan  the same POST with the rule, sent inline to a LocMemBackend

And the peers a Django site uses instead of roan (issue 31), roan not installed:

    wagtail         wagtail's way: a ``post_save`` receiver that sends the rule's URLs to
                    the same nginx inside the request, with a pooled ``requests.Session``
                    (no outbox, no retries, no log)
    wagtail-urllib  the same with ``urllib`` (wagtail's own HTTP backend: a new
                    connection per purge)
    admin-nginx     the admin POST with the rule, sent inline to the real nginx
    admin-wagtail   the admin POST with wagtail's receiver (``requests.Session``)

The second table's last part gives each roan setup against wagtail's way of the same
round (``--setups`` picks setups, e.g. ``none,nginx,wagtail,wagtail-urllib,admin-none,
admin-nginx,admin-wagtail``).

Saves run in autocommit and in ``atomic()``, alternating in blocks of 50 in one process.
The ratio is each round's against the baseline of the same round; the table shows their
median and range (the noise). ``--profile SETUP:MODE[:ENGINE]`` prints a cProfile of one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
        import roan.outbox.pipeline

        # Measure the save, not the cache: nothing is sent after the commit, whether the
        # rows were claimed in the transaction (inline) or are left to a claim after it.
        roan.outbox.pipeline.dispatch = lambda ids, using=None: None
        roan.outbox.pipeline._send_own = lambda claimed, db: None  # type: ignore[assignment]
    from tests.testapp.models import Author, Post

    authors = Author.objects.bulk_create(Author(username=f"a{i}") for i in range(10))
    Post.objects.bulk_create(
        Post(title=f"Post {i}", slug=f"post-{i}", author=authors[i % 10]) for i in range(100)
    )
    if setup != "none":
        add_rules(setup)
        from roan import pauses

        # As after the first send: the paused list is cached (a save never reads it from
        # the database; only then does it claim its rows in the transaction).
        pauses.paused_backends()
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


# -- end to end: the default path, dispatch included ----------------------------------------

#: Setups of the end-to-end table, each in its own process and fresh database.
E2E_SETUPS = (
    "none",
    "locmem",
    "nginx",
    "nginx-off",
    "nginx-sample",
    "nginx-full",
    "task",
    "wagtail",
    "wagtail-urllib",
)
ADMIN_SETUPS = ("admin-none", "admin-roan", "admin-nginx", "admin-wagtail")
#: Setups without roan installed (the peers install their own receiver).
WITHOUT_ROAN = frozenset({"none", "wagtail", "wagtail-urllib"})
#: What roan's rule purges, as the peers send it: the same URLs to the same nginx.
RULE_PATHS = ("/posts/",)
MODES = ("autocommit", "atomic")


def e2e_settings(setup: str, database: dict[str, object], location: str) -> dict[str, object]:
    apps = [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django_tasks_db",
        "roan",
        "tests.testapp",
    ]
    if setup in WITHOUT_ROAN:
        apps = ["django.contrib.auth", "django.contrib.contenttypes", "tests.testapp"]
    backend: dict[str, object] = {"BACKEND": "roan.backends.locmem.LocMemBackend"}
    if setup.startswith("nginx") or setup == "admin-nginx":
        backend = {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": location}
    if setup != "nginx" and setup.startswith("nginx"):
        backend["HOSTS"] = ["127.0.0.1"]
        verify = {"nginx-off": False, "nginx-full": True}
        if setup in verify:
            backend["VERIFY"] = verify[setup]
    return {
        "INSTALLED_APPS": apps,
        "DATABASES": {"default": database},
        "USE_TZ": True,
        "SECRET_KEY": "bench",
        "ALLOWED_HOSTS": ["*"],
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        "ROAN_BACKENDS": {"default": backend},
        "ROAN_DISPATCH": "task" if setup == "task" else "inline",
        "TASKS": {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
        "ROAN_RULES_TTL": 60,
        "ROOT_URLCONF": "tests.urls",
        "MIDDLEWARE": [
            # Outermost: when the editor's answer is ready (see ``answered``).
            "save_overhead.answered",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "roan.middleware.PurgeUserMiddleware",
        ],
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
    }


def e2e_worker(
    setup: str, n: int, database: dict[str, object], location: str, profile: str
) -> dict[str, float]:
    """Runs in a child process: migrate, seed, time ``n`` saves per mode (alternating in
    blocks), dispatch included; or ``n`` admin change-form POSTs."""
    import django
    from django.conf import settings

    # The settings name this module's middleware by the name it is imported under.
    sys.modules.setdefault("save_overhead", sys.modules[__name__])
    settings.configure(**e2e_settings(setup, database, location))
    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    from tests.testapp.models import Author, Post

    authors = Author.objects.bulk_create(Author(username=f"a{i}") for i in range(10))
    Post.objects.bulk_create(
        Post(title=f"Post {i}", slug=f"post-{i}", author=authors[i % 10]) for i in range(100)
    )
    if setup not in WITHOUT_ROAN and setup not in {"admin-none", "admin-wagtail"}:
        from django.contrib.contenttypes.models import ContentType

        from roan.models import PurgeRule

        # The new user: one rule, one static template.
        PurgeRule.objects.create(
            name="post list", content_type=ContentType.objects.get_for_model(Post),
            templates="/posts/",
        )  # fmt: skip
    if setup in {"admin-none", "admin-wagtail"}:
        from django.db.models import signals

        for signal, uid in [
            (signals.pre_save, "roan.pre_save"), (signals.post_save, "roan.post_save"),
            (signals.pre_delete, "roan.pre_delete"), (signals.post_delete, "roan.post_delete"),
            (signals.m2m_changed, "roan.m2m_changed"),
        ]:  # fmt: skip
            signal.disconnect(dispatch_uid=uid)
    if setup in {"wagtail", "wagtail-urllib", "admin-wagtail"}:
        _connect_peer(setup, location)
    posts = list(Post.objects.select_related("author").order_by("pk"))

    figures: dict[str, float] = {}
    waited = {"answer": 0.0}
    if setup.startswith("admin"):
        run = _admin_runner(posts, waited)
        modes: tuple[str, ...] = ("admin",)
    else:

        def run(mode: str, i: int) -> None:
            post = posts[i % len(posts)]
            post.title = f"Title {i}"
            if mode == "atomic":
                with transaction.atomic():
                    post.save()
            else:
                post.save()

        modes = MODES
    for mode in modes:
        for i in range(100):  # warm up
            run(mode, i)
    for mode in modes:
        with CaptureQueriesContext(connection) as queries:
            for i in range(100):
                run(mode, i)
        figures[f"{mode}-stmts"] = len(queries.captured_queries) / 100
    if profile:
        return _profiled(run, profile, n)
    # Alternate the modes in blocks, so drift hits both alike.
    waited["answer"] = 0.0
    elapsed = dict.fromkeys(modes, 0.0)
    block = 50
    for first in range(0, n, block):
        for mode in modes:
            start = time.perf_counter()
            for i in range(first, first + block):
                run(mode, i)
            elapsed[mode] += time.perf_counter() - start
    for mode in modes:
        figures[mode] = elapsed[mode] * 1000 / n
    if setup.startswith("admin"):
        # The editor's wait: the POST until its response was ready.
        figures["answer"] = waited["answer"] * 1000 / n
        figures["answer-stmts"] = figures["admin-stmts"]
    if setup not in WITHOUT_ROAN and setup not in {"admin-none", "admin-wagtail"}:
        from roan.models import PurgeAttempt

        # A benchmark whose purges were not sent would measure the wrong thing.
        left = PurgeAttempt.objects.exclude(status__in=["ok", "not_cached"]).count()
        figures["unsent"] = float(left if setup != "task" else 0)
        from roan.outbox import verify

        # The probes run on their own thread, during the saves: counted once done.
        verify.verifier.drain(timeout=60)
        probed = PurgeAttempt.objects.exclude(verification="")
        figures["probed"] = float(probed.count())
        figures["fresh"] = float(probed.filter(verification="verified").count())
    else:
        figures["unsent"] = float(len(_PEER_FAILURES))
    return figures


#: Purges a peer could not send (a benchmark whose purges failed measures the wrong thing).
_PEER_FAILURES: list[str] = []


def _connect_peer(setup: str, location: str) -> None:
    """wagtail's way: a ``post_save`` receiver that purges the rule's URLs at once, in
    the request (``frontend_cache``'s ``purge_url_from_cache`` on ``page_published``),
    failures only logged. ``requests`` with a pooled session, or ``urllib`` as wagtail's
    ``HTTPBackend`` does (a new connection per purge)."""
    import urllib.error
    import urllib.request

    import requests
    from django.db.models.signals import post_save

    from tests.testapp.models import Post

    urls = [f"{location}{path}" for path in RULE_PATHS]
    session = requests.Session()

    def with_requests(**kwargs: Any) -> None:
        for url in urls:
            try:
                session.get(url, timeout=5)
            except requests.RequestException:
                _PEER_FAILURES.append(url)

    def with_urllib(**kwargs: Any) -> None:
        for url in urls:
            try:
                urllib.request.urlopen(urllib.request.Request(url), timeout=5).close()
            except urllib.error.HTTPError:  # nginx's 404: "not cached", answered
                pass
            except urllib.error.URLError:
                _PEER_FAILURES.append(url)

    receiver = with_urllib if setup == "wagtail-urllib" else with_requests
    post_save.connect(receiver, sender=Post, weak=False, dispatch_uid="bench.peer")


#: When the last response was ready, by ``answered``.
_ANSWERED: list[float] = [0.0]


def answered(get_response: Any) -> Any:
    """Middleware: note when the response is ready. What runs on ``request_finished``
    (after the server has sent it: roan writes the outcomes of the purges it sent then)
    is outside what the editor waits for."""

    def middleware(request: Any) -> Any:
        response = get_response(request)
        _ANSWERED[0] = time.perf_counter()
        return response

    return middleware


def _admin_runner(posts: list[Any], waited: dict[str, float]) -> Any:
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_superuser("admin", "admin@example.com", "admin")
    client = Client()
    client.force_login(user)

    def run(mode: str, i: int) -> None:
        post = posts[i % len(posts)]
        data = {
            "title": f"Title {i}", "slug": post.slug, "body": "", "author": post.author_id,
            "views": 0, "_save": "Save",
        }  # fmt: skip
        start = time.perf_counter()
        response = client.post(f"/admin/testapp/post/{post.pk}/change/", data)
        waited["answer"] += _ANSWERED[0] - start
        if response.status_code != 302:
            raise SystemExit(f"admin POST: HTTP {response.status_code}")
        # The page the editor is sent to shows the messages and so empties their cookie;
        # not followed here (it is not the save), the cookie would grow with every POST,
        # and re-encoding it came to cost more than the save (roan adds one message).
        client.cookies.pop("messages", None)

    return run


def _profiled(run: Any, mode: str, n: int) -> dict[str, float]:
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(n):
        run(mode, i)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
    sys.stderr.write(out.getvalue())
    return {}


def run_e2e_once(
    setup: str, n: int, engine: str, url: str, tmp: Path, location: str, profile: str = ""
) -> dict[str, float]:
    name = f"roan_bench_e2e_{setup.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    if engine == "postgresql":
        admin_sql(url, f'CREATE DATABASE "{name}"')
        database = postgres_database(url, name)
    else:
        database = sqlite_database(tmp, name, wal=engine == "sqlite-wal")
    args = ["--e2e", setup, "--n", str(n), "--location", location, "--profile", profile]
    try:
        result: dict[str, float] = run_worker(__file__, args, database, stderr=bool(profile))
    finally:
        if engine == "postgresql":
            admin_sql(url, f'DROP DATABASE IF EXISTS "{name}"')
    return result


def report_e2e(
    engine: str, url: str, n: int, rounds: int, location: str, wanted: frozenset[str]
) -> None:
    setups = tuple(s for s in E2E_SETUPS + ADMIN_SETUPS if not wanted or s in wanted)
    results: dict[str, list[dict[str, float]]] = {s: [] for s in setups}
    with tempfile.TemporaryDirectory(prefix="roan-bench-") as tmp:
        for _ in range(rounds):
            for setup in setups:
                results[setup].append(run_e2e_once(setup, n, engine, url, Path(tmp), location))
    for setup in setups:
        unsent = max(r.get("unsent", 0) for r in results[setup])
        if unsent:
            raise SystemExit(f"{engine} {setup}: {unsent:.0f} attempts were not sent")

    def cell(setup: str, mode: str, base: str) -> str:
        values = [r[mode] for r in results[setup]]
        ms = statistics.median(values)
        # The ratio of each round, against the baseline of the same round: its spread
        # says how noisy the machine was.
        ratios = [r[mode] / b[mode] for r, b in zip(results[setup], results[base], strict=True)]
        q = statistics.median(r[f"{mode}-stmts"] for r in results[setup])
        return (
            f"{ms:8.3f} {statistics.median(ratios):6.2f} "
            f"{min(ratios):5.2f}-{max(ratios):<5.2f} {q:6.2f}"
        )

    def table(title: str, base: str, admin_base: str) -> None:
        print(f"\n{engine}, {title}: {n} saves per mode x {rounds} rounds, dispatch included")
        head = f"{'ms':>8} {'ratio':>6} {'range':>11} {'stmts':>6}"
        print(f"{'setup':<14} {'autocommit':<33}   {'in atomic()':<33}")
        print(f"{'':<14} {head}   {head}")
        if base in results:
            for setup in E2E_SETUPS:
                if setup in results:
                    print(
                        f"{setup:<14} {cell(setup, 'autocommit', base)}   "
                        f"{cell(setup, 'atomic', base)}"
                    )
        if admin_base in results:
            print(f"{'admin POST':<14} {head}   until its answer was ready")
            for setup in ADMIN_SETUPS:
                if setup in results:
                    print(
                        f"{setup:<14} {cell(setup, 'admin', admin_base)}   "
                        f"{cell(setup, 'answer', admin_base)}"
                    )

    table("end to end, ratio to no purging", "none", "admin-none")
    if "wagtail" in results or "admin-wagtail" in results:
        table("ratio to wagtail's way (requests.Session)", "wagtail", "admin-wagtail")
    for setup in setups:
        if probed := sum(r.get("probed", 0) for r in results.get(setup, [])):
            fresh = sum(r.get("fresh", 0) for r in results[setup])
            print(f"{setup}: {probed:.0f} purges probed, {fresh:.0f} verified fresh")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="timed saves per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument(
        "--only", choices=("transaction", "end-to-end"), help="one of the two tables"
    )
    parser.add_argument(
        "--profile",
        default="",
        help="cProfile one end-to-end setup instead: SETUP:MODE[:ENGINE], e.g. locmem:autocommit",
    )
    parser.add_argument(
        "--engines",
        default="sqlite,sqlite-wal,postgresql",
        help="comma-separated, of sqlite, sqlite-wal, postgresql (the last needs a URL)",
    )
    parser.add_argument(
        "--setups", default="", help="comma-separated end-to-end setups (default: all)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--e2e", help=argparse.SUPPRESS)
    parser.add_argument("--location", default="", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, json.loads(args.db))))
        return
    if args.e2e:
        figures = e2e_worker(args.e2e, args.n, json.loads(args.db), args.location, args.profile)
        print(json.dumps(figures))
        return
    import django

    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, {os.cpu_count()} CPUs"
    )
    engines = [("sqlite", ""), ("sqlite-wal", "")]
    if args.database_url:
        engines.append(("postgresql", args.database_url))
    wanted = set(args.engines.split(","))
    if args.profile:
        setup, mode, *engine = args.profile.split(":")
        engine_name = engine[0] if engine else "sqlite"
        with tempfile.TemporaryDirectory(prefix="roan-bench-") as tmp, cache_node() as location:
            url = dict(engines).get(engine_name, "")
            run_e2e_once(setup, args.n, engine_name, url, Path(tmp), location, profile=mode)
        return
    engines = [(engine, url) for engine, url in engines if engine in wanted]
    if args.only != "end-to-end":
        for engine, url in engines:
            report(engine, url, args.n, args.rounds)
    if args.only != "transaction":
        with cache_node() as location:
            for engine, url in engines:
                wanted = frozenset(filter(None, args.setups.split(",")))
                report_e2e(engine, url, args.n, args.rounds, location, wanted)


@contextlib.contextmanager
def cache_node() -> Iterator[str]:
    """A real nginx with the cache purge module on loopback (the tests' helper): its
    purge location."""
    sys.path.insert(0, str(ROOT))
    from tests.support.caches import Origin, start_nginx

    origin = Origin()
    nginx = start_nginx(origin.port)
    try:
        yield f"{nginx.url}/purge"
    finally:
        nginx.close()
        origin.close()


if __name__ == "__main__":
    main()
