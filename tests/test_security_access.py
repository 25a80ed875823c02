"""What a rule editor can read: only models the project allows (``ROAN_RULE_MODELS``),
never a secret field, and only data of models the editor may view (issue 7, critical)."""

from __future__ import annotations

from typing import Any

import pytest
import tablib
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.core import checks
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
from django.test.utils import isolate_apps
from django.utils import timezone

from roan import purge
from roan.checks import check_private_fields, check_rule_models
from roan.models import PurgeAttempt, PurgeRule
from roan.resources import PurgeRuleResource
from roan.rules import index as rules
from roan.rules.access import looks_secret, rule_model_refusal
from roan.rules.templating import TemplateError, parse, parse_lines, render
from tests.support.admin_helpers import VIEW, staff_client
from tests.testapp.models import Author, Post, Tag

pytestmark = pytest.mark.django_db

#: A rule editor: every purge-rule permission, the log, and the posts they look after.
EDITOR = [
    "roan.add_purgerule",
    "roan.change_purgerule",
    "roan.view_purgerule",
    "roan.delete_purgerule",
    "roan.purge_now",
    "roan.view_purgeattempt",
    "testapp.view_post",
]


def ct(model: type[models.Model]) -> int:
    return ContentType.objects.get_for_model(model, for_concrete_model=False).pk


def rule_form(model: type[models.Model], templates: str = "/x/{pk}/") -> dict[str, Any]:
    return {
        "name": f"on {model._meta.label}",
        "content_type": ct(model),
        "templates": templates,
        "enabled": "on",
        "on_save": "on",
        "on_delete": "on",
    }


def raw_rule(model: type[models.Model], templates: str, name: str = "sneaky") -> PurgeRule:
    """A rule row written past validation (a shell, loaddata, a database client)."""
    rule = PurgeRule.objects.create(
        name=name, content_type_id=ct(model), templates=templates, backends=[]
    )
    rules.invalidate()
    return rule


@pytest.fixture
def editor(django_user_model: Any) -> Any:
    return staff_client(django_user_model, "editor", EDITOR)


# -- which models a rule may name -----------------------------------------------------------


@pytest.mark.parametrize("model", [Session, User])
def test_an_editor_cannot_create_a_rule_on_sessions_or_users(editor, model) -> None:
    response = editor.post("/admin/roan/purgerule/add/", rule_form(model))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["content_type"]
    assert not PurgeRule.objects.exists()


@pytest.mark.parametrize("model", [Session, User])
def test_a_superuser_cannot_create_a_rule_on_sessions_or_users_either(admin_client, model) -> None:
    response = admin_client.post("/admin/roan/purgerule/add/", rule_form(model))

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["content_type"]
    assert "ROAN_RULE_MODELS" in error or "valid choice" in error
    assert not PurgeRule.objects.exists()


def dropdown(client: Any) -> set[str]:
    response = client.get("/admin/roan/purgerule/add/")
    assert response.status_code == 200
    field = response.context["adminform"].form.fields["content_type"]
    return {f"{c.app_label}.{c.model}" for c in field.queryset}


def test_the_model_dropdown_offers_allowed_models_the_editor_may_view(editor) -> None:
    assert dropdown(editor) == {"testapp.post"}


def test_the_superusers_dropdown_still_leaves_out_accounts_sessions_and_roan(admin_client) -> None:
    offered = dropdown(admin_client)

    assert {"testapp.post", "testapp.author", "testapp.tag"} <= offered
    assert not {label for label in offered if label.split(".")[0] in {"auth", "sessions", "roan"}}
    assert not {label for label in offered if label.split(".")[0] in {"admin", "contenttypes"}}


@pytest.mark.parametrize(
    "model", [Session, User, Group, Permission, LogEntry, ContentType, PurgeRule, PurgeAttempt]
)
def test_full_clean_refuses_sensitive_and_roan_models_by_default(model) -> None:
    rule = PurgeRule(name="x", content_type_id=ct(model), templates="/x/")

    with pytest.raises(ValidationError) as caught:
        rule.full_clean()

    assert "content_type" in caught.value.message_dict


def test_rule_models_is_an_allow_list(settings) -> None:
    settings.ROAN_RULE_MODELS = ["testapp.post", "testapp.Tag"]
    assert rule_model_refusal(Post) == rule_model_refusal(Tag) == ""
    assert "not in ROAN_RULE_MODELS" in rule_model_refusal(Author)

    settings.ROAN_RULE_MODELS = ["testapp"]
    assert rule_model_refusal(Author) == ""
    assert "only when ROAN_RULE_MODELS lists 'sessions.session'." in rule_model_refusal(Session)


