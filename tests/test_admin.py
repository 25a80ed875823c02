"""The rule form validates templates line by line; the purge log is append-only."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType

from roan.models import PurgeAttempt, PurgeRule
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
