"""A miss whose URL and tags are indexed already writes nothing (issue 31, "a page"):
``roan.tags.index.remember`` notes what it wrote in ``ROAN_CACHE`` (a cache every process
shares) and skips the write while the rows outlive the new copy; whatever forgets rows
drops their notes first, so a forgotten page is indexed again at its next miss.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.http import HttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from roan import shared_cache
from roan.models import TaggedURL
from roan.tags import index as tag_index

pytestmark = pytest.mark.django_db(transaction=True)

URL_ONLY = {
    "pages": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": "http://127.0.0.1:9/p"}
}


@pytest.fixture
def shared(settings: Any, tmp_path: Path) -> Iterator[Any]:
    """Tags on, a backend that reads the index, and ROAN_CACHE a file cache (shared by
    every process on the machine, as Redis or memcached would be)."""
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = URL_ONLY
    settings.CACHES = {
        **settings.CACHES,
        "roan": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "roan-cache"),
        },
    }
    settings.ROAN_CACHE = "roan"
    shared_cache.outage.since = None
    assert tag_index.notes_kept()
    yield settings
    caches["roan"].clear()


def remember(path: str, *tags: str, max_age: int = 300) -> tuple[bool, int]:
    """Index ``path`` as the middleware does; (the answer, statements run)."""
    request = RequestFactory().get(path, HTTP_HOST="127.0.0.1")
    response = HttpResponse("page")
    response["Cache-Control"] = f"public, max-age={max_age}"
    with CaptureQueriesContext(connection) as queries:
        answer = tag_index.remember(request, response, frozenset(tags))
    return answer, len(queries)


def test_a_miss_of_a_page_indexed_with_the_same_tags_runs_no_statement(shared: Any) -> None:
    assert remember("/n/list/?page=2", "testapp.post", "testapp.post:1")[1] > 0
    assert remember("/n/list/?page=2", "testapp.post:1", "testapp.post") == (True, 0)
    # The rows outlive the copy by half its lifetime, so that later misses skip too.
    expires = set(TaggedURL.objects.values_list("expires_at", flat=True))
    assert len(expires) == 1
    left = (expires.pop() - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert 300 + 60 + 150 - 5 < left <= 300 + 60 + 150


def test_other_tags_or_a_longer_lifetime_are_written(shared: Any) -> None:
    remember("/n/detail/", "testapp.post:1")
    assert remember("/n/detail/", "testapp.post:1", "testapp.author:2")[1] > 0
    assert set(TaggedURL.objects.values_list("tag", flat=True)) == {
        "testapp.post:1",
        "testapp.author:2",
    }
    # A copy that lives past the rows' expiry needs them refreshed.
    assert remember("/n/detail/", "testapp.post:1", "testapp.author:2", max_age=3600)[1] > 0
    assert remember("/n/detail/", "testapp.post:1", "testapp.author:2", max_age=3600)[1] == 0


def test_rows_forgotten_by_roan_prune_are_written_again_at_the_next_miss(shared: Any) -> None:
    for n in range(3):
        remember(f"/n/evict/{n}/", "testapp.post")
    shared.ROAN_TAG_INDEX_MAX_URLS_PER_TAG = 1
    call_command("roan_prune", days=30, stdout=StringIO())
    assert TaggedURL.objects.count() == 1
    shared.ROAN_TAG_INDEX_MAX_URLS_PER_TAG = None
    for n in range(3):
        remember(f"/n/evict/{n}/", "testapp.post")
    assert TaggedURL.objects.count() == 3

    shared.ROAN_TAG_INDEX_MAX_ROWS = 1
    call_command("roan_prune", days=30, stdout=StringIO())
    assert TaggedURL.objects.count() == 1
    shared.ROAN_TAG_INDEX_MAX_ROWS = None
    for n in range(3):
        remember(f"/n/evict/{n}/", "testapp.post")
    assert TaggedURL.objects.count() == 3


def test_without_a_shared_cache_every_miss_writes(settings: Any) -> None:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = URL_ONLY
    # The suite's default cache is a LocMemCache: each process would keep its own notes,
    # and roan_prune (another process) could not drop them.
    assert not tag_index.notes_kept()
    remember("/n/local/", "testapp.post")
    assert remember("/n/local/", "testapp.post")[1] > 0


def test_a_cache_that_fails_costs_a_write_not_a_page(shared: Any, monkeypatch: Any) -> None:
    remember("/n/down/", "testapp.post")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache down")

    monkeypatch.setattr(type(caches["roan"]), "get", broken)
    assert remember("/n/down/", "testapp.post")[0] is True
    assert shared_cache.outage.down()
    assert not tag_index.notes_kept()
    shared_cache.outage.since = None


def test_forgetting_rows_with_the_shared_cache_down_keeps_them(
    shared: Any, monkeypatch: Any
) -> None:
    remember("/n/keep/", "testapp.post")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache down")

    monkeypatch.setattr(type(caches["roan"]), "delete_many", broken)
    with pytest.raises(ConnectionError):
        tag_index.forget([tag_index.url_key("127.0.0.1", "/n/keep/")])
    assert TaggedURL.objects.count() == 1


def test_roan_prune_keeps_the_rows_while_the_shared_cache_is_down(
    shared: Any, monkeypatch: Any
) -> None:
    for n in range(3):
        remember(f"/n/down-prune/{n}/", "testapp.post")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache down")

    monkeypatch.setattr(type(caches["roan"]), "delete_many", broken)
    shared.ROAN_TAG_INDEX_MAX_URLS_PER_TAG = 1
    shared.ROAN_TAG_INDEX_MAX_ROWS = 1
    out = StringIO()
    call_command("roan_prune", days=30, stdout=out)  # the attempts are pruned as usual
    assert "deleted 0 attempt(s)" in out.getvalue()
    assert TaggedURL.objects.count() == 3
