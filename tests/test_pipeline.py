"""The after-commit pipeline: collect per transaction, write pending rows, send, record."""

from __future__ import annotations

import datetime

import pytest
from django.core.management import call_command
from django.db import DatabaseError, transaction
from django.utils import timezone

import roan
from roan.backends import locmem
from roan.backends.base import PurgeRequest
from roan.models import PurgeAttempt
from roan.outbox.sender import send
from tests.testapp.models import Author, Post, Tag

pytestmark = pytest.mark.django_db(transaction=True)


def sent_targets() -> list[str]:
    return [request.target for _node, request in locmem.outbox]


def test_purges_are_sent_only_after_commit(post_rule, outbox) -> None:
    with transaction.atomic():
        Post.objects.create(title="One", slug="one")
        assert outbox == []
        pending = PurgeAttempt.objects.get(target="/posts/one/")
        assert pending.status == "pending"
    assert sorted(sent_targets()) == ["/posts/", "/posts/one/"]
    attempt = PurgeAttempt.objects.get(target="/posts/one/")
    assert attempt.status == "ok"
    assert attempt.trigger == "save"
    assert attempt.rule_name == "posts"
    assert attempt.object_repr == "One"
    assert attempt.tries == 1


def test_a_rolled_back_transaction_sends_nothing_and_leaves_no_row(post_rule, outbox) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Post.objects.create(title="One", slug="one")
        raise RuntimeError("editor cancelled")
    assert outbox == []
    assert not PurgeAttempt.objects.exists()


def test_a_rolled_back_savepoint_keeps_the_outer_purges(post_rule, outbox) -> None:
    with transaction.atomic():
        Post.objects.create(title="Kept", slug="kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            Post.objects.create(title="Gone", slug="gone")
            raise RuntimeError
        Post.objects.create(title="Later", slug="later")
    assert sorted(set(sent_targets())) == ["/posts/", "/posts/kept/", "/posts/later/"]
    assert not PurgeAttempt.objects.filter(target="/posts/gone/").exists()


def test_ten_thousand_saves_in_one_transaction_purge_each_url_once(post_rule, outbox) -> None:
    posts = Post.objects.bulk_create(Post(title=f"P{i}", slug=f"p{i}") for i in range(100))
    outbox.clear()
    with transaction.atomic():
        for round_ in range(100):
            for post in posts:
                post.views = round_
                post.save()
    targets = sent_targets()
    assert targets.count("/posts/") == 1
    assert len(targets) == 101
    assert len(set(targets)) == 101
    assert PurgeAttempt.objects.count() == 101


def test_a_transaction_of_more_attempts_than_one_claim_takes_is_sent_whole(
    make_rule, outbox
) -> None:
    make_rule("many", "/many/{slug}/")
    with transaction.atomic():
        for i in range(1500):
            Post.objects.create(title="T", slug=f"m{i}")
    assert len(set(sent_targets())) == 1500
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}


def test_twins_from_several_transactions_are_sent_once_and_each_row_records_it(
    outbox,
) -> None:
    row = {"backend": "default", "node": "default", "target": "/a/", "trigger": "api"}
    # Each request is a row of its own: nothing is merged in the writer's transaction.
    ids = [*PurgeAttempt.objects.write([row]), *PurgeAttempt.objects.write([row])]
    other = PurgeAttempt.objects.write([{**row, "target": "/b/"}])
    assert len(set(ids)) == 2
    # A send for one of them takes its due twin along: one purge, both rows recorded.
    send(ids[:1])
    assert sorted(sent_targets()) == ["/a/"]
    rows = {a.pk: a for a in PurgeAttempt.objects.filter(pk__in=ids)}
    assert {(a.status, a.tries, a.claimed_until) for a in rows.values()} == {("ok", 1, None)}
    assert sorted(a.coalesced for a in rows.values()) == [0, 1]
    assert PurgeAttempt.objects.get(pk=other[0]).status == "pending"


def test_a_backlog_sent_in_claimed_ahead_halves_sends_each_purge_once(outbox) -> None:
    from roan.outbox.sender import send_ids

    row = {"backend": "default", "node": "default", "trigger": "api"}
    targets = [f"/t/{i}/" for i in range(750)]
    # Each target twice, the twins far apart: one batch of 1,000 holds both copies of a
    # third of them, the claim takes the rest as twins, and the batch goes in halves.
    ids = PurgeAttempt.objects.write([{**row, "target": t} for t in targets * 2])
    send_ids(ids, batch=1000)
    assert sorted(sent_targets()) == sorted(targets)
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}