def test_a_sensitive_model_is_opened_only_by_its_own_label_and_roans_never(settings) -> None:
    settings.ROAN_RULE_MODELS = ["auth", "sessions"]
    assert "its app label is not enough" in rule_model_refusal(User)
    assert rule_model_refusal(Session)

    settings.ROAN_RULE_MODELS = ["auth.user", "roan.purgerule", "roan"]
    assert rule_model_refusal(User) == ""
    assert rule_model_refusal(Group)
    assert "roan's own models" in rule_model_refusal(PurgeRule)
    assert "roan's own models" in rule_model_refusal(PurgeAttempt)


def test_the_dropdown_follows_an_override_of_rule_models(admin_client, settings) -> None:
    settings.ROAN_RULE_MODELS = ["testapp.tag", "auth.user"]
    assert dropdown(admin_client) == {"testapp.tag", "auth.user"}


@isolate_apps("tests.testapp")
def test_a_proxy_of_a_sensitive_model_in_another_app_is_sensitive_too() -> None:
    class StaffMember(User):
        class Meta:
            proxy = True
            app_label = "testapp"

    assert "accounts, sessions or admin data" in rule_model_refusal(StaffMember)


def test_a_rule_row_on_sessions_inserted_directly_never_fires_and_is_listed_broken(
    admin_client, outbox
) -> None:
    raw_rule(Session, "/s/{expire_date}/")

    Session.objects.create(session_key="k" * 32, session_data="x", expire_date=timezone.now())

    assert outbox == [] and not PurgeAttempt.objects.exists()
    assert "sneaky" in rules.get_index().broken
    assert "ROAN_RULE_MODELS" in rules.get_index().broken["sneaky"]
    page = admin_client.get("/admin/roan/purgerule/")
    assert "Rule “sneaky” is not used" in page.text


def test_a_rule_on_a_model_taken_out_of_rule_models_stops_firing(make_rule, settings) -> None:
    make_rule("posts", "/posts/{slug}/")
    settings.ROAN_RULE_MODELS = ["testapp.tag"]

    Post.objects.create(title="One", slug="one")

    assert not PurgeAttempt.objects.exists()
    assert "not in ROAN_RULE_MODELS" in rules.get_index().broken["posts"]


def test_the_preview_of_a_disallowed_rule_lists_no_objects(admin_client) -> None:
    rule = raw_rule(Session, "/s/{expire_date}/")
    Session.objects.create(session_key="k" * 32, session_data="x", expire_date=timezone.now())

    response = admin_client.get(f"/admin/roan/purgerule/{rule.pk}/preview/?object_id={'k' * 32}")

    assert response.status_code == 200
    assert "ROAN_RULE_MODELS" in response.context["problem"]
    assert response.context["latest"] == [] and response.context["lines"] == []
    assert "k" * 32 not in response.text


def test_an_import_of_a_rule_on_sessions_is_refused() -> None:
    data = tablib.Dataset(
        ["s", "sessions.session", "/s/{expire_date}/", "", 1, 1, 0, 1, ""],
        headers=[
            "name",
            "model",
            "templates",
            "backends",
            "on_save",
            "on_delete",
            "on_m2m",
            "enabled",
            "description",
        ],
    )

    result = PurgeRuleResource().import_data(data, dry_run=False)

    [row] = result.invalid_rows
    assert "ROAN_RULE_MODELS" in str(row.error_dict["content_type"])
    assert not PurgeRule.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_editor_cannot_import_a_rule_on_a_model_they_cannot_view(editor) -> None:
    text = (
        "name,model,templates,backends,on_save,on_delete,on_m2m,enabled,description\n"
        "authors,testapp.author,/authors/{username}/,,1,1,0,1,\n"
    )

    response = editor.post(
        "/admin/roan/purgerule/import/",
        {
            "import_file": SimpleUploadedFile("rules.csv", text.encode()),
            "format": "0",
            "resource": "0",
        },
    )

    [row] = response.context["result"].invalid_rows
    assert "permission to view testapp.author" in str(row.error_dict["content_type"])
    assert not PurgeRule.objects.exists()


def test_code_rules_are_not_subject_to_the_allow_list(outbox, settings) -> None:
    settings.ROAN_RULE_MODELS = ["testapp.tag"]
    purge("/posts/").on_save(Post)
    try:
        Post.objects.create(title="One", slug="one")
    finally:
        rules._code_rules.clear()
        rules._registry.forget()

    assert [a.target for a in PurgeAttempt.objects.all()] == ["/posts/"]


# -- fields no placeholder may read ---------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "api_key",
        "session_key",
        "secret",
        "client_secret",
        "token",
        "auth_token",
        "accessToken",
        "apikey",
        "password_hash",
        "salt",
        "otp",
        "totp_seed_key",
        "key",
        "refresh_tokens",
        "credentials",
    ],
)
def test_names_like_a_secret_are_private(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name", ["pk", "id", "author_id", "keywords", "monkey", "slug", "title", "hockey_team"]
)
def test_ordinary_names_are_not_private(name: str) -> None:
    assert not looks_secret(name)


