"""The rule index survives a stamp cache outage, rolled-back rule writes, malformed rows
and big imports, and never raises into a save because of them."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import tablib
from django.contrib.contenttypes.models import ContentType
from django.core.cache import caches
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import transaction

from roan.models import PurgeAttempt, PurgeRule
from roan.resources import PurgeRuleResource
from roan.rules import index as rules
from roan.shared_cache import outage
from tests.support.caches import free_port, require
from tests.testapp.models import Post, Tag

HEADER = "name,model,templates,backends,on_save,on_delete,on_m2m,enabled,description\n"


def targets() -> list[str]:
    return sorted(PurgeAttempt.objects.values_list("target", flat=True))


# -- the stamp cache is down ----------------------------------------------------------------


class SilentServer:
    """A TCP server that accepts connections and never answers; counts the accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.accepts = 0
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _addr = self.sock.accept()
            except TimeoutError:
                continue
            self.accepts += 1
            self.held.append(conn)  # open, silent: the client waits for its timeout

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def redis_stamp_cache(settings: Any, port: int) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "stamp": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/9",
            "OPTIONS": {"socket_timeout": 0.2, "socket_connect_timeout": 0.2},
        },
    }
    settings.ROAN_CACHE = "stamp"
    settings.ROAN_RULES_TTL = 60
    assert rules.stamp_is_shared()


@pytest.mark.django_db(transaction=True)
def test_saves_go_on_when_the_stamp_cache_refuses_connections(make_rule, settings, outbox) -> None:
    redis_stamp_cache(settings, free_port())  # nothing listens there

    Tag.objects.create(slug="no-rules")  # a model without rules
    make_rule("posts", "/posts/{slug}/")  # the stamp bump after commit fails quietly
    for n in range(3):
        Post.objects.create(title="T", slug=f"p{n}")

    # The rules came from the database, the edit included.
    assert [r.target for _node, r in outbox] == ["/posts/p0/", "/posts/p1/", "/posts/p2/"]


@pytest.mark.django_db(transaction=True)
def test_a_stamp_cache_that_never_answers_costs_one_timeout_per_ttl(
    make_rule, settings, outbox, silent_server
) -> None:
    redis_stamp_cache(settings, silent_server.port)

    make_rule("posts", "/posts/{slug}/")  # bump: one connection, times out, not raised
    for n in range(20):
        Post.objects.create(title="T", slug=f"p{n}")
        Tag.objects.create(slug=f"t{n}")

    assert len(outbox) == 20
    # One read waited for its timeout; nothing asked the cache again within the TTL: not
    # the bump after the rule was written, not the stamp checks, not the pause list.
    assert silent_server.accepts == 1

    # Once the TTL has passed (pretended here), it is asked again, once.
    rules._registry._index.checked_at -= 120  # type: ignore[union-attr]
    outage.since -= 120  # type: ignore[operator]
    for n in range(5):
        Post.objects.create(title="T", slug=f"later{n}")
    assert silent_server.accepts == 2
    assert len(outbox) == 25


@pytest.mark.django_db(transaction=True)
def test_a_stamp_bump_the_cache_refused_is_made_when_it_answers_again(make_rule, settings) -> None:
    redis_stamp_cache(settings, free_port())
    make_rule("posts", "/posts/{slug}/")  # the bump fails, and is owed
    real = redis.Redis(host="127.0.0.1", port=6379, db=9)
    try:
        real.ping()
    except redis.RedisError:
        require("caches", "no Redis at 127.0.0.1:6379")
    prefix = f"roan-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        **settings.CACHES,
        "stamp": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/9",
            "KEY_PREFIX": prefix,
        },
    }
    cache = caches["stamp"]
    try:
        cache.set(rules.STAMP_KEY, "stale", timeout=None)  # what other processes compare

        Post.objects.create(title="T", slug="t")

        assert cache.get(rules.STAMP_KEY) not in {None, "stale"}
    finally:
        cache.delete(rules.STAMP_KEY)


def test_a_redis_stamp_cache_without_a_socket_timeout_is_warned_about(settings) -> None:
    from roan.checks import check_rule_stamp_timeout

    redis_stamp_cache(settings, 6379)
    assert check_rule_stamp_timeout() == []
    settings.CACHES = {
        **settings.CACHES,
        "stamp": {**settings.CACHES["stamp"], "OPTIONS": {"socket_connect_timeout": 1}},
    }

    [warning] = check_rule_stamp_timeout()

    assert warning.id == "roan.W030"
    assert "'socket_timeout'" in warning.msg and "'socket_timeout'" in warning.hint