@pytest.mark.parametrize("answer", [200, 404], ids=["ok", "not-cached"])
def test_a_batch_costs_the_same_statements_whatever_its_size(
    outbox, settings, django_assert_max_num_queries, answer
) -> None:
    """Nothing the sender reads of a claimed attempt may be a deferred column (a query
    per row): a batch of 300 costs what a batch of 3 does."""
    from roan.outbox import key_misses

    # Its once-per-interval count must fall in the warm-up round, not by the clock later;
    # so must what is read again every ROAN_RULES_TTL (the pause switches: a slow round
    # on a busy machine outlasted the default second).
    key_misses.reset()
    settings.ROAN_RULES_TTL = 600
    settings.ROAN_BACKENDS = {"default": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    if answer != 200:
        settings.ROAN_BACKENDS["default"]["FAIL"] = answer
    row = {"backend": "default", "node": "default", "trigger": "save", "rule_name": "tag x"}
    counts = []
    for size in (1, 3, 300):  # the first warms what is read once per process or TTL
        ids = PurgeAttempt.objects.write([{**row, "target": f"/{size}/{i}/"} for i in range(size)])
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            send(ids)
        counts.append(len(queries))
    assert counts[2] == counts[1], counts
    assert PurgeAttempt.objects.filter(status="pending").count() == 0


def test_a_drain_sends_a_backlog_of_one_posts_saves_once_per_target(
    post_rule, outbox, settings
) -> None:
    settings.ROAN_DISPATCH = "task"  # no worker: the rows wait
    post = Post.objects.create(title="One", slug="one")
    for i in range(200):
        post.title = f"One {i}"
        post.save()
    assert PurgeAttempt.objects.filter(status="pending").count() == 402
    send(None, limit=100)  # a drain's batch is smaller than the backlog
    assert sorted(sent_targets()) == ["/posts/", "/posts/one/"]
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}
    assert sorted(
        PurgeAttempt.objects.filter(coalesced__gt=0).values_list("coalesced", flat=True)
    ) == [
        200,
        200,
    ]


def test_a_slug_change_purges_the_old_and_the_new_url(post_rule, outbox) -> None:
    post = Post.objects.create(title="T", slug="old")
    outbox.clear()
    post.slug = "new"
    post.save()
    assert sorted(sent_targets()) == ["/posts/", "/posts/new/", "/posts/old/"]


def test_a_delete_purges_the_urls_the_row_had(post_rule, outbox) -> None:
    post = Post.objects.create(title="T", slug="gone")
    outbox.clear()
    post.delete()
    assert sorted(sent_targets()) == ["/posts/", "/posts/gone/"]
    assert PurgeAttempt.objects.filter(trigger="delete").count() == 2


def test_queryset_delete_purges_every_row(post_rule, outbox) -> None:
    Post.objects.create(title="A", slug="a")
    Post.objects.create(title="B", slug="b")
    outbox.clear()
    Post.objects.all().delete()
    assert sorted(sent_targets()) == ["/posts/", "/posts/a/", "/posts/b/"]


@pytest.fixture
def tag_rule(make_rule):
    return make_rule("post tags", "/tags/{tags.slug}/", on_save=True, on_m2m=False)


def test_m2m_add_remove_and_clear_fire_rules_that_use_the_relation(tag_rule, outbox) -> None:
    post = Post.objects.create(title="T", slug="t")
    x, y = Tag.objects.create(slug="x"), Tag.objects.create(slug="y")
    outbox.clear()
    post.tags.add(x)
    assert sent_targets() == ["/tags/x/"]
    outbox.clear()
    post.tags.add(y)
    assert sorted(sent_targets()) == ["/tags/x/", "/tags/y/"]
    outbox.clear()
    post.tags.remove(x)
    assert sorted(sent_targets()) == ["/tags/x/", "/tags/y/"]
    outbox.clear()
    post.tags.clear()
    assert sent_targets() == ["/tags/y/"]
    assert set(PurgeAttempt.objects.values_list("trigger", flat=True)) >= {"m2m"}


def test_m2m_changes_from_the_other_side_fire_too(tag_rule, outbox) -> None:
    post = Post.objects.create(title="T", slug="t")
    x = Tag.objects.create(slug="x")
    outbox.clear()
    x.posts.add(post)
    assert sent_targets() == ["/tags/x/"]


def test_m2m_event_rules_fire_on_any_relation_change(make_rule, outbox) -> None:
    make_rule("post page", "/posts/{slug}/", on_save=False, on_m2m=True)
    post = Post.objects.create(title="T", slug="t")
    assert outbox == []
    post.tags.add(Tag.objects.create(slug="x"))
    assert sent_targets() == ["/posts/t/"]


