"""Users with given permissions, and attempt rows, for the admin tests."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

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


BACKENDS = {
    "nginx": {"BACKEND": "roan.backends.locmem.LocMemBackend", "NODES": ["nginx-a", "nginx-b"]},
    "varnish": {"BACKEND": "roan.backends.locmem.LocMemBackend", "NODES": ["varnish-1"]},
}


def seed_attempts() -> int:
    """A day of attempts on three nodes, varnish-1 failing lately; returns how many."""
    now = timezone.now()
    rows: list[dict[str, Any]] = []
    times: list[datetime.datetime] = []
    for hour in range(24):
        for n in range(2 + (hour * 7) % 5):
            for backend, node, ms in (("nginx", "nginx-a", 4), ("nginx", "nginx-b", 5),
                                      ("varnish", "varnish-1", 12)):  # fmt: skip
                status = "not_cached" if n == 3 else "ok"
                if node == "varnish-1" and hour < 2 and n < 2:
                    status = "failed"
                rows.append(
                    {"backend": backend, "node": node, "target": f"/posts/{hour}-{n}/",
                     "trigger": "save", "status": status, "http_status": 503 if status ==
                     "failed" else 200, "latency_ms": ms + (hour + n) % 4,
                     "error": "HTTP 503 Service Unavailable" if status == "failed" else ""}
                )  # fmt: skip
                times.append(now - datetime.timedelta(hours=hour, minutes=5 + 9 * n))
    ids = PurgeAttempt.objects.write(rows)
    for pk, created in zip(ids, times, strict=True):
        PurgeAttempt.objects.filter(pk=pk).update(created_at=created)
    return len(ids)
