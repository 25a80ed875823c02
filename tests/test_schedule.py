"""Purges scheduled by content (roan.outbox.schedule): a rule's ``schedule_fields``."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from roan.models import PurgeAttempt, PurgeRule
from roan.outbox.schedule import RESCHEDULED
from roan.rules import index as rules
from roan.testing import capture_purges
from tests.testapp.models import Event, Post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def event_rule(make_rule: Callable[..., PurgeRule]) -> PurgeRule:
    return make_rule(
        "events",
        "/events/\n/events/{slug}/",
        model=Event,
        schedule_fields="publish_at, expires_at",
    )


def scheduled() -> list[PurgeAttempt]:
    return list(
        PurgeAttempt.objects.filter(trigger="scheduled", status="pending").order_by(
            "next_attempt_at", "target"
        )
    )


def test_a_save_with_a_future_date_schedules_the_rules_urls_then(event_rule, outbox) -> None:
    at = timezone.now() + datetime.timedelta(hours=2)
    Event.objects.create(title="Launch", slug="launch", publish_at=at)
    # The save purged at once, as always ...
    assert sorted(r.target for _, r in outbox) == ["/events/", "/events/launch/"]
    # ... and wrote the same purges due at publish_at, not sent now.
    rows = scheduled()
    assert [(r.target, r.next_attempt_at) for r in rows] == [
        ("/events/", at),
        ("/events/launch/", at),
    ]
    assert {r.rule_name for r in rows} == {"events"}
    assert all(r.object_repr == "Launch" and r.tries == 0 for r in rows)
    call_command("roan_dispatch")
    assert len(scheduled()) == 2


def test_each_future_field_schedules_once_past_and_empty_ones_nothing(event_rule) -> None:
    now = timezone.now()
    publish, expire = now + datetime.timedelta(hours=1), now + datetime.timedelta(days=3)
    Event.objects.create(title="A", slug="a", publish_at=publish, expires_at=expire)
    assert sorted({r.next_attempt_at for r in scheduled()}) == [publish, expire]
    Event.objects.create(title="B", slug="b", publish_at=now - datetime.timedelta(hours=1))
    Event.objects.create(title="C", slug="c")
    same = now + datetime.timedelta(hours=5)
    Event.objects.create(title="D", slug="d", publish_at=same, expires_at=same)
    assert not PurgeAttempt.objects.filter(trigger="scheduled", object_pk__in=_pks("b", "c"))
    assert PurgeAttempt.objects.filter(trigger="scheduled", object_pk=_pks("d")[0]).count() == 2


def _pks(*slugs: str) -> list[str]:
    return [str(pk) for pk in Event.objects.filter(slug__in=slugs).values_list("pk", flat=True)]


def test_editing_the_date_moves_the_scheduled_purge(event_rule) -> None:
    first = timezone.now() + datetime.timedelta(hours=1)
    event = Event.objects.create(title="E", slug="e", publish_at=first)
    later = first + datetime.timedelta(hours=3)
    event.publish_at = later
    event.save()
    assert {r.next_attempt_at for r in scheduled()} == {later}
    moved = PurgeAttempt.objects.filter(trigger="scheduled", status="skipped")
    assert {(r.next_attempt_at, r.error) for r in moved} == {(first, RESCHEDULED)}


def test_a_changed_slug_reschedules_the_new_url_and_drops_the_old(event_rule) -> None:
    at = timezone.now() + datetime.timedelta(hours=1)
    event = Event.objects.create(title="E", slug="old", publish_at=at)
    event.slug = "new"
    event.save()
    assert [r.target for r in scheduled()] == ["/events/", "/events/new/"]


def test_clearing_the_date_cancels_and_other_objects_keep_theirs(event_rule) -> None:
    at = timezone.now() + datetime.timedelta(hours=1)
    kept = Event.objects.create(title="K", slug="k", publish_at=at)
    event = Event.objects.create(title="E", slug="e", publish_at=at)
    event.publish_at = None
    event.save()
    # The list page /events/ stays scheduled for the other event.
    assert {(r.object_pk, r.target) for r in scheduled()} == {
        (str(kept.pk), "/events/"),
        (str(kept.pk), "/events/k/"),
    }


def test_a_date_past_the_horizon_is_logged_not_scheduled(event_rule, settings) -> None:
    settings.ROAN_SCHEDULE_HORIZON_DAYS = 30
    Event.objects.create(
        title="Far", slug="far", publish_at=timezone.now() + datetime.timedelta(days=31)
    )
    assert scheduled() == []
    (row,) = PurgeAttempt.objects.filter(trigger="scheduled")
    assert row.status == "skipped"
    assert "ROAN_SCHEDULE_HORIZON_DAYS (30)" in row.error


def test_due_scheduled_purges_are_sent_by_roan_dispatch(event_rule, outbox) -> None:
    at = timezone.now() + datetime.timedelta(seconds=1)
    Event.objects.create(title="Soon", slug="soon", publish_at=at)
    outbox.clear()
    time.sleep(max(0.0, (at - timezone.now()).total_seconds()) + 0.1)
    call_command("roan_dispatch")
    assert sorted(r.target for _, r in outbox) == ["/events/", "/events/soon/"]
    rows = PurgeAttempt.objects.filter(trigger="scheduled")
    assert {r.status for r in rows} == {"ok"}


def test_a_regular_purge_of_the_same_url_does_not_take_the_scheduled_one(
    event_rule, outbox
) -> None:
    at = timezone.now() + datetime.timedelta(hours=1)
    Event.objects.create(title="A", slug="a", publish_at=at)
    # Another event's save purges /events/ now; A's scheduled /events/ stays for later.
    Event.objects.create(title="B", slug="b")
    assert [r.target for r in scheduled()] == ["/events/", "/events/a/"]


def test_capture_purges_and_rules_without_schedule_write_nothing_scheduled(
    make_rule: Callable[..., PurgeRule], event_rule
) -> None:
    at = timezone.now() + datetime.timedelta(hours=1)
    with capture_purges():
        Event.objects.create(title="A", slug="a", publish_at=at)
    assert not PurgeAttempt.objects.exists()
    event_rule.schedule_fields = ""
    event_rule.save()
    rules.invalidate()
    Event.objects.create(title="B", slug="b", publish_at=at)
    assert scheduled() == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("title", "title is not a date and time field"),
        ("day", "day is not a date and time field"),
        ("nope", "nope is not a date and time field"),
        ("publish_at, expires_at, publish_at, expires_at, publish_at", "at most 4"),
    ],
)
def test_a_rule_names_only_datetime_fields_of_its_model(
    make_rule: Callable[..., Any], value: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        make_rule("bad", "/events/", model=Event, schedule_fields=value)
    assert message in " ".join(caught.value.message_dict["schedule_fields"])


def test_a_malformed_row_is_a_broken_rule_not_a_crash(event_rule, outbox) -> None:
    PurgeRule.objects.filter(pk=event_rule.pk).update(schedule_fields="title")
    rules.invalidate()
    Post.objects.create(title="P", slug="p")
    Event.objects.create(title="A", slug="a")
    assert "events" in rules.get_index().broken


def test_with_task_dispatch_the_worker_gets_a_send_deferred_to_the_due_time(
    event_rule, settings
) -> None:
    from django_tasks_db.models import DBTaskResult

    settings.ROAN_DISPATCH = "task"
    at = (timezone.now() + datetime.timedelta(hours=1)).replace(microsecond=0)
    Event.objects.create(title="A", slug="a", publish_at=at)
    ids = sorted(r.pk for r in scheduled())
    tasks = {tuple(sorted(t.args_kwargs["args"][0])): t for t in DBTaskResult.objects.all()}
    # The save's own purges went to a task to run now; the scheduled ones to one at `at`.
    assert tasks[tuple(ids)].run_after == at


def test_the_rule_form_takes_the_fields_and_names_a_wrong_one(admin_client) -> None:
    from django.contrib.contenttypes.models import ContentType

    form = {
        "name": "events",
        "content_type": ContentType.objects.get_for_model(Event).pk,
        "templates": "/events/",
        "enabled": "on",
        "on_save": "on",
        "schedule_fields": "publish_at, title",
    }
    response = admin_client.post("/admin/roan/purgerule/add/", form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["schedule_fields"]
    assert errors == ["title is not a date and time field of event."]
    response = admin_client.post(
        "/admin/roan/purgerule/add/", {**form, "schedule_fields": "publish_at, expires_at"}
    )
    assert response.status_code == 302
    assert PurgeRule.objects.get().schedule_names == ["publish_at", "expires_at"]
