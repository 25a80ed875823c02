"""Who may do what: viewing, purging (roan.purge_now), purging everything (roan.purge_all)."""

from __future__ import annotations

from typing import Any

import pytest

from roan.models import PurgeAttempt
from tests.support.admin_helpers import VIEW, attempt, staff_client
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def viewer_client(django_user_model: Any) -> Any:
    return staff_client(django_user_model, "viewer", VIEW)


@pytest.fixture
def purger_client(django_user_model: Any) -> Any:
    return staff_client(django_user_model, "purger", [*VIEW, "roan.purge_now"])


@pytest.fixture
def purge_all_client(django_user_model: Any) -> Any:
    return staff_client(django_user_model, "operator", [*VIEW, "roan.purge_now", "roan.purge_all"])


@pytest.fixture
def world(post_rule):
    post = Post.objects.create(title="One", slug="one")
    PurgeAttempt.objects.all().delete()
    old = attempt(target="/old/", status="failed")
    return {"rule": post_rule, "post": post, "attempt": old}


def purge_urls(world):
    """Every purge URL: (method, path, data)."""
    rule, post = world["rule"], world["post"]
    return [
        ("get", "/admin/roan/purge/", {}),
        ("post", "/admin/roan/purge/", {"urls": "/x/", "kind": "url", "backends": ["default"]}),
        ("post", "/admin/roan/purge/all/", {"backend": "default", "confirm": "yes"}),
        ("post", f"/admin/roan/purgerule/{rule.pk}/preview/", {"object_id": str(post.pk)}),
        ("get", f"/admin/testapp/post/{post.pk}/purge-cache/", {}),
        ("post", f"/admin/testapp/post/{post.pk}/purge-cache/", {}),
    ]


def test_a_viewer_sees_rules_and_the_log_but_no_purge_controls(viewer_client, world) -> None:
    rules = viewer_client.get("/admin/roan/purgerule/")
    log = viewer_client.get("/admin/roan/purgeattempt/")
    rule = viewer_client.get(f"/admin/roan/purgerule/{world['rule'].pk}/change/")
    preview = viewer_client.get(
        f"/admin/roan/purgerule/{world['rule'].pk}/preview/?object_id={world['post'].pk}"
    )
    post = viewer_client.get(f"/admin/testapp/post/{world['post'].pk}/change/")
    posts = viewer_client.get("/admin/testapp/post/")

    assert [r.status_code for r in (rules, log, rule, preview, post, posts)] == [200] * 6
    assert "/old/" in log.text and "posts" in rules.text
    assert "/admin/roan/purge/" not in rules.text + log.text
    assert "purge_rules_now" not in rules.text and "repurge_selected" not in log.text
    assert "Send a test purge" not in preview.text
    assert "purge-cache" not in post.text and "purge_cache_for_selected" not in posts.text


def test_a_viewer_gets_403_from_every_purge_url_and_purges_nothing(
    viewer_client, world, outbox
) -> None:
    codes = [getattr(viewer_client, m)(url, data).status_code for m, url, data in purge_urls(world)]

    assert codes == [403] * len(codes)
    for action, url, pk in [
        ("purge_rules_now", "/admin/roan/purgerule/", world["rule"].pk),
        ("repurge_selected", "/admin/roan/purgeattempt/", world["attempt"].pk),
        ("purge_cache_for_selected", "/admin/testapp/post/", world["post"].pk),
    ]:
        viewer_client.post(url, {"action": action, "_selected_action": [pk], "post": "yes"})
    assert outbox == []
    assert list(PurgeAttempt.objects.values_list("target", flat=True)) == ["/old/"]


def test_a_purger_purges_but_cannot_edit_rules_or_purge_everything(
    purger_client, world, outbox
) -> None:
    rule = world["rule"]
    page = purger_client.get("/admin/roan/purge/")
    assert page.status_code == 200 and "Purge everything" not in page.text

    purged = purger_client.post(
        "/admin/roan/purge/", {"urls": "/x/", "kind": "url", "backends": ["default"]}
    )
    repurged = purger_client.post(
        "/admin/roan/purgeattempt/",
        {"action": "repurge_selected", "_selected_action": [world["attempt"].pk]},
    )
    everything = purger_client.post(
        "/admin/roan/purge/all/", {"backend": "default", "confirm": "yes"}
    )
    edit = purger_client.post(
        f"/admin/roan/purgerule/{rule.pk}/change/",
        {"name": "renamed", "content_type": rule.content_type_id, "templates": "/z/"},
    )

    assert (purged.status_code, repurged.status_code) == (302, 302)
    assert (everything.status_code, edit.status_code) == (403, 403)
    rule.refresh_from_db()
    assert rule.name == "posts"
    assert sorted(r.target for _node, r in outbox) == ["/old/", "/x/"]
    new = PurgeAttempt.objects.exclude(pk=world["attempt"].pk)
    assert {(a.user.username, a.trigger) for a in new} == {("purger", "admin")}
    assert not PurgeAttempt.objects.filter(kind="all").exists()


def test_only_purge_all_purges_everything(purge_all_client, world, outbox) -> None:
    page = purge_all_client.get("/admin/roan/purge/")
    assert "Purge everything on one backend" in page.text

    done = purge_all_client.post("/admin/roan/purge/all/", {"backend": "default", "confirm": "yes"})

    assert done.status_code == 302
    [(_node, request)] = outbox
    assert request.kind == "all"
    assert PurgeAttempt.objects.get(kind="all").user.username == "operator"


def test_re_purging_an_everything_attempt_needs_purge_all(purger_client, world, outbox) -> None:
    everything = attempt(kind="all", target="", status="failed")
    response = purger_client.post(
        "/admin/roan/purgeattempt/",
        {"action": "repurge_selected", "_selected_action": [everything.pk]},
        follow=True,
    )
    assert "needs the purge_all permission" in response.text
    assert outbox == []


def test_importing_rules_needs_add_and_change_permission(viewer_client, world) -> None:
    assert viewer_client.get("/admin/roan/purgerule/import/").status_code == 403
    assert "/admin/roan/purgerule/import/" not in viewer_client.get("/admin/roan/purgerule/").text