@isolate_apps("tests.testapp")
def test_a_placeholder_cannot_read_a_password_through_a_relation() -> None:
    class Page(models.Model):
        owner = models.ForeignKey(User, on_delete=models.CASCADE)
        login = models.ForeignKey(Session, on_delete=models.CASCADE)
        api_key = models.CharField(max_length=40)
        keywords = models.CharField(max_length=40)

        class Meta:
            app_label = "testapp"

    for source in [
        "/x/{owner.password}/",
        "/x/{api_key}/",
        "/x/{owner.pk}/{owner.password}/",
        "/x/{login.pk}/",
        "/x/{login_id}/",  # the column holds the session key
        "/x/{login.session_data}/",
    ]:
        with pytest.raises(TemplateError, match="is private"):
            parse(source, Page)
    template = parse("/x/{owner.username}/{owner_id}/{keywords}/{owner.pk}/", Page)
    assert [p.source for p in template.placeholders] == [
        "owner.username",
        "owner_id",
        "keywords",
        "owner.pk",
    ]


def test_a_users_password_is_refused_even_when_users_are_allowed(admin_client, settings) -> None:
    settings.ROAN_RULE_MODELS = ["auth.user"]

    response = admin_client.post(
        "/admin/roan/purgerule/add/", rule_form(User, "/u/{username}/\n/x/{password}/")
    )

    [error] = response.context["adminform"].form.errors["templates"]
    assert error.startswith("Line 2: ") and "auth.User.password is private" in error
    assert not PurgeRule.objects.exists()


def test_the_key_of_a_session_is_private_also_as_its_pk(settings) -> None:
    settings.ROAN_RULE_MODELS = ["sessions.session"]
    for source in ["/s/{pk}/", "/s/{session_key}/", "/s/{session_data}/"]:
        with pytest.raises(TemplateError, match="is private"):
            parse(source, Session)
    parse("/s/{expire_date}/", Session)


def test_private_fields_adds_fields_by_name_or_by_model(settings) -> None:
    settings.ROAN_PRIVATE_FIELDS = ["body", "testapp.author.name"]

    with pytest.raises(TemplateError, match="ROAN_PRIVATE_FIELDS"):
        parse("/p/{body}/", Post)
    with pytest.raises(TemplateError, match="is private"):
        parse("/p/{author.name}/", Post)
    parse("/p/{author.username}/{title}/", Post)


def test_a_rule_row_reading_a_password_never_fires_and_is_listed_broken(
    settings, django_user_model, outbox
) -> None:
    settings.ROAN_RULE_MODELS = ["auth.user"]
    raw_rule(User, "/u/{username}/\n/x/{password}/", name="hashes")

    django_user_model.objects.create_user("ada", password="pw")

    assert not PurgeAttempt.objects.exists()
    assert "is private" in rules.get_index().broken["hashes"]


def test_templating_refuses_secrets_for_every_caller() -> None:
    # The admin, imports and the index all parse through parse_lines.
    with pytest.raises(ValueError, match="is private"):
        parse_lines("/x/{password}/", User)


# -- the preview, the test purge and "Purge now" need view permission on the model -------


@pytest.fixture
def author_rule(make_rule) -> PurgeRule:
    return make_rule("authors", "/authors/{username}/", model=Author)


def test_a_rule_viewer_cannot_read_another_models_data_through_the_preview(
    django_user_model, author_rule
) -> None:
    Author.objects.create(username="ada.lovelace")
    viewer = staff_client(django_user_model, "viewer", VIEW)  # no view_author

    listing = viewer.get(f"/admin/roan/purgerule/{author_rule.pk}/preview/")
    one = viewer.get(f"/admin/roan/purgerule/{author_rule.pk}/preview/?object_id=1")

    assert listing.status_code == one.status_code == 403
    assert "ada.lovelace" not in listing.text + one.text


def test_the_preview_lists_objects_for_a_user_who_may_view_the_model(
    django_user_model, author_rule
) -> None:
    author = Author.objects.create(username="ada.lovelace")
    viewer = staff_client(django_user_model, "viewer", [*VIEW, "testapp.view_author"])

    response = viewer.get(f"/admin/roan/purgerule/{author_rule.pk}/preview/?object_id={author.pk}")

    assert response.status_code == 200
    assert "ada.lovelace" in response.text
    assert [line.target for line in response.context["lines"]] == ["/authors/ada.lovelace/"]