def test_related_fields_render_through_foreign_keys(make_rule, outbox) -> None:
    make_rule("author page", "/authors/{author.username}/")
    ann, bob = Author.objects.create(username="ann"), Author.objects.create(username="bob")
    post = Post.objects.create(title="T", slug="t", author=ann)
    outbox.clear()
    post.author = bob
    post.save()
    assert sorted(sent_targets()) == ["/authors/ann/", "/authors/bob/"]


def test_loaddata_purges_nothing(post_rule, outbox, tmp_path) -> None:
    fixture = tmp_path / "posts.json"
    fixture.write_text(
        '[{"model": "testapp.post", "pk": 50, "fields": {"title": "F", "slug": "f", "body": ""}}]'
    )
    call_command("loaddata", str(fixture), verbosity=0)
    assert Post.objects.filter(slug="f").exists()
    assert outbox == []
    assert not PurgeAttempt.objects.exists()


def test_suppress_purges_switches_purging_off_for_a_block(post_rule, outbox) -> None:
    with roan.suppress_purges():
        Post.objects.create(title="Quiet", slug="quiet")
    assert outbox == []
    Post.objects.create(title="Loud", slug="loud")
    assert "/posts/loud/" in sent_targets()


def test_roan_enabled_false_switches_everything_off(post_rule, outbox, settings) -> None:
    settings.ROAN_ENABLED = False
    Post.objects.create(title="Quiet", slug="quiet")
    assert outbox == []
    assert not PurgeAttempt.objects.exists()


def test_max_urls_per_event_records_the_excess_as_skipped(make_rule, outbox, settings) -> None:
    settings.ROAN_MAX_URLS_PER_EVENT = 2
    make_rule("many", "/a/{slug}/\n/b/{slug}/\n/c/{slug}/")
    Post.objects.create(title="T", slug="t")
    assert len(outbox) == 2
    skipped = PurgeAttempt.objects.get(status="skipped")
    assert skipped.target == "/c/t/"
    assert "ROAN_MAX_URLS_PER_EVENT (2)" in skipped.error


def test_a_rule_naming_a_backend_that_was_removed_is_recorded_as_skipped(
    make_rule, outbox, settings
) -> None:
    make_rule("elsewhere", "/posts/", backends=["default"])
    settings.ROAN_BACKENDS = {"other": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    Post.objects.create(title="T", slug="t")
    row = PurgeAttempt.objects.get()
    assert row.status == "skipped"
    assert "No backend 'default' in ROAN_BACKENDS" in row.error
    assert outbox == []


def test_disabled_rules_do_not_fire(post_rule, outbox) -> None:
    post_rule.enabled = False
    post_rule.save()
    Post.objects.create(title="T", slug="t")
    assert outbox == []


def test_a_failing_backend_marks_the_row_failed_with_a_retry_time(post_rule, settings) -> None:
    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend", "FAIL": 503}
    }
    Post.objects.create(title="T", slug="t")
    rows = PurgeAttempt.objects.filter(target="/posts/t/")
    row = rows.get()
    assert row.status == "failed"
    assert row.http_status == 503
    assert row.next_attempt_at is not None and row.next_attempt_at > row.created_at
    assert row.error


def test_code_rules_and_database_rules_both_fire(post_rule, outbox) -> None:
    roan.purge("/from-code/").on_save(Post)
    Post.objects.create(title="T", slug="t")
    assert sorted(sent_targets()) == ["/from-code/", "/posts/", "/posts/t/"]
    assert PurgeAttempt.objects.get(target="/from-code/").trigger == "code_rule"


def test_purge_object_renders_every_rule_of_the_model(post_rule, outbox) -> None:
    post = Post.objects.create(title="T", slug="t")
    outbox.clear()
    with transaction.atomic():
        written = roan.purge_object(post)
    assert written == 2
    assert sorted(sent_targets()) == ["/posts/", "/posts/t/"]
    assert set(PurgeAttempt.objects.filter(trigger="api").values_list("target", flat=True)) == {
        "/posts/",
        "/posts/t/",
    }


def test_a_url_that_cannot_be_rendered_is_recorded_as_skipped_with_why(
    make_rule, outbox, monkeypatch
) -> None:
    make_rule("own url", "{get_absolute_url}\n/posts/")
    monkeypatch.setattr(Post, "get_absolute_url", lambda self: "https://elsewhere.example/x")
    Post.objects.create(title="T", slug="t")
    assert sent_targets() == ["/posts/"]
    skipped = PurgeAttempt.objects.get(status="skipped")
    assert skipped.target == "{get_absolute_url}"
    assert "not a path on the site" in skipped.error


