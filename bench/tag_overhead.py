"""What automatic cache tags cost a page render: the example blog's post list, 50 posts.

    .venv/bin/python bench/tag_overhead.py [--requests 100] [--rounds 5] [--database-url URL]

The example site (its settings, views and templates) with a fresh database of 50 posts by
5 authors, each post with 2 of 8 tags, rendered through Django's test client (the full
middleware chain, no network) in two setups, interleaved round by round in one process:

    off    the example's MIDDLEWARE without roan.middleware.CacheTagMiddleware, and
           roan's tracking hooks uninstalled (roan.tags.collect.uninstall())
    on     with it, and a Varnish backend configured, so each page gets its xkey header
           (and an nginx backend, never reached, so that the index is read)
           (the render overhead: tracking, collecting and the header)
    upsert the same, plus the tag index write as it was before notes (one upsert of the
           page's tags into TaggedURL on every miss, for caches that cannot purge by tag)
    index  the same with notes in a shared ROAN_CACHE (a file cache here): a miss of a URL
           indexed already with the same tags reads one note and writes nothing

Django's page cache is swapped for a DummyCache, so every request renders the page;
``ROAN_CACHE`` is a file cache. The render guard is off unless ``--render-guard``.
Requests alternate off/on/upsert/index one by one; prints the median wall and CPU ms per page of
each setup (CPU time of this process: what other processes on a shared machine disturb
least), the ratios, the index write's cost per miss, and the tags one page carries.
Goal: at most 10% render overhead ("on"). SQLite by default; PostgreSQL with
--database-url (a scratch database, created and dropped here).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import admin_sql, setup_example

ROOT = Path(__file__).resolve().parent.parent
TAG_MIDDLEWARE = "roan.middleware.CacheTagMiddleware"


def seed() -> None:
    from blog.models import Author, Post, Tag
    from django.core.management import call_command

    import roan

    call_command("migrate", verbosity=0)
    with roan.suppress_purges():
        authors = Author.objects.bulk_create(
            Author(username=f"author-{i}", name=f"Author {i}") for i in range(5)
        )
        tags = Tag.objects.bulk_create(Tag(slug=f"tag-{i}", name=f"Tag {i}") for i in range(8))
        posts = Post.objects.bulk_create(
            Post(
                title=f"Post number {i}",
                slug=f"post-{i}",
                body="A paragraph of text about caches. " * 20,
                author=authors[i % 5],
            )
            for i in range(50)
        )
        through = Post.tags.through
        through.objects.bulk_create(
            through(post_id=post.pk, tag_id=tags[(i + k) % 8].pk)
            for i, post in enumerate(posts)
            for k in (0, 3)
        )


def client_for(tracking: bool) -> Any:
    """A test client whose middleware chain is built (by a first request) now."""
    from django.conf import settings
    from django.test import Client, override_settings

    middleware = [m for m in settings.MIDDLEWARE if m != TAG_MIDDLEWARE]
    if tracking:
        middleware.insert(1, TAG_MIDDLEWARE)
    client = Client(HTTP_HOST="localhost")
    with override_settings(MIDDLEWARE=middleware):
        client.get("/posts/")
    return client


def timed_request(client: Any) -> tuple[float, float]:
    """(wall ms, CPU ms of this process) for one request of the post list."""
    wall, cpu = time.perf_counter(), time.process_time()
    response = client.get("/posts/")
    elapsed = ((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000)
    assert response.status_code == 200
    return elapsed


def run(requests: int, rounds: int, cache_dir: str, guard: bool = False) -> None:
    from django.test import override_settings

    from roan.tags import collect as tags_module
    from roan.tags import index as tag_index

    seed()
    dummy: dict[str, Any] = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    # The index's notes (and the render guard) read ROAN_CACHE: a file cache, like the
    # example's, shared by every process.
    dummy["roan"] = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": cache_dir,
    }
    extra: dict[str, Any] = {"ROAN_RENDER_GUARD": guard, "ROAN_CACHE": "roan"}
    varnish = {
        "edge": {
            "BACKEND": "roan.backends.varnish.VarnishBackend",
            "NODES": ["http://127.0.0.1:9"],
        },
        # A cache that purges tags by URL: the index is written only when one reads it.
        "pages": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": "http://127.0.0.1:9/p",
        },
    }
    with override_settings(CACHES=dummy, ROAN_BACKENDS=varnish, **extra):
        clients = {
            "off": client_for(False),
            "on": client_for(True),
            "upsert": client_for(True),
            "index": client_for(True),
        }
        remember = tag_index.remember
        notes_kept = tag_index.notes_kept
        assert notes_kept(), "ROAN_CACHE is not shared: no notes"

        def no_notes() -> bool:
            return False

        def no_index(*args: Any) -> None:
            return None

        page = clients["on"].get("/posts/")
        assert page.status_code == 200, page.status_code
        tags = page.headers.get("xkey", "").split()
        assert "blog.post" in tags and "blog.post:1" in tags, tags
        assert "xkey" not in clients["off"].get("/posts/").headers
        for _ in range(20):  # warm up: templates, statement caches
            for client in clients.values():
                timed_request(client)
        from roan.models import TaggedURL

        assert TaggedURL.objects.filter(path="/posts/").exists(), "the page was not indexed"
        setups = ("off", "on", "upsert", "index")
        wall: dict[str, list[float]] = {s: [] for s in setups}
        cpu: dict[str, list[float]] = {s: [] for s in setups}
        ratios: list[float] = []
        for _ in range(rounds):
            round_cpu: dict[str, list[float]] = {s: [] for s in setups}
            for _ in range(requests):
                # Alternating request by request: a neighbour's load hits both alike.
                # "off" runs with roan's hooks taken out: a site without the
                # middleware, not one where it is merely idle.
                for setup in setups:
                    (tags_module.uninstall if setup == "off" else tags_module.install)()
                    writes = setup in ("upsert", "index")
                    tag_index.remember = remember if writes else no_index  # type: ignore[assignment]
                    tag_index.notes_kept = notes_kept if setup == "index" else no_notes  # type: ignore[assignment]
                    w, c = timed_request(clients[setup])
                    wall[setup].append(w)
                    cpu[setup].append(c)
                    round_cpu[setup].append(c)
            ratios.append(statistics.median(round_cpu["on"]) / statistics.median(round_cpu["off"]))
        tag_index.remember = remember  # type: ignore[assignment]
        tag_index.notes_kept = notes_kept  # type: ignore[assignment]
    print(
        f"{requests} requests x {rounds} rounds of /posts/ (50 posts), "
        "alternating off/on/upsert/index"
    )
    print(f"{'setup':<6} {'wall ms':>8} {'cpu ms':>8} {'cpu ratio':>9}")
    base = statistics.median(cpu["off"])
    for setup in setups:
        w, c = statistics.median(wall[setup]), statistics.median(cpu[setup])
        print(f"{setup:<6} {w:8.3f} {c:8.3f} {c / base:9.3f}")
    print(
        f"render overhead (CPU, medians) {100 * (statistics.median(cpu['on']) / base - 1):+.1f}%; "
        f"per-round ratios {min(ratios):.3f}..{max(ratios):.3f}, median "
        f"{statistics.median(ratios):.3f}"
    )
    on_cpu, on_wall = statistics.median(cpu["on"]), statistics.median(wall["on"])
    for setup, what in (("upsert", "every miss upserts"), ("index", "indexed already, noted")):
        write = statistics.median(cpu[setup]) - on_cpu
        write_wall = statistics.median(wall[setup]) - on_wall
        print(
            f"tag index write per miss ({what}): {write:+.3f} ms CPU "
            f"({100 * write / on_cpu:+.1f}% of the page), {write_wall:+.3f} ms wall "
            f"({100 * write_wall / on_wall:+.1f}%)"
        )
    print(f"{len(tags)} tags, {len(' '.join(tags))} bytes of xkey: {' '.join(tags[:7])} ...")


# -- the index at scale ------------------------------------------------------------------------

#: Rows the index holds per URL when filled (a list tag, an object tag, filler tags).
FILL_TAGS_PER_URL = 10


def fill_index(rows: int) -> None:
    """``rows`` live index rows on ``rows / 10`` URLs of host "localhost": the list tag
    ``blog.post`` on up to 10,000 of them (ROAN_TAG_INDEX_MAX_URLS_PER_TAG's default), an
    object tag ``blog.post:N`` on each (every post on ``urls / 5000`` pages), and filler
    tags. One INSERT ... SELECT: a million rows in seconds."""
    from django.db import connection

    urls = rows // FILL_TAGS_PER_URL
    if connection.vendor == "postgresql":
        sql = f"""
            INSERT INTO roan_taggedurl (tag, host, path, url_key, page_key, expires_at)
            SELECT CASE WHEN t = 0 AND u < 10000 THEN 'blog.post'
                        WHEN t = 0 THEN 'fill.list' || (u % 1000)
                        WHEN t = 1 THEN 'blog.post:' || (u % 5000 + 1000)
                        ELSE 'fill.model' || t || ':' || (u % 50000) END,
                   'localhost', '/fill/' || u || '/',
                   md5('u' || u) || md5('v' || u), md5('p' || u) || md5('q' || u),
                   now() + (3600 + u % 3600) * interval '1 second'
            FROM generate_series(0, {urls - 1}) u, generate_series(0, {FILL_TAGS_PER_URL - 1}) t
        """
    else:
        sql = f"""
            WITH RECURSIVE
              us(u) AS (SELECT 0 UNION ALL SELECT u + 1 FROM us WHERE u < {urls - 1}),
              ts(t) AS (SELECT 0 UNION ALL SELECT t + 1 FROM ts WHERE t < {FILL_TAGS_PER_URL - 1})
            INSERT INTO roan_taggedurl (tag, host, path, url_key, page_key, expires_at)
            SELECT CASE WHEN t = 0 AND u < 10000 THEN 'blog.post'
                        WHEN t = 0 THEN 'fill.list' || (u % 1000)
                        WHEN t = 1 THEN 'blog.post:' || (u % 5000 + 1000)
                        ELSE 'fill.model' || t || ':' || (u % 50000) END,
                   'localhost', '/fill/' || u || '/',
                   lower(hex(randomblob(32))), lower(hex(randomblob(32))),
                   strftime('%Y-%m-%d %H:%M:%f', 'now', '+' || (3600 + u % 3600) || ' seconds')
            FROM us, ts
        """
    with connection.cursor() as cursor:
        cursor.execute(sql)
        cursor.execute("ANALYZE roan_taggedurl" if connection.vendor == "postgresql" else "ANALYZE")


def at_scale(rows: int, calls: int) -> None:
    """The index write of a page and a tag expansion, on an empty index and on one of
    ``rows`` rows, in one run: the figures issue 30 asks for."""
    from django.http import HttpResponse
    from django.test import RequestFactory, override_settings

    from roan.models import TaggedURL
    from roan.tags import index as tag_index

    page_tags = frozenset(
        ["blog.post", "blog.author", "blog.tag"]
        + [f"blog.post:{n}" for n in range(1, 51)]
        + [f"blog.author:{n}" for n in range(1, 6)]
        + [f"blog.tag:{n}" for n in range(1, 9)]
    )  # the 65 tags of the example's /posts/
    factory = RequestFactory()
    counter = iter(range(10**9))

    def write(path: str, noted: bool) -> float:
        request = factory.get(path, HTTP_HOST="localhost")
        response = HttpResponse("page")
        response["Cache-Control"] = "public, max-age=600"
        tag_index.notes_kept = lambda: noted  # type: ignore[assignment]
        started = time.perf_counter()
        assert tag_index.remember(request, response, page_tags)
        return (time.perf_counter() - started) * 1000

    def expansion(tags: list[str]) -> float:
        started = time.perf_counter()
        found, _more = tag_index.expand(tags, [], 1000)
        elapsed = (time.perf_counter() - started) * 1000
        assert found
        return elapsed

    def measure() -> dict[str, float]:
        write("/again/", False)
        cases = {
            "write, first miss": lambda: write(f"/new/{next(counter)}/", False),
            "write, miss again (upsert)": lambda: write("/again/", False),
            "write, miss again (noted)": lambda: write("/again/", True),
            "expand blog.post:1 (object)": lambda: expansion(["blog.post:1"]),
            "expand blog.post (list, 10,000 URLs)": lambda: expansion(["blog.post"]),
        }
        return {
            name: statistics.median(case() for _ in range(calls)) for name, case in cases.items()
        }

    notes_kept = tag_index.notes_kept
    varnish = {
        "pages": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": "http://127.0.0.1:9/p"}
    }
    with override_settings(ROAN_BACKENDS=varnish, ROAN_TAGS=True):
        TaggedURL.objects.all().delete()
        empty = measure()
        started = time.perf_counter()
        fill_index(rows)
        filled_in = time.perf_counter() - started
        live = TaggedURL.objects.count()
        full = measure()
        TaggedURL.objects.all().delete()
        again = measure()
    tag_index.notes_kept = notes_kept  # type: ignore[assignment]
    print(
        f"\nthe index at scale: {live:,} rows (filled in {filled_in:.1f} s), "
        f"median of {calls} calls"
    )
    print(f"{'':38} {'empty ms':>9} {'full ms':>9} {'ratio':>6} {'empty again':>11}")
    for name in empty:
        print(
            f"{name:38} {empty[name]:9.3f} {full[name]:9.3f} "
            f"{full[name] / empty[name]:6.2f} {again[name]:11.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="requests per setup and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--index-rows",
        type=int,
        default=0,
        help="also time the index write and a tag expansion at this many index rows "
        "(e.g. 1000000) next to an empty index",
    )
    parser.add_argument("--only-scale", action="store_true", help="skip the page figures")
    parser.add_argument("--calls", type=int, default=30, help="calls per figure at scale")
    parser.add_argument(
        "--render-guard",
        action="store_true",
        help="with the render guard on (ROAN_CACHE a file cache); off by default",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="roan-bench-tags-") as tmp:
        name = f"roan_bench_tags_{uuid.uuid4().hex[:8]}"
        url = ""
        if args.database_url:
            admin_sql(args.database_url, f'CREATE DATABASE "{name}"')
            url = args.database_url.rsplit("/", 1)[0] + f"/{name}"
        try:
            setup_example(str(Path(tmp) / "bench.sqlite3"), url)
            import django

            engine = "postgresql" if url else "sqlite"
            print(
                f"Python {platform.python_version()}, Django {django.get_version()}, "
                f"{os.cpu_count()} CPUs, {engine}"
            )
            if not args.only_scale:
                run(args.requests, args.rounds, str(Path(tmp) / "roan-cache"), args.render_guard)
            else:
                seed()
            if args.index_rows:
                at_scale(args.index_rows, args.calls)
        finally:
            if url:
                from django.db import connections

                connections.close_all()
                admin_sql(args.database_url, f'DROP DATABASE IF EXISTS "{name}"')


if __name__ == "__main__":
    main()