def test_a_purger_cannot_send_a_test_purge_for_a_model_they_cannot_view(
    django_user_model, author_rule, outbox
) -> None:
    author = Author.objects.create(username="ada")
    PurgeAttempt.objects.all().delete()
    purger = staff_client(django_user_model, "purger", [*VIEW, "roan.purge_now"])

    response = purger.post(
        f"/admin/roan/purgerule/{author_rule.pk}/preview/", {"object_id": str(author.pk)}
    )

    assert response.status_code == 403
    assert outbox == [] and not PurgeAttempt.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_purge_now_leaves_out_rules_on_models_the_user_cannot_view(
    django_user_model, author_rule, post_rule, outbox
) -> None:
    Author.objects.create(username="ada")
    Post.objects.create(title="One", slug="one")
    PurgeAttempt.objects.all().delete()
    outbox.clear()
    purger = staff_client(django_user_model, "purger", [*VIEW, "roan.purge_now"])
    data = {"action": "purge_rules_now", "_selected_action": [author_rule.pk, post_rule.pk]}

    page = purger.post("/admin/roan/purgerule/", data)
    purger.post("/admin/roan/purgerule/", {**data, "post": "yes"})

    assert "You do not have permission to view authors." in page.text
    targets = sorted(PurgeAttempt.objects.values_list("target", flat=True))
    assert targets == ["/posts/", "/posts/one/"]


def test_a_foreign_key_column_renders_as_the_related_key() -> None:
    author = Author.objects.create(username="ada")
    post = Post.objects.create(title="One", slug="one", author=author)

    assert render(parse("/by/{author_id}/{slug}/", Post), post) == [f"/by/{author.pk}/one/"]


# -- system checks -------------------------------------------------------------------------


def check_ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_no_rule_models_setting_is_no_message(settings) -> None:
    assert check_rule_models() == [] and check_private_fields() == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("testapp", ["roan.E020"]),
        (["testapp", 3], ["roan.E020"]),
        (["testapp.post", "nope"], ["roan.E020"]),
        (["testapp.nothing"], ["roan.E020"]),
        (["testapp.post.title"], ["roan.E020"]),
        ([""], ["roan.E020"]),
        (["roan"], ["roan.E021"]),
        (["roan.purgeattempt"], ["roan.E021"]),
        (["auth"], ["roan.E021"]),
        (["sessions"], ["roan.E021"]),
        (["auth.user", "sessions.Session"], ["roan.W020", "roan.W020"]),
        (["testapp", "testapp.post"], []),
    ],
)
def test_rule_models_checks(settings, value, expected) -> None:
    settings.ROAN_RULE_MODELS = value
    messages = check_rule_models()

    assert check_ids(messages) == expected
    assert all(m.hint for m in messages)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("email", ["roan.E022"]),
        (["email", None], ["roan.E022"]),
        (["testapp.post"], ["roan.E022"]),
        (["testapp.nothing.x"], ["roan.E022"]),
        (["testapp.post.nope"], ["roan.E022"]),
        (["email", "testapp.author.name", "auth.user.email"], []),
    ],
)
def test_private_fields_checks(settings, value, expected) -> None:
    settings.ROAN_PRIVATE_FIELDS = value

    assert check_ids(check_private_fields()) == expected


def test_the_checks_are_registered(settings) -> None:
    settings.ROAN_RULE_MODELS = ["roan"]
    settings.ROAN_PRIVATE_FIELDS = ["a.b"]

    found = check_ids(checks.run_checks(tags=["roan"]))

    assert "roan.E021" in found and "roan.E022" in found


@pytest.mark.django_db(transaction=True)
def test_purge_now_leaves_out_a_rule_on_a_disallowed_model_even_for_a_superuser(
    admin_client, outbox
) -> None:
    rule = raw_rule(Session, "/s/{expire_date}/")
    Session.objects.create(session_key="k" * 32, session_data="x", expire_date=timezone.now())
    data = {"action": "purge_rules_now", "_selected_action": [rule.pk]}

    page = admin_client.post("/admin/roan/purgerule/", data)
    admin_client.post("/admin/roan/purgerule/", {**data, "post": "yes"})

    assert "is left out" in page.text and "ROAN_RULE_MODELS" in page.text
    assert outbox == [] and not PurgeAttempt.objects.exists()


def test_the_preview_needs_view_permission_on_related_models_a_rule_reads_too(
    django_user_model, make_rule, outbox
) -> None:
    rule = make_rule("by author", "/posts/{slug}/\n/authors/{author.username}/")
    Post.objects.create(title="One", slug="one", author=Author.objects.create(username="ada.l"))
    posts_only = staff_client(django_user_model, "viewer", VIEW)
    both = staff_client(django_user_model, "both", [*VIEW, "testapp.view_author"])
    url = f"/admin/roan/purgerule/{rule.pk}/preview/?object_id={Post.objects.get().pk}"

    refused, shown = posts_only.get(url), both.get(url)

    assert refused.status_code == 403 and "ada.l" not in refused.text
    assert shown.status_code == 200 and "/authors/ada.l/" in shown.text
