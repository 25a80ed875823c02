"""What send() writes on each attempt row, on every database alike (the batched outcome
update in PurgeAttempt.objects.record), and how a backlog's batches are claimed, sent and
recorded."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
from django.utils import timezone

from roan.models import PurgeAttempt
from roan.outbox.sender import send
from roan.outbox.sql.sqlite import SQLite
from tests.support.servers import ScriptedServer

pytestmark = pytest.mark.django_db

ANSWERS = {
    "/purge/ok": "200 OK",
    "/purge/gone": "404 Not Found",
    "/purge/busy": "503 Busy\r\nRetry-After: 600",
    "/purge/busy?last": "503 Busy",
    "/purge/no": "403 Forbidden",
}


@pytest.fixture
def cache() -> Iterator[ScriptedServer]:
    def answer(conn: int, n: int, path: str) -> bytes:
        return f"HTTP/1.1 {ANSWERS[path]}\r\nContent-Length: 0\r\n\r\n".encode()

    server = ScriptedServer(answer)
    yield server
    server.close()


def pending(server: ScriptedServer, target: str, tries: int = 0) -> int:
    [pk] = PurgeAttempt.objects.write(
        [
            {
                "backend": "nginx",
                "node": f"{server.url}/purge",
                "target": target,
                "trigger": "command",
                "tries": tries,
            }
        ]
    )
    return pk


def test_every_outcome_column_is_written(cache, settings) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": f"{cache.url}/purge"}
    }
    settings.ROAN_RETRY = {"MAX_ATTEMPTS": 3}
    ids = {
        "ok": pending(cache, "/ok"),
        "gone": pending(cache, "/gone"),
        "busy": pending(cache, "/busy"),
        "no": pending(cache, "/no"),
        "last": pending(cache, "/busy?last", tries=2),
    }
    # Another row, not asked for: it must stay as it was.
    other = pending(cache, "/other", tries=1)
    before = timezone.now()

    handled = send(list(ids.values()))

    assert len(handled) == 5
    rows = {name: PurgeAttempt.objects.get(pk=pk) for name, pk in ids.items()}
    assert {n: (r.status, r.http_status, r.tries) for n, r in rows.items()} == {
        "ok": ("ok", 200, 1),
        "gone": ("not_cached", 404, 1),
        "busy": ("failed", 503, 1),
        "no": ("gave_up", 403, 1),
        "last": ("gave_up", 503, 3),
    }
    for row in rows.values():
        assert row.claimed_until is None
        assert row.latency_ms is not None and row.latency_ms >= 0
        assert row.updated_at >= before
    assert rows["ok"].error == rows["gone"].error == ""
    assert "allow list" in rows["no"].error
    assert rows["last"].error == "HTTP 503 (gave up after 3 tries)"
    # Finished rows have a finish time and no next attempt; a failure is due again
    # no earlier than the cache's Retry-After.
    for name in ("ok", "gone", "no", "last"):
        assert rows[name].finished_at is not None and rows[name].finished_at >= before
        assert rows[name].next_attempt_at is None
    busy = rows["busy"]
    assert busy.finished_at is None
    assert busy.next_attempt_at is not None
    assert busy.next_attempt_at >= before + datetime.timedelta(seconds=600)
    untouched = PurgeAttempt.objects.get(pk=other)
    assert (untouched.status, untouched.tries, untouched.http_status) == ("pending", 1, None)


def test_claimed_rows_are_leased_in_the_database(settings) -> None:
    settings.ROAN_RETRY = {"LEASE": 120}
    rows = [
        {"backend": "b", "node": "n", "target": f"/{i}", "trigger": "command"} for i in range(700)
    ]
    ids = PurgeAttempt.objects.write(rows)
    before = timezone.now()

    claimed = PurgeAttempt.objects.claim(None, limit=600)

    assert [a.pk for a in claimed] == sorted(ids)[:600]
    leased = PurgeAttempt.objects.filter(claimed_until__isnull=False)
    assert set(leased.values_list("pk", flat=True)) == {a.pk for a in claimed}
    lease = leased.first().claimed_until
    assert lease >= before + datetime.timedelta(seconds=119)
    assert all(a.claimed_until == lease for a in claimed)
    # Another sender gets only what nobody holds.
    assert [a.pk for a in PurgeAttempt.objects.claim(None)] == sorted(ids)[600:]


def test_claimed_rows_are_model_instances_as_the_orm_builds_them(settings) -> None:
    from django.db.models.signals import post_init

    [pk] = PurgeAttempt.objects.write(
        [
            {
                "backend": "b",
                "node": "n",
                "target": "/x",
                "trigger": "command",
                "object_repr": "Post 7",
            }
        ]
    )
    seen: list[PurgeAttempt] = []

    def receiver(sender, instance, **kwargs) -> None:
        seen.append(instance)

    post_init.connect(receiver, sender=PurgeAttempt)
    try:
        [claimed] = PurgeAttempt.objects.claim([pk])
    finally:
        post_init.disconnect(receiver, sender=PurgeAttempt)
    assert seen == [claimed]  # post_init still reaches its receivers
    assert claimed._state.adding is False
    assert claimed._state.db == "default"
    assert (claimed.pk, claimed.target, claimed.status, claimed.tries) == (pk, "/x", "pending", 0)
    assert claimed.claimed_until is not None
    # A column the claim does not read (on PostgreSQL and SQLite) loads when asked for.
    assert claimed.object_repr == "Post 7"
    assert claimed == PurgeAttempt.objects.get(pk=pk)


@pytest.mark.django_db(transaction=True)
def test_a_backlog_sent_in_batches_claims_ahead_and_sends_each_attempt_once(
    cache, settings
) -> None:
    import threading

    from roan import pauses
    from roan.outbox.sender import send_ids

    settings.ROAN_BACKENDS = {
        "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": f"{cache.url}/purge"},
        "held": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": f"{cache.url}/purge"},
    }
    targets = ["/ok" if i % 2 else "/gone" for i in range(250)]
    rows = [
        {"backend": "nginx", "node": f"{cache.url}/purge", "target": f"{t}?{i}", "trigger": "api"}
        for i, t in enumerate(targets)
    ]
    ANSWERS.update({f"/purge{t}?{i}": ANSWERS[f"/purge{t}"] for i, t in enumerate(targets)})
    ids = PurgeAttempt.objects.write(rows)
    held = PurgeAttempt.objects.write(
        [{"backend": "held", "node": f"{cache.url}/purge", "target": "/ok", "trigger": "api"}]
    )
    pauses.pause("held")
    attempts = send_ids([*ids, *held], batch=100)  # three batches

    assert sorted(a.pk for a in attempts) == sorted(ids)
    # Each attempt reached the cache once, and its outcome is on its row.
    assert sorted(cache.answered) == sorted(f"/purge{t}?{i}" for i, t in enumerate(targets))
    statuses = dict(PurgeAttempt.objects.filter(pk__in=ids).values_list("target", "status"))
    assert statuses == {
        f"{t}?{i}": "ok" if t == "/ok" else "not_cached" for i, t in enumerate(targets)
    }
    assert not PurgeAttempt.objects.filter(pk__in=ids, claimed_until__isnull=False).exists()
    # The paused backend's row was left pending and unclaimed, for resume() to send.
    assert PurgeAttempt.objects.filter(pk__in=held, status="pending", claimed_until=None).count()
    pauses.resume("held")
    assert PurgeAttempt.objects.get(pk__in=held).status == "ok"
    # The claiming and recording threads are gone (each closed its connection first).
    assert not [t for t in threading.enumerate() if t.name.startswith(("roan-claim", "roan-rec"))]


def test_with_a_pre_init_receiver_claimed_rows_are_built_by_the_orm(settings) -> None:
    from django.db.models.signals import pre_init

    [pk] = PurgeAttempt.objects.write(
        [{"backend": "b", "node": "n", "target": "/y", "trigger": "command"}]
    )
    seen: list[object] = []

    def receiver(sender, **kwargs) -> None:
        seen.append(sender)

    pre_init.connect(receiver, sender=PurgeAttempt)
    try:
        [claimed] = PurgeAttempt.objects.claim([pk])
    finally:
        pre_init.disconnect(receiver, sender=PurgeAttempt)
    assert seen == [PurgeAttempt]
    assert (claimed.pk, claimed.target, claimed._state.adding) == (pk, "/y", False)
    assert claimed.claimed_until is not None


@pytest.mark.parametrize(("journal", "during"), [("wal", 1), ("delete", 2)])
def test_on_sqlite_in_wal_mode_an_outcome_commit_does_not_wait_for_the_disk(
    tmp_path, journal: str, during: int
) -> None:
    """In WAL mode the outcome's commit runs with synchronous NORMAL (a power loss costs the
    last outcomes, sent again after the lease, never the file's consistency) and the
    connection is FULL again afterwards. In rollback-journal mode, where NORMAL could
    corrupt the file, nothing changes. (Its own SQLite database, on every test database.)"""
    from django.core.management import call_command
    from django.db import connections
    from django.db.utils import ConnectionHandler

    alias = f"roan_{journal}"
    spec = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "x.sqlite3")}
    handler = ConnectionHandler({"default": spec, alias: spec})
    wrapper = handler[alias]
    connections[alias] = wrapper
    try:
        raw_level = lambda: wrapper.connection.execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731
        wrapper.ensure_connection()
        wrapper.connection.execute(f"PRAGMA journal_mode = {journal}")
        wrapper.connection.execute("PRAGMA synchronous = FULL")
        call_command("migrate", database=alias, verbosity=0)
        row = {"backend": "default", "node": "default", "target": "/x/", "trigger": "save"}
        [claimed] = PurgeAttempt.objects.claim(
            PurgeAttempt.objects.write([row], using=alias), using=alias
        )
        claimed.status, claimed.http_status, claimed.tries = "ok", 200, 1
        claimed.claimed_until, claimed.finished_at = None, timezone.now()
        levels: list[int] = []

        def watch(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            if sql.startswith("UPDATE"):
                levels.append(raw_level())
            return result

        with wrapper.execute_wrapper(watch):
            PurgeAttempt.objects.record([claimed], using=alias)
        assert levels == [during]
        assert raw_level() == 2  # FULL again
        assert PurgeAttempt.objects.using(alias).get().status == "ok"
    finally:
        wrapper.close()
        del connections[alias]


@pytest.mark.django_db(transaction=True)
def test_a_sender_that_records_slower_than_it_sends_has_one_batch_unrecorded_at_most(
    settings, monkeypatch
) -> None:
    """The outcomes of one half of a batch are written while the other half is sent; a
    process killed at any moment has sent at most one batch that no row says was sent."""
    import threading
    import time

    from roan.backends.locmem import LocMemBackend
    from roan.outbox import sender
    from roan.outbox.sender import send_ids

    settings.ROAN_BACKENDS = {"mem": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    ids = PurgeAttempt.objects.write(
        [{"backend": "mem", "node": "default", "target": f"/s/{i}", "trigger": "api"}
         for i in range(200)]
    )  # fmt: skip
    sent: set[int] = set()
    recorded: set[int] = set()
    unrecorded_at_send: list[int] = []
    recording_threads: set[str] = set()
    record, purge = sender._record, LocMemBackend.purge

    def slow_record(attempts, results, *, using):
        time.sleep(0.05)  # slower than sending a half batch
        record(attempts, results, using=using)
        recording_threads.add(threading.current_thread().name)
        recorded.update(a.pk for a in attempts)  # committed: on its row now

    def watched_purge(self, node, requests):
        sent.update(r.attempt for r in requests)
        unrecorded_at_send.append(len(sent - recorded))
        return purge(self, node, requests)

    monkeypatch.setattr(sender, "_record", slow_record)
    monkeypatch.setattr(LocMemBackend, "purge", watched_purge)
    attempts = send_ids(ids, batch=40)

    assert len(attempts) == 200
    assert set(PurgeAttempt.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"ok"}
    # Sent in halves of 20, each recorded on another thread while the next went out...
    assert len(unrecorded_at_send) == 10
    assert not any(name == threading.main_thread().name for name in recording_threads)
    assert max(unrecorded_at_send) > 20
    # ... and never more than one batch sent and not yet on its rows.
    assert max(unrecorded_at_send) <= 40


@pytest.mark.parametrize("sqlite", ["as it is", "few parameters a statement", "before 3.33"])
def test_a_batch_of_outcomes_that_differ_row_by_row_lands_on_each_row(sqlite, monkeypatch) -> None:
    """record() writes a batch in few statements (grouped by their shared outcome, the
    latency and the next attempt per row): every row still gets exactly its own. On
    SQLite also when a statement binds few parameters (a group split over statements),
    and on a SQLite without ``UPDATE ... FROM`` (a statement per row); the other
    databases run it as it is, thrice."""
    if sqlite == "few parameters a statement":
        monkeypatch.setattr(SQLite, "parameter_limit", lambda self, connection: 40)
    elif sqlite == "before 3.33":
        monkeypatch.setattr(SQLite, "updates_from", False)
    ids = PurgeAttempt.objects.write(
        [{"backend": "b", "node": "n", "target": f"/r/{i}", "trigger": "api"} for i in range(301)]
    )
    *mine, other = PurgeAttempt.objects.claim(ids)
    now = timezone.now().replace(microsecond=123456)
    expected = {}
    for i, attempt in enumerate(mine):
        failed = i % 3 == 0
        attempt.status = "failed" if failed else "ok"
        attempt.http_status = 503 if failed else 200
        attempt.latency_ms = None if i % 7 == 0 else i * 0.25
        attempt.error = f"HTTP 503 ({i % 2})" if failed else ""
        attempt.tries = 1 + i % 2
        attempt.claimed_until = None
        attempt.updated_at = now
        attempt.next_attempt_at = now + datetime.timedelta(seconds=i) if failed else None
        attempt.finished_at = None if failed else now
        expected[attempt.pk] = (
            attempt.status, attempt.http_status, attempt.latency_ms, attempt.error,
            attempt.tries, attempt.next_attempt_at, attempt.finished_at,
        )  # fmt: skip

    PurgeAttempt.objects.record(mine)

    columns = ["status", "http_status", "latency_ms", "error", "tries"]
    found = {
        row[0]: row[1:]
        for row in PurgeAttempt.objects.filter(pk__in=expected).values_list(
            "pk", *columns, "next_attempt_at", "finished_at", "claimed_until"
        )
    }
    assert {pk: row[:-1] for pk, row in found.items()} == expected
    assert {row[-1] for row in found.values()} == {None}
    # The row claimed with them and not recorded keeps its lease and status.
    untouched = PurgeAttempt.objects.get(pk=other.pk)
    assert (untouched.status, untouched.claimed_until) == ("pending", other.claimed_until)
