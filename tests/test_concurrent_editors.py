"""Many editors saving at once (issue 24): no save fails, every purge goes out.

Twelve editor threads, each with its own database connection, save their own posts in
transactions: every post's author is one of three shared authors (a foreign key) and its
tags come from five shared tags (many-to-many), so every transaction purges the same
shared pages (``/``, ``/posts/``, ``/authors/...``, ``/tags/...``) as the others. Half of
the editors save the post and then set its tags, half change tags first and save after,
so their writes reach the shared targets in different orders. A bounded run (12 x 8
saves) on each test database: PostgreSQL, MariaDB and SQLite (one writer at a time:
IMMEDIATE transactions and a busy timeout, tests/settings.py SQLITE_SHARED_OPTIONS).

The purges go to a real nginx (example/deploy/nginx.conf) of this module's own, whose
access log tells which purges reached it.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.db import connections, transaction
from django.db.models import Q

from roan.models import PurgeAttempt
from tests.support.caches import Nginx, own_nginx
from tests.testapp.models import Author, Post, Tag

pytestmark = [
    pytest.mark.caches,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("shared_sqlite"),
]

EDITORS = 12
SAVES = 8  # transactions per editor
POSTS_PER_EDITOR = 2
AUTHORS = ("ada", "bob", "cy")
TAGS = ("red", "green", "blue", "pink", "gray")
#: Two rules, as a site may have (they fire in the order of their names): a post's pages
#: (its own, its author's, its tags'), then the listings. So each transaction writes its
#: own post's row first and then shared ones (authors, tags, listings) in an order of its
#: own: the old author before the new one, the tags of the save before those the
#: many-to-many change adds.
RULES = {
    "post pages": "/posts/{slug}/\n/authors/{author.username}/\n/tags/{tags.slug}/",
    "site listings": "/posts/\n/",
}
#: How long the editors may take at most (a hang is a failure, not a stuck suite).
EDITORS_SECONDS = 120.0
#: Failed saves after which the editors stop (each deadlock costs PostgreSQL a second of
#: deadlock_timeout: a broken write path would otherwise take minutes to report).
ENOUGH_FAILURES = EDITORS
#: Bigger than any backlog here: the drain claims it as one batch.
DRAIN_BATCH = 10_000


@pytest.fixture(scope="module")
def nginx() -> Iterator[Nginx]:
    """nginx of this module's own (its access log counts only these tests' purges) in
    front of an origin that answers every path with a cacheable page."""
    with own_nginx() as node:
        yield node


def use_nginx(settings: Any, nginx: Nginx, dispatch: str) -> None:
    settings.ROAN_DISPATCH = dispatch
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx.url}/purge",
            "TIMEOUT": (2.0, 10.0),
        }
    }


def site(make_rule: Callable[..., Any]) -> tuple[list[Author], list[Tag], list[list[Post]]]:
    """The rules, the shared authors and tags, and each editor's own posts; the paths of
    every page the editors' saves purge are :func:`pages`."""
    for name, templates in RULES.items():
        make_rule(name, templates, on_save=True, on_delete=True, on_m2m=True)
    authors = [Author.objects.create(username=name) for name in AUTHORS]
    tags = [Tag.objects.create(slug=slug) for slug in TAGS]
    posts = [
        [
            Post.objects.create(title="new", slug=f"e{e}-{n}", author=authors[e % len(AUTHORS)])
            for n in range(POSTS_PER_EDITOR)
        ]
        for e in range(EDITORS)
    ]
    return authors, tags, posts


def pages() -> list[str]:
    return [
        "/",
        "/posts/",
        *(f"/posts/e{e}-{n}/" for e in range(EDITORS) for n in range(POSTS_PER_EDITOR)),
        *(f"/authors/{name}/" for name in AUTHORS),
        *(f"/tags/{slug}/" for slug in TAGS),
    ]


def cache_statuses(nginx: Nginx, paths: list[str]) -> dict[str, str]:
    with requests.Session() as session:
        return {p: session.get(nginx.url + p, timeout=10).headers["X-Cache-Status"] for p in paths}


def prime(nginx: Nginx, paths: list[str]) -> None:
    """Every page cached: fetched, then a HIT."""
    cache_statuses(nginx, paths)
    statuses = cache_statuses(nginx, paths)
    assert set(statuses.values()) == {"HIT"}, statuses


def access_log(nginx: Nginx) -> str:
    return (nginx.dir / "logs" / "access.log").read_text()


def purges_in(log: str) -> Counter[str]:
    """The purge requests (``GET /purge<path>``) in a stretch of nginx's access log, per
    path. One backend, one node, one host, URL purges only: a path is a whole
    (backend, node, host, kind, target)."""
    return Counter(re.findall(r'"GET /purge(/[^ ]*) HTTP', log))


def purges_logged(nginx: Nginx, offset: int, expected: int) -> Counter[str]:
    """:func:`purges_in` the access log from ``offset`` on, once it shows ``expected``
    purges (nginx writes a request's line just after its answer), or after 2 s; then a
    moment more, for any purge beyond those."""
    deadline = time.monotonic() + 2
    while sum(purges_in(access_log(nginx)[offset:]).values()) < expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    return purges_in(access_log(nginx)[offset:])