def test_an_object_url_rule_purges_the_old_url_after_a_slug_change(make_rule, outbox) -> None:
    make_rule("own url", "{get_absolute_url}")
    post = Post.objects.create(title="T", slug="before")
    outbox.clear()
    post.slug = "after"
    post.save()
    assert sorted(sent_targets()) == ["/posts/after/", "/posts/before/"]


def test_a_save_that_changes_no_url_field_purges_the_current_urls(post_rule, outbox) -> None:
    post = Post.objects.get(pk=Post.objects.create(title="T", slug="same").pk)
    outbox.clear()
    post.title = "New title"
    post.save()
    assert sorted(sent_targets()) == ["/posts/", "/posts/same/"]


class TrustingBackend(locmem.LocMemBackend):
    """A custom backend whose ``refuse()`` forgets to ask ``super()``."""

    def refuse(self, request: PurgeRequest) -> str:
        return ""


def test_a_target_longer_than_its_column_is_recorded_skipped_never_shortened(
    outbox, settings
) -> None:
    settings.ROAN_BACKENDS = {"trusting": {"BACKEND": f"{__name__}.TrustingBackend"}}
    # Typed URLs are refused where they enter (roan.purge_urls); a rule's rendering or a
    # project's own code can still hand the pipeline a long one.
    from roan.outbox.pipeline import submit
    from roan.purges import Cause, Purge

    long_path = "/" + "a" * 3000
    origin = Cause(trigger="api")
    submit(Purge("trusting", PurgeRequest("url", path), origin) for path in (long_path, "/short/"))
    assert [request.target for _node, request in outbox] == ["/short/"]
    skipped = PurgeAttempt.objects.get(status="skipped")
    assert "longer than 2048 characters" in skipped.error
    assert skipped.target == long_path[:2048]


def test_a_save_sends_its_own_rows_and_leaves_an_older_request_to_the_drain(
    post_rule, outbox
) -> None:
    # A request written earlier and not sent yet (a paused moment, a crashed worker).
    row = {"backend": "default", "node": "default", "target": "/posts/", "trigger": "api"}
    (earlier,) = PurgeAttempt.objects.write([row])
    Post.objects.create(title="One", slug="one")  # autocommit: written, claimed and sent
    assert sorted(sent_targets()) == ["/posts/", "/posts/one/"]
    # The save neither read nor wrote the older row: no row of another transaction can
    # make a save wait. The drain sends it.
    older = PurgeAttempt.objects.get(pk=earlier)
    assert (older.status, older.tries, older.claimed_until) == ("pending", 0, None)
    call_command("roan_dispatch")
    older.refresh_from_db()
    assert (older.status, older.tries) == ("ok", 1)
    assert PurgeAttempt.objects.count() == 3


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "atomic"])
def test_a_save_whose_process_dies_before_the_send_loses_nothing(
    post_rule, outbox, monkeypatch, in_transaction: bool
) -> None:
    from roan.outbox import pipeline, sender

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # the process stops between the commit and the send

    # Claimed as written (autocommit; a transaction on PostgreSQL and SQLite) or by a
    # claim after the commit (a transaction on MySQL and MariaDB).
    monkeypatch.setattr(pipeline, "send_claimed", die)
    monkeypatch.setattr(sender, "send_claimed", die)
    with pytest.raises(KeyboardInterrupt):
        if in_transaction:
            with transaction.atomic():
                Post.objects.create(title="One", slug="one")
        else:
            Post.objects.create(title="One", slug="one")
    monkeypatch.undo()
    rows = PurgeAttempt.objects.all()
    assert {(a.target, a.status) for a in rows} == {
        ("/posts/", "pending"),
        ("/posts/one/", "pending"),
    }
    # Committed under this process's lease: no other sender takes them meanwhile...
    assert all(a.claimed_until is not None for a in rows)
    call_command("roan_dispatch")
    assert outbox == []
    # ... and once the lease has run out, roan_dispatch sends them.
    PurgeAttempt.objects.update(claimed_until=timezone.now() - datetime.timedelta(seconds=1))
    call_command("roan_dispatch")
    assert sorted(sent_targets()) == ["/posts/", "/posts/one/"]
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}


