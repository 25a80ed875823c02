"""What a staff user sees of a project's objects through roan's admin: only models they
may view, only the rows the model's own admin shows them, and a bad key is no error
(issue 25).

A site of its own (``office``) registers posts with an admin that keeps each editor to
their own rows, as a newsroom's might: ``get_queryset`` filters by the author.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.http import HttpRequest
from django.urls import path

import roan.admin
from roan.admin import PurgeCacheMixin
from roan.models import PurgeAttempt
from tests.support.admin_helpers import VIEW, attempt, staff_client
from tests.testapp.models import Author, Post

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]


class OwnPostsAdmin(PurgeCacheMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Posts, each editor seeing only those they wrote."""

    search_fields = ["title", "slug"]

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(author__username=request.user.get_username())


office = admin.AdminSite(name="office")
office.register(Post, OwnPostsAdmin)
office.register(Author)
roan.admin.register(office)
urlpatterns = [path("office/", office.urls), path("admin/", admin.site.urls)]

#: Rules, the log, and view/change on posts; no view permission on authors.
POST_EDITOR = [*VIEW, "testapp.change_post", "roan.purge_now"]
PRIVATE = "owner.private@example.com"


# -- "Purge cache" and "Purge cache for selected": view permission on what a rule reads ------


@pytest.fixture
def by_owner(make_rule) -> Post:
    make_rule("posts", "/posts/{slug}/")
    make_rule("by owner", "/by/{author.username}/")
    post = Post.objects.create(
        title="One", slug="one", author=Author.objects.create(username=PRIVATE)
    )
    PurgeAttempt.objects.all().delete()
    return post


def test_purge_cache_does_not_show_or_send_what_a_rule_reads_from_a_hidden_model(
    django_user_model, by_owner, outbox
) -> None:
    editor = staff_client(django_user_model, "editor", POST_EDITOR)  # no view_author
    url = f"/admin/testapp/post/{by_owner.pk}/purge-cache/"

    page = editor.get(url)
    editor.post(url, {"plan": page.context["plan"]})

    assert page.status_code == 200
    assert "owner.private" not in page.text
    assert "/posts/one/" in page.text
    assert "“by owner” is left out: You do not have permission to view authors." in page.text
    targets = set(PurgeAttempt.objects.values_list("target", flat=True))
    assert targets == {"/posts/one/"}
    assert not [sent for sent in outbox if "owner.private" in str(sent)]


