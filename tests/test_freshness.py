"""Freshness, proven: random edits to the example blog never leave a stale page cached.

For each layout (a real nginx, a real Varnish with xkey, nginx in front of Django's page
cache) the example site runs as its own server process behind the cache, with roan
purging as the example's settings configure it. A seeded editor
(``tests/support/freshness_driver.py``, another process) makes random changes, one transaction
each: creates, edits, slug and author changes, tags added and removed from both sides,
deletes, renames of authors and tags, bulk transactions; then a ``QuerySet.update()``
and a ``bulk_update()``, which send no signals. Readers fetch pages through the
cache the whole time, so the caches refill while roan purges. After each change has been
dispatched, every page the site has ever had is fetched through the cache and compared
with the same page rendered by a second server that caches nothing: any difference is a
stale page.

``ROAN_FRESHNESS_CHANGES`` (default 30) sets the changes per run, ``ROAN_FRESHNESS_SEED``
(default 2026) the first seed and ``ROAN_FRESHNESS_RUNS`` (default 1) how many seeds each
layout runs. The figures of each run are printed at the end of the session. The tests are
marked ``freshness``: ``-m freshness`` runs only them, ``-m "not freshness"`` leaves them out.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.caches import CacheServer, free_port, start_nginx, start_varnish, stop_process

pytestmark = [pytest.mark.freshness, pytest.mark.caches]

EXAMPLE = Path(__file__).resolve().parent.parent / "example"
DRIVER = Path(__file__).resolve().parent / "support" / "freshness_driver.py"

CHANGES = int(os.environ.get("ROAN_FRESHNESS_CHANGES", "30"))
FIRST_SEED = int(os.environ.get("ROAN_FRESHNESS_SEED", "2026"))
RUNS = int(os.environ.get("ROAN_FRESHNESS_RUNS", "1"))
READERS = 3
#: After the random changes, one step of each: ``QuerySet.update()`` (filtered by
#: author) and ``bulk_update()``, which send no signals.
SIGNAL_FREE_WRITES = ("queryset_update", "bulk_update")
#: Seconds each reader waits between two fetches.
PAUSE = 0.002

# The footer says when the page was rendered: the one part of a page that differs
# between two renders of the same content.
RENDERED_AT = re.compile(r'<time class="rendered-at"[^>]*>[^<]*</time>')


def example_env(db: Path, cache_dir: Path, **extra: str) -> dict[str, str]:
    # The roan under test, not the one the virtualenv installed (another checkout, for an
    # editable install).
    path = os.pathsep.join(p for p in (str(EXAMPLE.parent), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "ROAN_EXAMPLE_SQLITE": str(db),
        "ROAN_EXAMPLE_CACHE_DIR": str(cache_dir),
        "ROAN_EXAMPLE_DEBUG": "0",
        **extra,
    }
    for name in ("DJANGO_SETTINGS_MODULE", "ROAN_EXAMPLE_DATABASE_URL"):
        env.pop(name, None)
    return env


def manage(*args: str) -> list[str]:
    return [sys.executable, str(EXAMPLE / "manage.py"), *args]


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's database, migrated and seeded once; each run works on a copy."""
    where = tmp_path_factory.mktemp("freshness-seed")
    env = example_env(where / "db.sqlite3", where / "pages")
    for command in (["migrate", "--noinput", "-v0"], ["seed_demo"]):
        subprocess.run(manage(*command), env=env, check=True, capture_output=True)
    return where / "db.sqlite3"