def run_editors(
    authors: list[Author], tags: list[Tag], posts: list[list[Post]]
) -> tuple[list[str], float]:
    """Every editor's saves, all editors at once; the saves that failed, and the time.
    After ``ENOUGH_FAILURES`` failed saves the editors stop."""
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(EDITORS)
    stop = threading.Event()

    def editor(e: int) -> None:
        try:
            mine = [Post.objects.get(pk=post.pk) for post in posts[e]]  # this thread's own
            start.wait(30)
            for i in range(SAVES):
                if stop.is_set():
                    return
                author = authors[(e + i) % len(authors)]
                chosen = [tags[(e + i) % len(tags)], tags[(e + 2 * i + 1) % len(tags)]]
                try:
                    with transaction.atomic():
                        if e % 2 == 0:
                            # As the admin does: the object, then its many-to-many.
                            post = mine[i % len(mine)]
                            post.title = f"e{e} save {i}"
                            post.author = author
                            post.save()
                            post.tags.set(chosen)
                        else:
                            # Tags first (one post), then a save (the other).
                            mine[(i + 1) % len(mine)].tags.set(chosen)
                            post = mine[i % len(mine)]
                            post.title = f"e{e} save {i}"
                            post.author = author
                            post.save()
                except Exception as exc:
                    with lock:
                        failures.append(f"editor {e} save {i}: {type(exc).__name__}: {exc}")
                        if len(failures) >= ENOUGH_FAILURES:
                            stop.set()
        except Exception as exc:  # before the first save: no editor may vanish silently
            with lock:
                failures.append(f"editor {e} start: {type(exc).__name__}: {exc}")
            stop.set()
        finally:
            connections.close_all()  # this thread's own connection

    threads = [
        threading.Thread(target=editor, args=(e,), name=f"editor-{e}") for e in range(EDITORS)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, EDITORS_SECONDS - (time.monotonic() - began)))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"editors still saving after {EDITORS_SECONDS}s: {stuck}"
    return failures, time.monotonic() - began


def summary(failures: list[str]) -> str:
    kinds = Counter(line.split(": ", 2)[1] for line in failures)
    return (
        f"{len(failures)} of {EDITORS * SAVES} saves failed ({dict(kinds)}; the editors stop "
        f"at {ENOUGH_FAILURES}); the first ones:\n" + "\n".join(failures[:5])
    )


def drain() -> None:
    """``roan_dispatch``: every due attempt, claimed in one batch, sent, recorded."""
    call_command("roan_dispatch", batch=DRAIN_BATCH, stdout=io.StringIO())


def unfinished() -> list[tuple[Any, ...]]:
    """Attempts that are not done: pending, failed (to be retried) or still claimed."""
    rows = PurgeAttempt.objects.filter(
        Q(status__in=["pending", "failed"]) | Q(claimed_until__isnull=False)
    )
    return list(rows.values_list("pk", "status", "target", "error", "claimed_until")[:10])


def test_editors_saving_at_once_all_succeed_and_every_page_is_purged(
    make_rule: Callable[..., Any], settings: Any, nginx: Nginx
) -> None:
    """Inline dispatch (the default): each editor's purges go out after its commit."""
    use_nginx(settings, nginx, "inline")
    authors, tags, posts = site(make_rule)
    every = pages()
    prime(nginx, every)
    before = PurgeAttempt.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

    failures, seconds = run_editors(authors, tags, posts)

    assert not failures, summary(failures)
    drain()  # whatever an editor's send left behind
    assert unfinished() == []
    # Each page was cached when a purge reached it (nginx answered 200: "ok"), and none
    # was fetched since: each is a MISS now.
    purged = set(
        PurgeAttempt.objects.filter(pk__gt=before, status="ok").values_list("target", flat=True)
    )
    assert purged == set(every)
    statuses = cache_statuses(nginx, every)
    assert set(statuses.values()) == {"MISS"}, statuses
    assert seconds < EDITORS_SECONDS


def test_a_backlog_saved_at_once_is_drained_with_each_target_sent_once(
    make_rule: Callable[..., Any], settings: Any, nginx: Nginx
) -> None:
    """No sender while the editors save (task dispatch, no worker): every row waits,
    pending and unclaimed, where rows for the same target could merge. One drain then
    sends each target once, and records the outcome on every row."""
    use_nginx(settings, nginx, "task")  # no worker runs: the rows stay pending
    authors, tags, posts = site(make_rule)
    every = pages()
    prime(nginx, every)
    offset = len(access_log(nginx))

    failures, _seconds = run_editors(authors, tags, posts)

    assert not failures, summary(failures)
    assert purges_in(access_log(nginx)[offset:]) == Counter()  # nothing sent yet
    backlog = PurgeAttempt.objects.filter(status="pending").count()
    assert 0 < backlog <= DRAIN_BATCH  # one claimed batch
    offset = len(access_log(nginx))

    drain()

    # Every page was purged once, while it was cached (all "ok", none "not_cached"), by
    # the one drain after the last save: each is a MISS now.
    assert purges_logged(nginx, offset, len(every)) == Counter({page: 1 for page in every})
    assert unfinished() == []
    outcomes = Counter(PurgeAttempt.objects.values_list("status", flat=True))
    assert outcomes == {"ok": sum(outcomes.values())}, outcomes
    statuses = cache_statuses(nginx, every)
    assert set(statuses.values()) == {"MISS"}, statuses
