"""The pause toggle in the admin: a permission-checked action, CSRF as usual."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import caches
from django.test import Client

import roan
from roan.models import BackendState, PurgeAttempt

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/roan/backendstate/"


@pytest.fixture(autouse=True)
def _two_backends(settings) -> Iterator[None]:
    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend", "LABEL": "Local"},
        "edge": {"BACKEND": "roan.backends.locmem.LocMemBackend", "PAUSED": True},
    }
    caches["default"].clear()
    yield
    caches["default"].clear()


def act(client: Client, action: str, *aliases: str) -> Any:
    pks = BackendState.objects.filter(alias__in=aliases).values_list("pk", flat=True)
    return client.post(
        CHANGELIST, {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True
    )


def test_every_configured_backend_is_listed_with_its_state(admin_client) -> None:
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert sorted(BackendState.objects.values_list("alias", flat=True)) == ["default", "edge"]
    text = response.content.decode()
    assert "Local" in text and "Pause sending" in text and "Resume" in text


def test_pausing_queues_purges_and_resuming_sends_them(admin_client, admin_user, outbox) -> None:
    admin_client.get(CHANGELIST)
    response = act(admin_client, "pause_backends", "default")
    assert "Paused 1 backend" in response.content.decode()
    state = BackendState.objects.get(alias="default")
    assert state.paused and state.paused_by == admin_user and state.paused_at is not None

    roan.purge_urls(["/a/", "/b/"], backends=["default"])
    assert outbox == []
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"pending"}

    response = act(admin_client, "resume_backends", "default")
    assert "2 queued attempt(s) are being sent" in response.content.decode()
    assert sorted(r.target for _node, r in outbox) == ["/a/", "/b/"]
    assert set(PurgeAttempt.objects.values_list("status", flat=True)) == {"ok"}
    state.refresh_from_db()
    assert (state.paused, state.paused_by) == (False, None)


def test_resuming_a_backend_paused_by_its_option_says_it_stays_paused(admin_client, outbox) -> None:
    admin_client.get(CHANGELIST)
    roan.purge_urls(["/c/"], backends=["edge"])
    response = act(admin_client, "resume_backends", "edge")
    assert "Still paused by their PAUSED option" in response.content.decode()
    assert outbox == []
    assert PurgeAttempt.objects.get().status == "pending"


def test_the_toggle_needs_the_change_permission(client, admin_client) -> None:
    admin_client.get(CHANGELIST)
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_backendstate"))
    client.force_login(viewer)
    assert client.get(CHANGELIST).status_code == 200
    act(client, "pause_backends", "default")
    assert not BackendState.objects.get(alias="default").paused


def test_the_toggle_needs_a_csrf_token(admin_user) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    client.get(CHANGELIST)
    response = act(client, "pause_backends", "default")
    assert response.status_code == 403
    assert not BackendState.objects.get(alias="default").paused
