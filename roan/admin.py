"""The editor's side: rules and the purge log in the Django admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from roan import dashboard
from roan.forms import PurgeRuleForm
from roan.models import PurgeAttempt, PurgeRule


@admin.register(PurgeRule)
class PurgeRuleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = PurgeRuleForm
    list_display = [
        "name",
        "content_type",
        "on_save",
        "on_delete",
        "on_m2m",
        "enabled",
        "updated_at",
    ]
    list_filter = ["enabled", "content_type"]
    search_fields = ["name", "templates", "description"]
    fieldsets = [
        (None, {"fields": ["name", "content_type", "templates", "backends", "enabled"]}),
        ("Events", {"fields": ["on_save", "on_delete", "on_m2m"]}),
        ("Notes", {"fields": ["description"], "classes": ["collapse"]}),
    ]


@admin.register(PurgeAttempt)
class PurgeAttemptAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "created_at",
        "target",
        "backend",
        "node",
        "status",
        "http_status",
        "latency_ms",
        "trigger",
        "rule_name",
        "object_repr",
        "user",
    ]
    list_filter = ["status", "backend", "trigger"]
    list_select_related = ["user"]
    search_fields = ["target"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


# The dashboard at admin/roan/dashboard/ (roan/dashboard.py), listed with the models.
dashboard.register(admin.site)