def test_an_autocommit_save_whose_claim_fails_still_writes_and_sends_its_rows(
    post_rule, outbox, monkeypatch
) -> None:
    from roan.managers import PurgeAttemptManager

    def broken(*args, **kwargs):
        raise DatabaseError("claim failed")

    monkeypatch.setattr(PurgeAttemptManager, "write_claimed", broken)
    Post.objects.create(title="One", slug="one")
    assert sorted(sent_targets()) == ["/posts/", "/posts/one/"]
    assert sorted(PurgeAttempt.objects.values_list("target", "status")) == [
        ("/posts/", "ok"),
        ("/posts/one/", "ok"),
    ]


def test_an_autocommit_save_leaves_a_paused_backends_rows_pending(
    post_rule, outbox, settings
) -> None:
    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend", "PAUSED": True}
    }
    Post.objects.create(title="One", slug="one")
    assert outbox == []
    rows = PurgeAttempt.objects.all()
    assert {(a.status, a.claimed_until) for a in rows} == {("pending", None)}


def test_an_editors_transaction_commits_its_rows_claimed_and_sends_them(post_rule, outbox) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    committed: list[int] = []
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        # Runs first of the commit hooks: what comes after it is after the commit.
        transaction.on_commit(lambda: committed.append(len(queries.captured_queries)))
        Post.objects.create(title="One", slug="one")
        # Written claimed for this process: nobody else takes them between the commit
        # and the send, and no claim follows the commit.
        rows = PurgeAttempt.objects.all()
        assert {(a.status, a.claimed_until is not None) for a in rows} == {("pending", True)}
    assert sorted(sent_targets()) == ["/posts/", "/posts/one/"]
    assert {(a.status, a.tries, a.claimed_until) for a in PurgeAttempt.objects.all()} == {
        ("ok", 1, None)
    }
    after = [
        q["sql"]
        for q in queries.captured_queries[committed[0] :]
        if "roan_purgeattempt" in q["sql"]
    ]
    # After the editor's commit, no claim: the outcomes only.
    assert after and all(
        "roan_purgeattempt` SET `status`" in sql.replace('"', "`") for sql in after
    )


def test_a_transaction_that_outlasts_half_the_lease_renews_it_before_sending(
    post_rule, outbox, settings
) -> None:
    import time

    settings.ROAN_RETRY = {"LEASE": 0.6}
    with transaction.atomic():
        Post.objects.create(title="One", slug="one")
        # Another sender took one row once its lease had run out (as roan_dispatch would).
        taken = PurgeAttempt.objects.get(target="/posts/one/")
        PurgeAttempt.objects.filter(pk=taken.pk).update(
            claimed_until=timezone.now() + datetime.timedelta(hours=1)
        )
        time.sleep(0.4)  # past half the lease
    # The row still under this process's lease was leased again and sent; the one the
    # other sender holds is left to it, not sent twice.
    assert sent_targets() == ["/posts/"]
    kept = PurgeAttempt.objects.get(target="/posts/")
    assert (kept.status, kept.tries, kept.claimed_until) == ("ok", 1, None)
    left = PurgeAttempt.objects.get(pk=taken.pk)
    assert (left.status, left.tries) == ("pending", 0)
    assert left.claimed_until > timezone.now() + datetime.timedelta(minutes=50)


def test_only_the_first_writes_of_a_big_transaction_are_claimed_in_it(make_rule, outbox) -> None:

    from roan.outbox import pipeline

    make_rule("many", "/many/{slug}/")
    with transaction.atomic():
        for i in range(pipeline._CLAIMING_WRITES + 5):
            Post.objects.create(title="T", slug=f"m{i}")
        claimed = PurgeAttempt.objects.filter(claimed_until__isnull=False).count()
        assert claimed == pipeline._CLAIMING_WRITES
    assert len(set(sent_targets())) == pipeline._CLAIMING_WRITES + 5
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}


def test_a_backend_paused_by_the_switch_keeps_a_transactions_rows_pending(
    post_rule, outbox
) -> None:
    from roan import pauses

    pauses.pause("default")
    with transaction.atomic():
        # The save does not read the switch (nothing cached it yet); the send does.
        Post.objects.create(title="One", slug="one")
    assert outbox == []
    rows = PurgeAttempt.objects.all()
    assert {(a.status, a.tries) for a in rows} == {("pending", 0)}
    # Pending and unclaimed again: later requests for the same purges queue beside them,
    # and resume() sends each purge once.
    assert {a.claimed_until for a in rows} == {None}
    Post.objects.filter(slug="one").update(title="Two")
    with transaction.atomic():
        Post.objects.get(slug="one").save()
    assert PurgeAttempt.objects.count() == 4
    assert pauses.resume("default") == 4
    assert sorted(sent_targets()) == ["/posts/", "/posts/one/"]
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}
