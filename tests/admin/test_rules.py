"""The rules admin: the form validates templates per line, the list, its filters and actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from roan import purge
from roan.models import PurgeAttempt, PurgeRule
from tests.support.admin_helpers import attempt
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db


def rule_form(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "posts",
        "content_type": ContentType.objects.get_for_model(Post).pk,
        "templates": "/posts/\n/posts/{slug}/",
        "enabled": "on",
        "on_save": "on",
        "on_delete": "on",
    }
    data.update(overrides)
    return data


def test_a_bad_template_is_a_form_error_naming_the_line_and_nothing_is_saved(admin_client) -> None:
    response = admin_client.post(
        "/admin/roan/purgerule/add/",
        rule_form(templates="/posts/\n/posts/{slug.__class__}/\nhttp://evil.example/"),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["templates"]
    assert any(e.startswith("Line 2: ") and "not allowed" in e for e in errors)
    assert any(e.startswith("Line 3: ") and "not a URL" in e for e in errors)
    assert not PurgeRule.objects.exists()


def test_an_unknown_backend_alias_is_refused(admin_client) -> None:
    rule = PurgeRule(
        name="x",
        content_type=ContentType.objects.get_for_model(Post),
        templates="/x/",
        backends=["nowhere"],
    )
    with pytest.raises(Exception, match="Unknown backend"):
        rule.full_clean()


def test_a_good_rule_is_saved(admin_client) -> None:
    response = admin_client.post("/admin/roan/purgerule/add/", rule_form())
    assert response.status_code == 302
    assert PurgeRule.objects.get().template_lines == ["/posts/", "/posts/{slug}/"]


def test_the_purge_log_is_append_only(admin_client) -> None:
    PurgeAttempt.objects.write(
        [
            {
                "backend": "default",
                "node": "default",
                "target": "/x/",
                "trigger": "api",
                "status": "ok",
            }
        ]
    )
    attempt = PurgeAttempt.objects.get()
    assert admin_client.get("/admin/roan/purgeattempt/").status_code == 200
    assert admin_client.get("/admin/roan/purgeattempt/add/").status_code == 403
    change = admin_client.post(f"/admin/roan/purgeattempt/{attempt.pk}/change/", {"target": "/y/"})
    assert change.status_code == 403
    attempt.refresh_from_db()
    assert attempt.target == "/x/"


def test_the_rule_list_shows_recent_purges_failure_rate_and_last_fire(
    admin_client, post_rule
) -> None:
    attempt(rule=post_rule, status="ok")
    attempt(rule=post_rule, status="failed")
    last = attempt(rule=post_rule, status="gave_up")
    old = attempt(rule=post_rule, status="failed")
    PurgeAttempt.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))

    response = admin_client.get("/admin/roan/purgerule/")

    [row] = response.context["cl"].result_list
    assert (row.purges_in_24h, row.failures_in_24h) == (3, 2)
    assert row.last_fired_at == last.created_at
    assert (
        "3\N{NO-BREAK SPACE}purges, 67\N{NO-BREAK SPACE}%\N{NO-BREAK SPACE}failed" in response.text
    )
    assert "save, delete" in response.text


def test_disabling_a_rule_from_the_list_stops_its_purges(
    admin_client, post_rule, outbox, django_capture_on_commit_callbacks
) -> None:
    response = admin_client.post(
        "/admin/roan/purgerule/",
        {"action": "disable_rules", "_selected_action": [post_rule.pk]},
        follow=True,
    )
    assert "1 rule disabled." in response.text
    with django_capture_on_commit_callbacks(execute=True):
        Post.objects.create(title="T", slug="t")
    assert outbox == []

    admin_client.post(
        "/admin/roan/purgerule/", {"action": "enable_rules", "_selected_action": [post_rule.pk]}
    )
    with django_capture_on_commit_callbacks(execute=True):
        Post.objects.create(title="U", slug="u")
    assert sorted(r.target for _node, r in outbox) == ["/posts/", "/posts/u/"]


def test_the_backend_filter_includes_rules_that_purge_everywhere(
    admin_client, make_rule, settings
) -> None:
    settings.ROAN_BACKENDS = {
        "a": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
        "b": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
    }
    make_rule("only a", "/a/", backends=["a"])
    make_rule("everywhere", "/e/")
    make_rule("only b", "/b/", backends=["b"])

    response = admin_client.get("/admin/roan/purgerule/?backend=a")

    assert [r.name for r in response.context["cl"].result_list] == ["everywhere", "only a"]


def test_code_rules_are_listed_read_only(admin_client) -> None:
    purge("/legacy/").on_save(Post)

    response = admin_client.get("/admin/roan/purgerule/")

    section = response.text.split('id="roan-code-rules"', 1)[1]
    assert "/legacy/" in section and "testapp.Post" in section and "save" in section
    assert "<input" not in section.split("</div>", 1)[0]


# -- the rule form -------------------------------------------------------------------------------


def offered_models(response) -> list[str]:
    field = response.context["adminform"].form.fields["content_type"]
    return [f"{ct.app_label}.{ct.model}" for ct in field.queryset]


def test_the_rule_form_offers_only_models_rules_may_name(admin_client, settings) -> None:
    offered = offered_models(admin_client.get("/admin/roan/purgerule/add/"))

    assert "testapp.post" in offered
    assert not [
        label
        for label in offered
        if label.split(".")[0] in {"auth", "sessions", "admin", "contenttypes", "roan"}
    ]
    page = admin_client.get("/admin/roan/purgerule/add/").text
    assert "sessions" not in page.split('id="id_content_type"')[1].split("</select>")[0]

    settings.ROAN_RULE_MODELS = ["testapp.post", "testapp.tag"]
    assert offered_models(admin_client.get("/admin/roan/purgerule/add/")) == [
        "testapp.post",
        "testapp.tag",
    ]


def test_the_rule_form_lists_the_placeholders_of_its_model(admin_client, make_rule) -> None:
    rule = make_rule("posts", "/posts/{slug}/")

    page = admin_client.get(f"/admin/roan/purgerule/{rule.pk}/change/").text

    assert "Placeholders for Post" in page
    for placeholder in ("{slug}", "{author.username}", "{tags.slug}", "{get_absolute_url}"):
        assert f"<code>{placeholder}</code>" in page


def test_a_many_to_many_template_without_on_m2m_gets_a_warning(admin_client) -> None:
    response = admin_client.post(
        "/admin/roan/purgerule/add/",
        rule_form(templates="/posts/\n/tags/{tags.slug}/"),
        follow=True,
    )

    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert warnings == [
        "{tags.slug} read a many-to-many relation. Adding or removing a related object (such "
        "as a tag on a post) is not a save: this rule purges for it only with “On "
        "many-to-many change” ticked."
    ]
    rule = PurgeRule.objects.get()
    form = admin_client.get(f"/admin/roan/purgerule/{rule.pk}/change/").text
    assert 'id="roan-m2m-warning"' in form

    rule.on_m2m = True
    rule.save()
    assert (
        'id="roan-m2m-warning"'
        not in admin_client.get(f"/admin/roan/purgerule/{rule.pk}/change/").text
    )


def test_no_warning_for_a_template_without_many_to_many(admin_client) -> None:
    response = admin_client.post(
        "/admin/roan/purgerule/add/",
        rule_form(templates="/posts/{slug}/\n/authors/{author.username}/"),
        follow=True,
    )
    assert [m.level_tag for m in response.context["messages"]] == ["success"]
