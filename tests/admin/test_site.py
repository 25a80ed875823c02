"""roan.admin.register(site): everything roan has in the admin, on a project's own
AdminSite, with its permissions and CSRF; and the one re-purge behind three buttons."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import path

import roan.admin
from roan.models import PurgeAttempt, PurgeRule
from tests.support.admin_helpers import VIEW, attempt, staff_client
from tests.testapp.models import Post

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

office = admin.AdminSite(name="office")
roan.admin.register(office)
roan.admin.register(office)  # a second call changes nothing
urlpatterns = [path("office/", office.urls), path("admin/", admin.site.urls)]


def roan_pages(rule: PurgeRule, old: PurgeAttempt) -> list[str]:
    content_type = ContentType.objects.get_for_model(Post).pk
    return [
        "/office/roan/",
        "/office/roan/purgerule/",
        "/office/roan/purgerule/add/",
        f"/office/roan/purgerule/{rule.pk}/change/",
        f"/office/roan/purgerule/{rule.pk}/preview/",
        f"/office/roan/purgerule/placeholders/?content_type={content_type}",
        "/office/roan/purgeattempt/",
        f"/office/roan/purgeattempt/{old.pk}/change/",
        "/office/roan/backendstate/",
        "/office/roan/dashboard/",
        "/office/roan/purge/",
    ]


def test_one_call_puts_every_roan_page_on_a_custom_site(admin_client: Client, post_rule) -> None:
    old = attempt(status="failed")

    for url in roan_pages(post_rule, old):
        response = admin_client.get(url)
        assert response.status_code == 200, url

    index = admin_client.get("/office/").text
    # "Purge URLs" is listed too (for those who may purge), in the index and the sidebar.
    for listed in ("purgerule", "purgeattempt", "backendstate", "dashboard", "purge"):
        assert f'href="/office/roan/{listed}/"' in index
    # The pages link within the site they are on.
    page = admin_client.get("/office/roan/purge/").text
    assert 'href="/office/roan/"' in page and 'href="/admin/' not in page
    assert 'action="/office/roan/purge/all/"' in page


def test_on_a_custom_site_every_page_asks_for_a_login(client: Client, post_rule) -> None:
    old = attempt(status="failed")

    for url in roan_pages(post_rule, old):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/office/login/"), url


def test_on_a_custom_site_the_purge_controls_need_purge_now(
    django_user_model: Any, post_rule, outbox
) -> None:
    viewer = staff_client(django_user_model, "viewer", VIEW)
    old = attempt(status="failed")

    assert viewer.get("/office/roan/dashboard/").status_code == 200
    assert viewer.get("/office/roan/purge/").status_code == 403
    form = {"urls": "/a/", "kind": "url", "backends": ["default"]}
    assert viewer.post("/office/roan/purge/", form).status_code == 403
    assert viewer.post("/office/roan/purge/all/", {"backend": "default"}).status_code == 403
    assert viewer.post(f"/office/roan/purgeattempt/{old.pk}/repurge/").status_code == 403
    assert viewer.post(f"/office/roan/dashboard/repurge/{old.pk}/").status_code == 403
    assert list(PurgeAttempt.objects.values_list("pk", flat=True)) == [old.pk]
    assert outbox == []


def test_on_a_custom_site_the_purge_controls_need_the_csrf_token(admin_user: Any, outbox) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    old = attempt(status="failed")

    form = {"urls": "/a/", "kind": "url", "backends": ["default"]}
    assert client.post("/office/roan/purge/", form).status_code == 403
    assert client.post(f"/office/roan/purgeattempt/{old.pk}/repurge/").status_code == 403
    assert client.post(f"/office/roan/dashboard/repurge/{old.pk}/").status_code == 403
    assert list(PurgeAttempt.objects.values_list("pk", flat=True)) == [old.pk]
    assert outbox == []

    # With the token the same purge goes through.
    token = client.get("/office/roan/purge/").cookies["csrftoken"].value
    response = client.post("/office/roan/purge/", {**form, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert PurgeAttempt.objects.filter(target="/a/", user=admin_user).exists()


# -- one re-purge behind three buttons ----------------------------------------------------


def repurge_by(client: Client, route: str, old: PurgeAttempt) -> Any:
    if route == "log action":
        data = {"action": "repurge_selected", "_selected_action": [old.pk]}
        return client.post("/office/roan/purgeattempt/", data, follow=True)
    if route == "attempt page":
        return client.post(f"/office/roan/purgeattempt/{old.pk}/repurge/", follow=True)
    return client.post(f"/office/roan/dashboard/repurge/{old.pk}/", follow=True)


ROUTES = ["log action", "attempt page", "dashboard"]


@pytest.mark.django_db(transaction=True)  # the purges are sent once the request commits
@pytest.mark.parametrize("route", ROUTES)
def test_every_re_purge_of_everything_needs_purge_all(
    django_user_model: Any, outbox, route: str
) -> None:
    purger = staff_client(django_user_model, "purger", [*VIEW, "roan.purge_now"])
    old = attempt(status="failed", kind="all", target="")

    response = repurge_by(purger, route, old)

    messages = [str(m) for m in response.context["messages"]]
    assert any("needs the purge_all permission" in m for m in messages)
    assert list(PurgeAttempt.objects.values_list("pk", flat=True)) == [old.pk]
    assert outbox == []


@pytest.mark.django_db(transaction=True)  # the purges are sent once the request commits
@pytest.mark.parametrize("route", ROUTES)
def test_every_re_purge_of_everything_goes_through_with_purge_all(
    django_user_model: Any, outbox, route: str
) -> None:
    perms = [*VIEW, "roan.purge_now", "roan.purge_all"]
    operator = staff_client(django_user_model, "operator", perms)
    old = attempt(status="failed", kind="all", target="")

    repurge_by(operator, route, old)

    assert [r.kind for _node, r in outbox] == ["all"]
    again = PurgeAttempt.objects.exclude(pk=old.pk).get()
    assert (again.trigger, again.user.username) == ("admin", "operator")


@pytest.mark.parametrize("route", ["attempt page", "dashboard"])
def test_a_re_purge_button_answers_only_a_post(admin_client: Client, route: str) -> None:
    old = attempt(status="failed")
    url = {
        "attempt page": f"/office/roan/purgeattempt/{old.pk}/repurge/",
        "dashboard": f"/office/roan/dashboard/repurge/{old.pk}/",
    }[route]

    assert admin_client.get(url).status_code == 405
    assert PurgeAttempt.objects.count() == 1