def test_purge_cache_for_selected_leaves_out_a_rule_on_a_hidden_model(
    django_user_model, by_owner, outbox
) -> None:
    editor = staff_client(django_user_model, "editor", POST_EDITOR)

    response = editor.post(
        "/admin/testapp/post/",
        {"action": "purge_cache_for_selected", "_selected_action": [by_owner.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "“by owner” is left out" in response.text
    assert set(PurgeAttempt.objects.values_list("target", flat=True)) == {"/posts/one/"}
    assert "owner.private" not in response.text


def test_a_user_who_may_view_the_related_model_still_purges_all_of_it(
    django_user_model, by_owner
) -> None:
    both = staff_client(django_user_model, "both", [*POST_EDITOR, "testapp.view_author"])
    url = f"/admin/testapp/post/{by_owner.pk}/purge-cache/"

    page = both.get(url)
    both.post(url, {"plan": page.context["plan"]})

    assert "/by/owner.private%40example.com/" in page.text and "left out" not in page.text
    assert set(PurgeAttempt.objects.values_list("target", flat=True)) == {
        "/posts/one/",
        "/by/owner.private%40example.com/",
    }


# -- admins that restrict rows ---------------------------------------------------------------


@pytest.fixture
def two_editors(django_user_model, make_rule) -> dict[str, Any]:
    rule = make_rule("posts", "/posts/{slug}/")
    ada = Author.objects.create(username="ada")
    bob = Author.objects.create(username="bob")
    mine = Post.objects.create(title="Ada's draft", slug="ada-draft", author=ada)
    hidden = Post.objects.create(title="Bob's scoop", slug="bob-scoop", author=bob)
    PurgeAttempt.objects.all().delete()
    client = staff_client(django_user_model, "ada", POST_EDITOR)
    return {"rule": rule, "mine": mine, "hidden": hidden, "client": client}


def test_the_preview_lists_and_searches_only_the_rows_the_model_admin_shows(two_editors) -> None:
    client, rule = two_editors["client"], two_editors["rule"]

    listing = client.get(f"/office/roan/purgerule/{rule.pk}/preview/")
    search = client.get(f"/office/roan/purgerule/{rule.pk}/preview/?q=scoop")

    assert listing.status_code == search.status_code == 200
    assert "Ada&#x27;s draft" in listing.text or "Ada's draft" in listing.text
    assert "scoop" not in listing.text
    assert search.context["latest"] == []
    assert "Bob" not in search.text


def test_the_preview_does_not_render_or_send_a_hidden_row(two_editors, outbox) -> None:
    client, rule, hidden = two_editors["client"], two_editors["rule"], two_editors["hidden"]
    url = f"/office/roan/purgerule/{rule.pk}/preview/"

    shown = client.get(f"{url}?object_id={hidden.pk}")
    sent = client.post(url, {"object_id": str(hidden.pk)})

    assert shown.status_code == sent.status_code == 200
    assert "bob-scoop" not in shown.text + sent.text
    assert shown.context["lines"] == [] and sent.context["sent"] == []
    assert "There is no post with the key" in shown.text
    assert not PurgeAttempt.objects.exists() and outbox == []


def test_the_preview_still_renders_the_editors_own_row(two_editors) -> None:
    client, rule, mine = two_editors["client"], two_editors["rule"], two_editors["mine"]

    response = client.get(f"/office/roan/purgerule/{rule.pk}/preview/?object_id={mine.pk}")

    assert [line.target for line in response.context["lines"]] == ["/posts/ada-draft/"]


def test_purge_now_on_a_rule_renders_only_the_rows_the_model_admin_shows(two_editors) -> None:
    client, rule = two_editors["client"], two_editors["rule"]
    data = {"action": "purge_rules_now", "_selected_action": [rule.pk]}

    page = client.post("/office/roan/purgerule/", data)
    client.post("/office/roan/purgerule/", {**data, "post": "yes"})

    assert page.status_code == 200 and "bob-scoop" not in page.text
    assert list(PurgeAttempt.objects.values_list("target", flat=True)) == ["/posts/ada-draft/"]


def test_the_logs_object_filter_does_not_name_a_hidden_row(two_editors) -> None:
    client, hidden, mine = two_editors["client"], two_editors["hidden"], two_editors["mine"]

    other = client.get(f"/office/roan/purgeattempt/?object=testapp.post:{hidden.pk}")
    own = client.get(f"/office/roan/purgeattempt/?object=testapp.post:{mine.pk}")

    assert other.status_code == own.status_code == 200
    assert "Bob&#x27;s scoop" not in other.text and "Bob's scoop" not in other.text
    assert f"post {hidden.pk}" in other.text
    assert "Ada&#x27;s draft" in own.text or "Ada's draft" in own.text


# -- ?object= with a key that is not the model's ---------------------------------------------


@pytest.mark.parametrize(
    "value", ["testapp.post:abc", "testapp.post:1.5", "testapp.post:", "testapp.post:" + "9" * 30]
)
def test_the_logs_object_filter_answers_a_bad_key_with_an_empty_list(
    django_user_model, value
) -> None:
    attempt(target="/posts/one/")
    viewer = staff_client(django_user_model, "viewer", VIEW)

    response = viewer.get(f"/admin/roan/purgeattempt/?object={value}")

    assert response.status_code == 200
    assert "/posts/one/" not in response.text
