"""The rule index: no query in the steady state, and edits reach other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from roan.models import PurgeRule
from roan.rules import index as rules
from roan.testing import capture_purges
from tests.testapp.models import Post

ROOT = Path(__file__).resolve().parent.parent


def test_a_steady_state_save_makes_no_query_to_find_its_rules(
    post_rule, settings, django_assert_num_queries
) -> None:
    settings.ROAN_RULES_TTL = 60
    post = Post.objects.create(title="T", slug="t")
    with capture_purges():
        post.save()  # warms the index
        # The UPDATE alone: the rules are in memory and the URLs the post had come from
        # the values it was loaded with.
        with django_assert_num_queries(1):
            post.save()


def test_a_post_loaded_from_the_database_renders_its_old_urls_without_a_query(
    post_rule, settings, django_assert_num_queries
) -> None:
    settings.ROAN_RULES_TTL = 60
    Post.objects.create(title="T", slug="old")
    post = Post.objects.get(slug="old")
    post.slug = "new"
    with capture_purges() as captured, django_assert_num_queries(1):
        post.save()
    assert captured.urls == ["/posts/", "/posts/old/", "/posts/new/"]


def test_a_post_with_an_explicit_pk_reads_the_row_for_its_old_urls(post_rule) -> None:
    existing = Post.objects.create(title="T", slug="old")
    with capture_purges() as captured:
        Post(pk=existing.pk, title="T", slug="new").save()
    assert sorted(captured.urls) == ["/posts/", "/posts/new/", "/posts/old/"]


def test_a_static_rule_costs_no_query_at_all(
    make_rule, settings, django_assert_num_queries
) -> None:
    settings.ROAN_RULES_TTL = 60
    make_rule("list", "/posts/")
    post = Post.objects.create(title="T", slug="t")
    with capture_purges() as captured:
        post.save()
        with django_assert_num_queries(1):
            post.save()
    assert captured.urls == ["/posts/"]


def test_rule_edits_through_the_orm_take_effect_in_this_process_at_once(
    post_rule, settings
) -> None:
    settings.ROAN_RULES_TTL = 3600
    post = Post.objects.create(title="T", slug="t")
    with capture_purges() as captured:
        post.save()
    assert captured.urls == ["/posts/", "/posts/t/"]
    PurgeRule.objects.filter(pk=post_rule.pk).update(templates="/changed/{slug}/")
    with capture_purges() as captured:
        post.save()
    assert captured.urls == ["/changed/t/"]


@pytest.mark.django_db
def test_a_broken_rule_is_reported_and_does_not_stop_the_others(post_rule) -> None:
    PurgeRule.objects.bulk_create(
        [
            PurgeRule(
                name="broken",
                content_type=ContentType.objects.get_for_model(Post),
                templates="/posts/{vanished_field}/",
            )
        ]
    )
    with capture_purges() as captured:
        Post.objects.create(title="T", slug="t")
    assert captured.urls == ["/posts/", "/posts/t/"]
    assert "vanished_field" in rules.get_index().broken["broken"]


@pytest.fixture
def probe(transactional_db: None) -> Iterator[Callable[[str], list[str]]]:
    """A second Django process on the same test database, saving posts on request."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ROAN_DB_NAME": str(connection.settings_dict["NAME"]),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.rule_probe"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"

    def ask(slug: str) -> list[str]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(slug + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]

    try:
        yield ask
    finally:
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()


def wait_for(ask: Callable[[str], list[str]], expected: list[str], seconds: float = 6.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if ask("t") == expected:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"the other process never purged {expected}, last {ask('t')}")


def _rule_through_admin(admin_client, post_rule: PurgeRule) -> None:
    response = admin_client.post(
        f"/admin/roan/purgerule/{post_rule.pk}/change/",
        {
            "name": post_rule.name,
            "content_type": post_rule.content_type_id,
            "templates": "/via-admin/{slug}/",
            "enabled": "on",
            "on_save": "on",
            "on_delete": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]


def _rule_through_update(admin_client, post_rule: PurgeRule) -> None:
    PurgeRule.objects.filter(pk=post_rule.pk).update(templates="/via-update/{slug}/")


def _rule_through_bulk_create(admin_client, post_rule: PurgeRule) -> None:
    PurgeRule.objects.bulk_create(
        [PurgeRule(name="bulk", content_type=post_rule.content_type, templates="/via-bulk/{slug}/")]
    )


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_rule_through_admin, ["/via-admin/t/"]),
        (_rule_through_update, ["/via-update/t/"]),
        (_rule_through_bulk_create, ["/posts/", "/posts/t/", "/via-bulk/t/"]),
    ],
    ids=["admin", "update", "bulk_create"],
)
def test_rule_edits_reach_another_process_without_a_restart(
    probe, post_rule, admin_client, edit, expected
) -> None:
    Post.objects.create(title="T", slug="t")
    assert probe("t") == ["/posts/", "/posts/t/"]
    edit(admin_client, post_rule)
    # The other process runs with the default ROAN_RULES_TTL of 1 s.
    assert wait_for(probe, expected) < 5
