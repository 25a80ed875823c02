"""Issue 28's rough edges of the admin, in the HTML: the preview of a rule form before it
is saved, filters and fields only where a configured backend uses them, a log nobody
deletes from, the dashboard's count axis, "Purge URLs" in the sidebar, the wording.

The same points in Chromium, widths and colour schemes included:
tests/admin/test_browser_layout.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType

from roan.admin import dashboard
from roan.backends.base import Progress
from roan.backends.locmem import LocMemBackend
from roan.models import PurgeAttempt, PurgeRule
from tests.support.admin_helpers import VIEW, attempt, staff_client
from tests.testapp.models import Author, Post

pytestmark = pytest.mark.django_db

DRAFT_URL = "/admin/roan/purgerule/preview/"


class LaterBackend(LocMemBackend):
    """A cache that finishes its invalidations in the background, as CloudFront does."""

    def status(self, node: str, purge_ids: Sequence[str]) -> dict[str, Progress]:
        return {purge_id: Progress(True) for purge_id in purge_ids}


LATER = {"BACKEND": f"{__name__}.LaterBackend"}
LOCMEM = {"BACKEND": "roan.backends.locmem.LocMemBackend"}


def draft(**fields: Any) -> dict[str, Any]:
    return {
        "name": "draft",
        "content_type": str(ContentType.objects.get_for_model(Post).pk),
        "templates": "/posts/\n/posts/{slug}/",
        "on_save": "on",
        "on_delete": "on",
        "description": "",
        **fields,
    }


# -- the preview of the rule form, before it is saved -------------------------------------


def test_the_form_previews_a_rule_that_is_not_saved_and_writes_and_sends_nothing(
    admin_client: Any, outbox: list[Any]
) -> None:
    post = Post.objects.create(title="Hello", slug="hello")
    outbox.clear()

    chooser = admin_client.post(DRAFT_URL, draft())
    assert chooser.status_code == 200
    # The choice of object carries the form's fields along.
    assert 'name="templates" value="/posts/\n/posts/{slug}/"' in chooser.text
    assert f'<option value="{post.pk}"' in chooser.text

    shown = admin_client.post(DRAFT_URL, {**draft(), "object_id": str(post.pk)})
    assert [line.target for line in shown.context["lines"]] == ["/posts/", "/posts/hello/"]
    assert "not saved" in shown.context["title"]
    assert "Send a test purge" not in shown.text  # a test purge needs the saved rule
    assert not PurgeRule.objects.exists()
    assert outbox == [] and not PurgeAttempt.objects.exists()


def test_previewing_an_edit_shows_the_edit_and_leaves_the_saved_rule_as_it_was(
    admin_client: Any, post_rule: PurgeRule
) -> None:
    post = Post.objects.create(
        title="Hello", slug="hello", author=Author.objects.create(username="ada")
    )
    edit = draft(name=post_rule.name, templates="/authors/{author.username}/", object_id=post.pk)

    shown = admin_client.post(f"{DRAFT_URL}?rule={post_rule.pk}", edit)

    # The rule's own name is no clash with itself.
    assert shown.context["problem"] == ""
    assert [line.target for line in shown.context["lines"]] == ["/authors/ada/"]
    post_rule.refresh_from_db()
    assert post_rule.templates == "/posts/\n/posts/{slug}/"


def test_a_draft_that_would_not_save_shows_the_forms_errors(admin_client: Any) -> None:
    shown = admin_client.post(DRAFT_URL, draft(templates="/posts/{nope}/"))
    assert shown.status_code == 200
    assert shown.context["problem"].startswith("Fix the form first.")
    assert "nope" in shown.context["problem"] and shown.context["lines"] == []


def test_a_draft_purging_everything_needs_purge_all_as_saving_it_does(
    django_user_model: Any,
) -> None:
    client = staff_client(django_user_model, "ed", [*VIEW, "roan.add_purgerule"])
    Post.objects.create(title="Hello", slug="hello")
    shown = client.post(DRAFT_URL, draft(templates="/*"))
    assert "purge_all" in shown.context["problem"] and shown.context["lines"] == []


def test_the_draft_preview_takes_a_post_and_the_permission_to_write_rules(
    django_user_model: Any, post_rule: PurgeRule
) -> None:
    viewer = staff_client(django_user_model, "viewer", VIEW)
    assert viewer.post(DRAFT_URL, draft()).status_code == 403
    assert viewer.post(f"{DRAFT_URL}?rule={post_rule.pk}", draft()).status_code == 403
    adder = staff_client(django_user_model, "adder", [*VIEW, "roan.add_purgerule"])
    assert adder.get(DRAFT_URL).status_code == 405
    assert adder.post(DRAFT_URL, draft()).status_code == 200
    # Adding is not changing: an adder may not preview edits of a saved rule.
    assert adder.post(f"{DRAFT_URL}?rule={post_rule.pk}", draft()).status_code == 403
    assert adder.post(f"{DRAFT_URL}?rule=abc", draft()).status_code == 404


def test_the_rule_form_has_the_preview_button_after_its_save_buttons(
    admin_client: Any, post_rule: PurgeRule
) -> None:
    add = admin_client.get("/admin/roan/purgerule/add/").text
    assert f'formaction="{DRAFT_URL}"' in add
    # Enter in a field presses the form's first button: Save, never the preview.
    assert add.index('name="_save"') < add.index('id="roan-draft-preview"')
    change = admin_client.get(f"/admin/roan/purgerule/{post_rule.pk}/change/").text
    assert f'formaction="{DRAFT_URL}?rule={post_rule.pk}"' in change


def test_a_rule_saved_unchecked_is_saved_disabled(admin_client: Any) -> None:
    data = draft()  # no "enabled": the checkbox left unchecked
    response = admin_client.post("/admin/roan/purgerule/add/", data)
    assert response.status_code == 302
    assert PurgeRule.objects.get().enabled is False


# -- filters and fields only where used -------------------------------------------------------


def filter_titles(client: Any) -> list[str]:
    response = client.get("/admin/roan/purgeattempt/")
    return [str(spec.title) for spec in response.context["cl"].filter_specs if spec.has_output()]


def test_the_log_leaves_out_the_filters_a_configuration_never_uses(
    admin_client: Any, settings: Any, make_rule: Any
) -> None:
    settings.ROAN_BACKENDS = {"default": LOCMEM}
    make_rule("posts", "/posts/")
    attempt()
    # One backend, the rules of one model, no CDN finishing later.
    assert filter_titles(admin_client) == ["status", "trigger", "rule"]

    settings.ROAN_BACKENDS = {"default": LOCMEM, "cdn": LATER}
    make_rule("authors", "/authors/", model=Author)
    assert filter_titles(admin_client) == [
        "status", "backend", "trigger", "rule", "completion", "model"
    ]  # fmt: skip


def test_a_filter_in_use_stays_shown(admin_client: Any, settings: Any) -> None:
    settings.ROAN_BACKENDS = {"default": LOCMEM}
    response = admin_client.get("/admin/roan/purgeattempt/?completion__exact=in_progress")
    assert response.status_code == 200
    shown = [str(s.title) for s in response.context["cl"].filter_specs if s.has_output()]
    assert "completion" in shown


def test_the_rule_filter_names_the_attempts_of_no_rule(admin_client: Any, post_rule: Any) -> None:
    attempt()
    page = admin_client.get("/admin/roan/purgeattempt/").text
    assert "none (manual, code or API)" in page
    assert 'title="-"' not in page and ">-</a>" not in page


def test_the_rules_model_filter_reads_as_the_column_does(admin_client: Any, make_rule: Any) -> None:
    make_rule("posts", "/posts/")
    make_rule("authors", "/authors/", model=Author)
    page = admin_client.get("/admin/roan/purgerule/").text
    assert "Testapp | post" not in page and "testapp | post" not in page
    filters = page.split('id="changelist-filter"')[1]
    assert ">Post</a>" in filters and ">Author</a>" in filters


def test_the_attempt_page_leaves_out_the_fields_the_attempt_left_empty(
    admin_client: Any,
) -> None:
    bare = attempt(status="ok", backend="site", node="site", target="/x/")
    page = admin_client.get(f"/admin/roan/purgeattempt/{bare.pk}/change/").text
    for absent in ("HTTP status", "Latency", "Purge id", "Coalesced", "Verification",
                   "Next attempt", "Error", "Rule:", "Object:", "User:"):  # fmt: skip
        assert f">{absent}" not in page, absent
    assert ">Status:" in page and ">Backend:" in page and ">Trigger:" in page

    full = attempt(status="failed", http_status=503, latency_ms=3.0, error="down", purge_id="p-1")
    page = admin_client.get(f"/admin/roan/purgeattempt/{full.pk}/change/").text
    for shown in ("HTTP status", "Latency", "Error", "Purge id"):
        assert f">{shown}" in page, shown


def test_nobody_deletes_from_the_log_not_even_a_superuser(admin_client: Any) -> None:
    row = attempt()
    page = admin_client.get(f"/admin/roan/purgeattempt/{row.pk}/change/").text
    assert "deletelink" not in page
    listing = admin_client.get("/admin/roan/purgeattempt/").text
    assert 'value="delete_selected"' not in listing
    delete = admin_client.post(f"/admin/roan/purgeattempt/{row.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403 and PurgeAttempt.objects.filter(pk=row.pk).exists()


def test_the_dashboard_names_cdn_invalidations_only_with_a_backend_that_makes_them(
    admin_client: Any, settings: Any
) -> None:
    settings.ROAN_BACKENDS = {"default": LOCMEM}
    assert 'id="roan-in-progress"' not in admin_client.get("/admin/roan/dashboard/").text
    settings.ROAN_BACKENDS = {"default": LOCMEM, "cdn": LATER}
    assert 'id="roan-in-progress"' in admin_client.get("/admin/roan/dashboard/").text


# -- the dashboard's axis, the sidebar, the wording ---------------------------------------------


@pytest.mark.parametrize(
    ("most", "top"),
    [(0, 2), (1, 2), (3, 4), (5, 6), (7, 10), (9, 10), (11, 20), (40, 50), (120, 200)],
)
def test_a_count_axis_is_labelled_in_whole_numbers(most: int, top: int) -> None:
    assert dashboard.count_ceiling(most) == top
    buckets = [dashboard.Hour(start=dashboard.timezone.now(), ok=most)]
    labels = [tick["label"] for tick in dashboard.purge_chart(buckets)["axis"]]
    assert all(label.replace(",", "").isdigit() for label in labels), labels


def test_an_empty_dashboard_has_no_half_purge_on_its_axis(admin_client: Any) -> None:
    chart = admin_client.get("/admin/roan/dashboard/").context["purge_chart"]
    assert [tick["label"] for tick in chart["axis"]] == ["0", "1", "2"]


def test_purge_urls_is_in_the_sidebar_for_those_who_may_purge(django_user_model: Any) -> None:
    purger = staff_client(django_user_model, "purger", [*VIEW, "roan.purge_now"])
    page = purger.get("/admin/roan/purgeattempt/").text
    assert 'href="/admin/roan/purge/"' in page.split('id="nav-sidebar"')[1]
    viewer = staff_client(django_user_model, "viewer", VIEW)
    assert 'href="/admin/roan/purge/"' not in viewer.get("/admin/roan/purgeattempt/").text


def test_an_objects_tools_say_what_each_does(admin_client: Any, post_rule: Any) -> None:
    post = Post.objects.create(title="Hello", slug="hello")
    page = admin_client.get(f"/admin/testapp/post/{post.pk}/change/").text
    assert ">Purge history</a>" in page
    assert ">Purges</a>" not in page


def test_the_preview_names_the_models_objects_without_a_wrong_article(
    admin_client: Any, make_rule: Any
) -> None:
    rule = make_rule("authors", "/authors/{username}/", model=Author)
    page = admin_client.get(f"/admin/roan/purgerule/{rule.pk}/preview/").text
    assert "a author" not in page
    assert "Search the authors:" in page


def test_the_dashboard_says_retries_and_total(admin_client: Any) -> None:
    page = admin_client.get("/admin/roan/dashboard/").text
    assert "Retried tries" not in page
    assert ">Retries<" in page and ">Total<" in page