# -- rule writes that are rolled back -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_rule_never_fires_after_the_rollback(make_rule, settings, outbox) -> None:
    settings.ROAN_RULES_TTL = 60
    make_rule("kept", "/kept/{slug}/")
    Post.objects.create(title="T", slug="before")  # the process has an index
    with transaction.atomic():
        make_rule("unconfirmed", "/unconfirmed/{slug}/")
        Post.objects.create(title="T", slug="inside")
        # Inside the transaction, its own edit is seen.
        inside = targets()
        transaction.set_rollback(True)
    outbox.clear()

    Post.objects.create(title="T", slug="after")

    assert "/unconfirmed/inside/" in inside
    assert [r.target for _node, r in outbox] == ["/kept/after/"]
    assert not PurgeAttempt.objects.filter(rule_name="unconfirmed").exists()


@pytest.mark.django_db(transaction=True)
def test_a_rule_in_a_rolled_back_savepoint_is_forgotten_and_the_outer_one_kept(
    make_rule, settings, outbox
) -> None:
    settings.ROAN_RULES_TTL = 60
    with transaction.atomic():
        make_rule("outer", "/outer/{slug}/")
        with pytest.raises(RuntimeError), transaction.atomic():
            make_rule("inner", "/inner/{slug}/")
            Post.objects.create(title="T", slug="a")
            raise RuntimeError("row rejected")
        Post.objects.create(title="T", slug="b")
    Post.objects.create(title="T", slug="c")

    assert sorted(r.target for _node, r in outbox) == ["/outer/b/", "/outer/c/"]


@pytest.mark.django_db(transaction=True)
def test_an_import_dry_run_leaves_no_rule_behind(admin_client, settings, outbox) -> None:
    settings.ROAN_RULES_TTL = 60
    Post.objects.create(title="T", slug="warm")  # the process has an index
    preview = admin_client.post(
        "/admin/roan/purgerule/import/",
        {
            "import_file": SimpleUploadedFile(
                "rules.csv", (HEADER + "dry,testapp.post,/dry/{slug}/,,1,1,0,1,\n").encode()
            ),
            "format": "0",
            "resource": "0",
        },
    )
    assert "/dry/{slug}/" in preview.text and not PurgeRule.objects.exists()

    Post.objects.create(title="T", slug="after")  # no IntegrityError on a vanished rule

    assert outbox == []
    assert not PurgeAttempt.objects.exists()


# -- malformed rows -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_rule_loaded_with_malformed_fields_is_reported_broken(
    make_rule, settings, tmp_path: Path
) -> None:
    settings.ROAN_BACKENDS = {"edge": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    make_rule("good", "/good/{slug}/")

    def row(name: str, backends: object) -> dict[str, object]:
        fields = {
            "name": name,
            "content_type": ["testapp", "post"],
            "templates": "/x/",
            "backends": backends,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }
        return {"model": "roan.purgerule", "fields": fields}

    fixture = tmp_path / "rules.json"
    fixture.write_text(json.dumps([row("number", 5), row("text", "edge"), row("ints", [1])]))
    call_command("loaddata", str(fixture), verbosity=0)

    Post.objects.create(title="T", slug="t")  # does not raise

    assert targets() == ["/good/t/"]
    broken = rules.get_index().broken
    assert sorted(broken) == ["ints", "number", "text"]
    assert "backends must be a list of aliases, not '5'" in broken["number"]


# -- one invalidation per import ------------------------------------------------------------


@pytest.fixture
def count_loads(monkeypatch) -> Callable[[], int]:
    calls = []
    load = rules.load_index

    def counting(stamp: object) -> rules.RuleIndex:
        calls.append(stamp)
        return load(stamp)

    monkeypatch.setattr(rules, "load_index", counting)
    return lambda: len(calls)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("dry_run", [True, False])
def test_importing_fifty_rules_loads_the_index_a_constant_number_of_times(
    count_loads, settings, outbox, dry_run
) -> None:
    settings.ROAN_RULES_TTL = 60
    ContentType.objects.get_for_model(Post)
    lines = "".join(f"rule {n},testapp.post,/r{n}/{{slug}}/,,1,1,0,1,\n" for n in range(50))
    dataset = tablib.Dataset().load(HEADER + lines, format="csv")

    result = PurgeRuleResource().import_data(dataset, dry_run=dry_run)

    assert not result.has_errors() and not result.has_validation_errors()
    assert count_loads() <= 3
    Post.objects.create(title="T", slug="t")
    assert len(outbox) == (0 if dry_run else 50)
    assert count_loads() <= 4
