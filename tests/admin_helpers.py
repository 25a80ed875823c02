"""Users with given permissions, and attempt rows, for the admin tests."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.test import Client

from roan.models import PurgeAttempt

VIEW = ["roan.view_purgerule", "roan.view_purgeattempt", "testapp.view_post"]


def staff_client(django_user_model: Any, username: str, perms: list[str]) -> Client:
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    client.user = user  # type: ignore[attr-defined]
    return client


def attempt(**fields: Any) -> PurgeAttempt:
    values: dict[str, Any] = {
        "backend": "default",
        "node": "default",
        "target": "/x/",
        "trigger": "save",
        "status": "ok",
    }
    values.update(fields)
    return PurgeAttempt.objects.create(**values)