class Site:
    """The example served by ``runserver`` (a threaded server) in its own process."""

    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                manage("runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.url + "/", timeout=2).close()
                return
            except requests.ConnectionError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    output = log.read_text()[-2000:]
                    raise RuntimeError(f"the example did not start:\n{output}") from exc
                time.sleep(0.1)

    def close(self) -> None:
        stop_process(self.proc)


class Driver:
    """``tests/support/freshness_driver.py`` in its own process, one JSON line per change."""

    def __init__(self, seed: int, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(DRIVER), str(seed)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.pages: list[str] = self.read()["pages"]

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the driver stopped:\n{self.log.read_text()[-3000:]}")
        result: dict[str, Any] = json.loads(line)
        return result

    def change(self, named: str = "") -> dict[str, Any]:
        """One random change, or the one ``named`` (see the driver)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"change {named}".rstrip() + "\n")
        self.proc.stdin.flush()
        done = self.read()
        self.pages = done["pages"]
        return done

    def close(self) -> None:
        if self.proc.stdin is not None and self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Readers:
    """Threads fetching random pages through the cache until stopped."""

    cache_url: str
    pages: Callable[[], list[str]]
    seed: int
    fetches: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.read, args=(self.seed * 100 + n,), daemon=True)
            for n in range(READERS)
        ]
        for thread in self.threads:
            thread.start()

    def read(self, seed: int) -> None:
        pick = random.Random(seed)
        with requests.Session() as session:
            while not self.stop.is_set():
                page = pick.choice(self.pages())
                try:
                    session.get(self.cache_url + page, timeout=30).close()
                except requests.RequestException as exc:
                    self.errors.append(f"{page}: {exc}")
                with self.lock:
                    self.fetches += 1
                # Hits take microseconds: without a pause the readers would spend the
                # machine's cores on the cache, not on making the origin render.
                self.stop.wait(PAUSE)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


@dataclass(frozen=True)
class Layout:
    name: str
    start_cache: Callable[[int], CacheServer]
    #: The example's settings for this cache, given the cache and the origin's port.
    settings: Callable[[CacheServer, int], dict[str, str]]


def nginx_settings(cache: CacheServer, origin_port: int) -> dict[str, str]:
    # nginx passes the Host without its port: pages are cached (and purged) as 127.0.0.1.
    return {
        "ROAN_EXAMPLE_NGINX_PURGE_URL": f"{cache.url}/purge",
        "ROAN_EXAMPLE_NGINX_HOSTS": "127.0.0.1",
    }


LAYOUTS = {
    "nginx": Layout(
        "nginx",
        start_nginx,
        lambda cache, port: {**nginx_settings(cache, port), "ROAN_EXAMPLE_PAGE_CACHE": "0"},
    ),
    "varnish": Layout(
        "varnish",
        start_varnish,
        lambda cache, port: {
            "ROAN_EXAMPLE_VARNISH_URL": cache.url,
            "ROAN_EXAMPLE_VARNISH_HOSTS": f"127.0.0.1:{cache.port}",
            "ROAN_EXAMPLE_PAGE_CACHE": "0",
        },
    ),
    # The demo's own layering: nginx purged AFTER Django's page cache.
    "nginx+page-cache": Layout(
        "nginx+page-cache",
        start_nginx,
        lambda cache, port: {
            **nginx_settings(cache, port),
            "ROAN_EXAMPLE_PAGE_CACHE": "1",
            "ROAN_EXAMPLE_HOSTS": f"127.0.0.1:{port}",
        },
    ),
}


@dataclass
class Run:
    layout: str
    seed: int
    cache: CacheServer
    site: Site
    reference: Site
    driver: Driver
    logs: Path


@pytest.fixture
def freshness_run(request: pytest.FixtureRequest, seeded_db: Path, tmp_path: Path) -> Iterator[Run]:
    layout_name, seed = request.param
    layout = LAYOUTS[layout_name]
    db = tmp_path / "db.sqlite3"
    shutil.copy(seeded_db, db)
    origin_port = free_port()
    cache = layout.start_cache(origin_port)
    closing: list[Callable[[], None]] = [cache.close]
    try:
        env = example_env(db, tmp_path / "pages", **layout.settings(cache, origin_port))
        site = Site(origin_port, env, tmp_path / "site.log")
        closing.append(site.close)
        # The uncached render: same database, no page cache, no purging, no index writes.
        plain = example_env(
            db, tmp_path / "unused", ROAN_EXAMPLE_PAGE_CACHE="0", ROAN_EXAMPLE_PURGING="0"
        )
        reference = Site(free_port(), plain, tmp_path / "reference.log")
        closing.append(reference.close)
        driver = Driver(seed, env, tmp_path / "driver.log")
        closing.append(driver.close)
        yield Run(layout_name, seed, cache, site, reference, driver, tmp_path)
    finally:
        for close in reversed(closing):
            close()


def normalized(response: requests.Response) -> tuple[int, str]:
    return response.status_code, RENDERED_AT.sub("", response.text)


PARAMS = [(name, FIRST_SEED + n) for name in LAYOUTS for n in range(RUNS)]


@pytest.mark.parametrize(
    "freshness_run", PARAMS, indirect=True, ids=[f"{name}-seed{seed}" for name, seed in PARAMS]
)
def test_random_changes_leave_no_stale_page_in_the_cache(
    freshness_run: Run, request: pytest.FixtureRequest
) -> None:
    run = freshness_run
    # A site that has been serving for a while: every page rendered and cached once
    # before the first change. (On a cold site every reader's fetch is a slow first
    # render, and a render that finished just before a change's time was written can
    # reach the cache after its purge: the window roan.outbox.render_guard documents,
    # wide at start-up while the origin's threads contend for the interpreter.)
    with requests.Session() as warming:
        for page in run.driver.pages:
            warming.get(run.cache.url + page, timeout=30).close()
    readers = Readers(run.cache.url, lambda: run.driver.pages, run.seed)
    checked = 0
    stale: list[str] = []
    purges: Counter[str] = Counter()
    started = time.monotonic()
    try:
        with requests.Session() as through_cache, requests.Session() as origin:
            # The random changes, then writes that send no signals (roan.tags.bulk_writes).
            steps = [""] * CHANGES + list(SIGNAL_FREE_WRITES)
            for step, named in enumerate(steps, start=1):
                done = run.driver.change(named)  # committed; its purges sent and recorded
                purges.update(done["purges"])
                if named:
                    # Not a no-op: the write purged something.
                    assert done["purges"], done
                for page in done["pages"]:
                    cached = through_cache.get(run.cache.url + page, timeout=30)
                    fresh = origin.get(run.reference.url + page, timeout=30)
                    checked += 1
                    if normalized(cached) != normalized(fresh):
                        status = cached.headers.get("X-Cache-Status") or cached.headers.get(
                            "X-Cache", ""
                        )
                        stale.append(f"step {step} ({done['did']}): {page} [{status}]")
    finally:
        readers.close()
    seconds = time.monotonic() - started
    figures = (
        f"freshness layout={run.layout} seed={run.seed} changes={len(steps)} "
        f"pages_checked={checked} stale={len(stale)} reader_fetches={readers.fetches} "
        f"purges={dict(sorted(purges.items()))} seconds={seconds:.0f}"
    )
    print(figures)
    # For the session's summary (tests/conftest.py). Not record_property: CI's JUnit
    # reports are xunit2, which has no place for it (and says so with a warning).
    request.node.user_properties.append(("freshness", figures))

    assert readers.errors == []
    assert stale == [], "\n".join(stale[:10])
    # Every purge went through: none failed, none still waiting.
    assert set(purges) <= {"ok", "not_cached"}, purges
    assert readers.fetches > CHANGES  # the readers really read while roan purged
