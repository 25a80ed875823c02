"""The editor's purge surface (issue 7): purging everything takes roan.purge_all on every
route, there is one re-purge, and what one request may write or send is bounded."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.db import SessionStore
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django_tasks_db.models import DBTaskResult

from roan.admin import pages
from roan.models import PurgeAttempt, PurgeRule
from tests.support.admin_helpers import VIEW, attempt, staff_client
from tests.testapp.models import Post, Tag

pytestmark = pytest.mark.django_db(transaction=True)

EDIT_RULES = ["roan.add_purgerule", "roan.change_purgerule"]


@pytest.fixture
def purger(django_user_model: Any) -> Any:
    """purge_now and rule editing, but not purge_all."""
    return staff_client(django_user_model, "purger", [*VIEW, *EDIT_RULES, "roan.purge_now"])


@pytest.fixture
def operator(django_user_model: Any) -> Any:
    perms = [*VIEW, *EDIT_RULES, "roan.purge_now", "roan.purge_all"]
    return staff_client(django_user_model, "operator", perms)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# -- purging everything needs purge_all ------------------------------------------------------


@pytest.mark.parametrize(
    "everything",
    [{"kind": "all", "target": ""}, {"kind": "prefix", "target": "/", "host": "www.example.com"}],
)
def test_the_dashboard_re_purge_of_everything_needs_purge_all(purger, outbox, everything) -> None:
    old = attempt(status="failed", **everything)

    response = purger.post(f"/admin/roan/dashboard/repurge/{old.pk}/", follow=True)

    assert any("needs the purge_all permission" in m for m in messages_of(response))
    assert list(PurgeAttempt.objects.values_list("pk", flat=True)) == [old.pk]
    assert outbox == []


def test_the_log_action_re_purge_of_a_prefix_of_slash_needs_purge_all(purger, outbox) -> None:
    old = attempt(status="failed", kind="prefix", target="/")

    response = purger.post(
        "/admin/roan/purgeattempt/",
        {"action": "repurge_selected", "_selected_action": [old.pk]},
        follow=True,
    )

    assert any("needs the purge_all permission" in m for m in messages_of(response))
    assert list(PurgeAttempt.objects.values_list("pk", flat=True)) == [old.pk]
    assert outbox == []


def test_the_dashboard_offers_re_purging_everything_only_with_purge_all(purger, operator) -> None:
    everything = attempt(status="failed", kind="all", target="")
    page = attempt(status="failed", target="/page/")

    def offered(client: Any) -> set[int]:
        html = client.get("/admin/roan/dashboard/").text
        return {pk for pk in (everything.pk, page.pk) if f"/dashboard/repurge/{pk}/" in html}

    assert offered(purger) == {page.pk}
    assert offered(operator) == {everything.pk, page.pk}


def test_with_purge_all_the_dashboard_re_purges_everything(operator, outbox) -> None:
    old = attempt(status="failed", kind="all", target="")

    operator.post(f"/admin/roan/dashboard/repurge/{old.pk}/")

    assert [r.kind for _node, r in outbox] == ["all"]


def test_the_dashboard_and_the_log_re_purge_alike_keeping_the_origin(
    purger, post_rule, outbox
) -> None:
    # One code path: the dashboard used to drop the rule and object the log action kept.
    post = Post.objects.create(title="One", slug="one")
    old = PurgeAttempt.objects.get(target="/posts/one/")
    old.status = "failed"
    old.save()

    purger.post(f"/admin/roan/dashboard/repurge/{old.pk}/")
    purger.post(
        "/admin/roan/purgeattempt/", {"action": "repurge_selected", "_selected_action": [old.pk]}
    )

    again = PurgeAttempt.objects.filter(trigger="admin").order_by("pk")
    assert [(a.target, a.rule_name, a.object_pk, a.user.username) for a in again] == [
        ("/posts/one/", "posts", str(post.pk), "purger")
    ] * 2


@pytest.mark.parametrize("line", ["/", "/*", "http://www.example.com/*", "https://www.example.com"])
def test_a_form_prefix_of_slash_needs_purge_all(purger, operator, outbox, line: str) -> None:
    form = {"urls": f"/posts/\n{line}", "kind": "prefix", "backends": ["default"]}

    page = purger.post("/admin/roan/purge/", form)

    assert page.status_code == 200
    [error] = page.context["form"].errors["urls"]
    assert error.startswith("Line 2: ") and "purge_all permission" in error
    assert not PurgeAttempt.objects.exists() and outbox == []

    assert operator.post("/admin/roan/purge/", form).status_code == 302
    assert sorted(PurgeAttempt.objects.values_list("target", flat=True)) == ["/", "/posts/"]


def rule_form(**fields: Any) -> dict[str, Any]:
    return {
        "name": "everything",
        "content_type": ContentType.objects.get_for_model(Post).pk,
        "templates": "/posts/\n/*",
        "enabled": "on",
        "on_save": "on",
        "description": "",
        **fields,
    }


def test_a_rule_template_of_slash_star_is_saved_only_with_purge_all(purger, operator) -> None:
    refused = purger.post("/admin/roan/purgerule/add/", rule_form())

    assert refused.status_code == 200
    [error] = refused.context["adminform"].form.errors["templates"]
    assert "/* purges everything" in error and "purge_all permission" in error
    assert not PurgeRule.objects.exists()

    assert operator.post("/admin/roan/purgerule/add/", rule_form()).status_code == 302
    rule = PurgeRule.objects.get()

    # Nor may the purger edit it afterwards (to enable it, or point it at another model).
    edit = purger.post(f"/admin/roan/purgerule/{rule.pk}/change/", rule_form(name="renamed"))
    assert edit.status_code == 200
    assert PurgeRule.objects.get().name == "everything"


def test_a_rule_of_slash_star_cannot_be_imported_without_purge_all(purger) -> None:
    text = (
        "name,model,templates,backends,on_save,on_delete,on_m2m,enabled,description\n"
        "everything,testapp.post,/*,,1,1,0,1,\n"
    )
    preview = purger.post(
        "/admin/roan/purgerule/import/",
        {
            "import_file": SimpleUploadedFile("rules.csv", text.encode()),
            "format": "0",
            "resource": "0",
        },
    )

    assert "purge_all permission" in preview.text
    assert "confirm_form" not in preview.context or not preview.context["confirm_form"]
    assert not PurgeRule.objects.exists()


def test_purge_now_on_a_slash_star_rule_needs_purge_all(purger, make_rule, outbox) -> None:
    rule = make_rule("everything", "/*")
    form = {"action": "purge_rules_now", "_selected_action": [rule.pk], "post": "yes"}

    response = purger.post("/admin/roan/purgerule/", form, follow=True)

    assert any("needs the purge_all" in m for m in messages_of(response))
    assert not PurgeAttempt.objects.exists() and outbox == []


def test_a_rendered_prefix_of_slash_is_skipped(make_rule, outbox, monkeypatch) -> None:
    monkeypatch.setattr(Post, "get_absolute_url", lambda self: "/")
    make_rule("own url", "{get_absolute_url}*")

    Post.objects.create(title="Home", slug="home")

    row = PurgeAttempt.objects.get()
    assert (row.status, row.kind, row.target) == ("skipped", "prefix", "/")
    assert "purges everything" in row.error
    assert outbox == []


# -- bounds ----------------------------------------------------------------------------------


def test_a_huge_purge_urls_post_is_refused_whole(admin_client, outbox) -> None:
    # About 360 KiB: a7037b1 wrote (and sent inside the request) one row per line.
    lines = "\n".join(f"/{n:x}" for n in range(60_000))

    page = admin_client.post(
        "/admin/roan/purge/", {"urls": lines, "kind": "url", "backends": ["default"]}
    )

    assert page.status_code == 200
    [error] = page.context["form"].errors["urls"]
    assert "60000 attempts" in error and "ROAN_MAX_MANUAL_PURGES" in error
    assert not PurgeAttempt.objects.exists() and outbox == []


def test_the_purge_urls_text_has_a_maximum_length(admin_client) -> None:
    from roan.admin.forms import URLS_MAX_LENGTH

    page = admin_client.post(
        "/admin/roan/purge/",
        {"urls": "/" + "a" * URLS_MAX_LENGTH, "kind": "url", "backends": ["default"]},
    )

    assert "Ensure this value has at most" in page.context["form"].errors["urls"][0]
    assert not PurgeAttempt.objects.exists()


def test_the_bound_is_a_setting(admin_client, settings, outbox) -> None:
    settings.ROAN_MAX_MANUAL_PURGES = 2
    form = {"urls": "/a/\n/b/\n/c/", "kind": "url", "backends": ["default"]}

    assert admin_client.post("/admin/roan/purge/", form).status_code == 200
    assert not PurgeAttempt.objects.exists()

    settings.ROAN_MAX_MANUAL_PURGES = 3
    assert admin_client.post("/admin/roan/purge/", form).status_code == 302
    assert PurgeAttempt.objects.count() == 3


def test_purge_now_over_a_big_model_stops_at_the_bound(
    admin_client, make_rule, settings, outbox
) -> None:
    settings.ROAN_MAX_MANUAL_PURGES = 4
    for n in range(5):
        Post.objects.create(title=str(n), slug=str(n))
    rule = make_rule("posts", "/posts/{slug}/")
    form = {"action": "purge_rules_now", "_selected_action": [rule.pk]}

    page = admin_client.post("/admin/roan/purgerule/", form)

    assert "That is 5 attempts, more than one manual purge may write" in page.text
    assert 'value="Yes, purge now" disabled' in page.text

    done = admin_client.post(
        "/admin/roan/purgerule/", {**form, "post": "yes", "confirm_over_limit": "yes"}
    )

    assert done.status_code == 200  # the page again, with no way on
    assert not PurgeAttempt.objects.exists() and outbox == []


def test_purge_now_stops_rendering_many_to_many_at_the_bound(
    admin_client, make_rule, settings, outbox
) -> None:
    # The plan counts one URL per post; each post renders one per tag.
    settings.ROAN_MAX_MANUAL_PURGES = 4
    tags = [Tag.objects.create(slug=f"t{n}") for n in range(3)]
    for n in range(2):
        Post.objects.create(title=str(n), slug=str(n)).tags.set(tags)
    rule = make_rule("tags", "/tags/{tags.slug}/", on_m2m=True)
    PurgeAttempt.objects.all().delete()
    form = {"action": "purge_rules_now", "_selected_action": [rule.pk], "post": "yes"}

    response = admin_client.post("/admin/roan/purgerule/", form, follow=True)

    assert any("more than 4 attempts" in m for m in messages_of(response))
    assert not PurgeAttempt.objects.exists()


def test_purge_cache_for_selected_is_bounded(admin_client, post_rule, settings, outbox) -> None:
    posts = [Post.objects.create(title=str(n), slug=str(n)) for n in range(3)]
    PurgeAttempt.objects.all().delete()
    outbox.clear()
    settings.ROAN_MAX_MANUAL_PURGES = 3  # /posts/ once, and one URL per post: 4

    response = admin_client.post(
        "/admin/testapp/post/",
        {"action": "purge_cache_for_selected", "_selected_action": [p.pk for p in posts]},
        follow=True,
    )

    assert any("ROAN_MAX_MANUAL_PURGES" in m for m in messages_of(response))
    assert not PurgeAttempt.objects.exists() and outbox == []


# -- large manual purges are sent from the queue -----------------------------------------------


def admin_request(user: Any, data: dict[str, Any]) -> Any:
    request = RequestFactory().post("/admin/roan/purge/", data)
    request.user = user
    request.session = SessionStore()
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    return request


def test_a_large_manual_purge_is_sent_after_the_response_not_inside_it(
    admin_user, settings, outbox
) -> None:
    settings.ROAN_MAX_INLINE_MANUAL_PURGES = 2
    request = admin_request(
        admin_user, {"urls": "/a/\n/b/\n/c/", "kind": "url", "backends": ["default"]}
    )

    response = pages.purge_urls_view(request, admin.site)

    # The view has answered: rows written and committed, nothing sent yet.
    assert response.status_code == 302
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"pending"}
    assert outbox == []
    [message] = [str(m) for m in request._messages]
    assert message.startswith(
        "Purging 3 targets: 3 queued, sent once this page has loaded (or by roan_dispatch)."
    )

    response.close()  # what the server does once the response is out

    assert sorted(r.target for _node, r in outbox) == ["/a/", "/b/", "/c/"]
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}


def test_a_small_manual_purge_is_still_sent_inside_the_request(admin_user, outbox) -> None:
    request = admin_request(admin_user, {"urls": "/a/", "kind": "url", "backends": ["default"]})

    pages.purge_urls_view(request, admin.site)

    assert [r.target for _node, r in outbox] == ["/a/"]


def test_with_task_dispatch_a_large_manual_purge_goes_to_the_worker(
    admin_client, settings, outbox
) -> None:
    settings.ROAN_DISPATCH = "task"
    settings.ROAN_MAX_INLINE_MANUAL_PURGES = 2

    response = admin_client.post(
        "/admin/roan/purge/",
        {"urls": "/a/\n/b/\n/c/", "kind": "url", "backends": ["default"]},
        follow=True,
    )

    assert any("Purging 3 targets: 3 queued for a task worker." in m for m in messages_of(response))
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"pending"}
    assert outbox == []
    [task] = DBTaskResult.objects.all()
    assert sorted(task.args_kwargs["args"][0]) == sorted(
        PurgeAttempt.objects.values_list("pk", flat=True)
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, []),
        ({"ROAN_MAX_MANUAL_PURGES": "many"}, ["roan.E050"]),
        ({"ROAN_MAX_INLINE_MANUAL_PURGES": -1}, ["roan.E050"]),
        ({"ROAN_MAX_MANUAL_PURGES": 50, "ROAN_MAX_INLINE_MANUAL_PURGES": 500}, ["roan.W050"]),
    ],
)
def test_the_bounds_are_checked(settings, values: dict[str, Any], expected: list[str]) -> None:
    from roan.checks import check_manual_purge_bounds

    for name, value in values.items():
        setattr(settings, name, value)
    assert [m.id for m in check_manual_purge_bounds()] == expected


def test_enabling_a_slash_star_rule_needs_purge_all(purger, operator, make_rule) -> None:
    everything = make_rule("everything", "/*", enabled=False)
    other = make_rule("posts", "/posts/", enabled=False)
    form = {"action": "enable_rules", "_selected_action": [everything.pk, other.pk]}

    response = purger.post("/admin/roan/purgerule/", form, follow=True)

    assert any("enabling it needs the purge_all" in m for m in messages_of(response))
    assert dict(PurgeRule.objects.values_list("name", "enabled")) == {
        "everything": False,
        "posts": True,
    }
    operator.post("/admin/roan/purgerule/", form)
    assert PurgeRule.objects.get(name="everything").enabled


def test_the_bounds_follow_override_settings() -> None:
    from django.test import override_settings

    from roan.conf import roan_settings

    assert (roan_settings.MAX_MANUAL_PURGES, roan_settings.MAX_INLINE_MANUAL_PURGES) == (
        10_000,
        100,
    )
    with override_settings(ROAN_MAX_MANUAL_PURGES=7, ROAN_MAX_INLINE_MANUAL_PURGES=3):
        assert (roan_settings.MAX_MANUAL_PURGES, roan_settings.MAX_INLINE_MANUAL_PURGES) == (7, 3)


def test_the_rule_preview_test_purge_of_slash_star_is_refused(purger, make_rule, outbox) -> None:
    rule = make_rule("everything", "/*")
    post = Post.objects.create(title="One", slug="one")
    PurgeAttempt.objects.all().delete()
    outbox.clear()

    page = purger.post(f"/admin/roan/purgerule/{rule.pk}/preview/", {"object_id": post.pk})

    assert "needs the purge_all permission" in page.context["problem"]
    assert not PurgeAttempt.objects.exists() and outbox == []


def test_with_purge_all_the_rule_preview_test_purge_of_slash_star_is_sent(
    operator, make_rule, outbox
) -> None:
    rule = make_rule("everything", "/*")
    post = Post.objects.create(title="One", slug="one")
    PurgeAttempt.objects.all().delete()
    outbox.clear()

    page = operator.post(f"/admin/roan/purgerule/{rule.pk}/preview/", {"object_id": post.pk})

    assert not page.context["problem"]
    assert [(r.kind, r.target) for _node, r in outbox] == [("prefix", "/")]
    assert [a.status for a in page.context["sent"]] == ["ok"]
