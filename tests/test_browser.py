"""The editor's admin in a real browser (Chromium): rules, the purge log, the dashboard.

Each test signs in through the login form (``admin_page``, from ``tests/browser.py``)
and saves screenshots to ``screenshots/`` for a person to review.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from roan.models import PurgeAttempt, PurgeRule
from tests.browser import Admin, new_context, sign_in
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_a_rule_with_a_bad_template_shows_the_error_then_saves_when_fixed(
    admin_page: Admin,
) -> None:
    page = admin_page.page
    admin_page.open("/admin/roan/purgerule/add/")
    page.fill("#id_name", "post pages")
    page.select_option("#id_content_type", str(ContentType.objects.get_for_model(Post).pk))
    page.fill("#id_templates", "/posts/\n/posts/{title.nope}/")
    page.click("input[name=_save]")

    error = page.locator(".field-templates .errorlist")
    assert "Line 2" in error.inner_text()
    assert not PurgeRule.objects.exists()
    admin_page.screenshot("rule-form-error")

    page.fill("#id_templates", "/posts/\n/posts/{slug}/")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/roan/purgerule/")
    assert any("post pages" in m for m in admin_page.messages())
    assert PurgeRule.objects.get().template_lines == ["/posts/", "/posts/{slug}/"]


def test_editing_a_post_shows_an_ok_attempt_with_its_latency_in_the_log(
    admin_page: Admin, post_rule: PurgeRule, outbox: list[Any]
) -> None:
    page = admin_page.page
    post = Post.objects.create(title="Hello", slug="hello")
    PurgeAttempt.objects.all().delete()  # only the editor's purges below

    admin_page.open(f"/admin/testapp/post/{post.pk}/change/")
    page.fill("#id_title", "Hello again")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/testapp/post/")

    admin_page.open("/admin/roan/purgeattempt/")
    row = page.locator("#result_list tbody tr", has_text="/posts/hello/")
    assert row.count() == 1
    assert row.locator("td.field-status_badge").inner_text().strip() == "ok"
    latency = row.locator("td.field-latency").inner_text().strip()
    assert latency.endswith(" ms") and float(latency.removesuffix(" ms")) >= 0
    assert row.locator("td.field-user").inner_text().strip() == "editor"
    admin_page.screenshot("purge-log")
    assert ("default", "/posts/hello/") in [(node, r.target) for node, r in outbox]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_dashboard_reads_well_in_light_and_dark_mode(
    browser: Any, live_server: Any, admin_user: Any, settings: Any, scheme: str
) -> None:
    settings.ROAN_BACKENDS = BACKENDS
    total = seed_attempts()
    context = new_context(browser, color_scheme=scheme)
    try:
        page = sign_in(context, live_server.url, admin_user.username, password="password")
        admin = Admin(page, live_server.url, admin_user)
        page.click("#content-main a[href$='/admin/roan/dashboard/']")
        page.wait_for_url("**/admin/roan/dashboard/")
        assert page.locator("h1").inner_text() == "Purge dashboard"
        # The breadcrumbs keep the admin's own band (their markup differs by Django version;
        # Django 6 draws the separators in CSS).
        crumbs = page.locator(".breadcrumbs")
        words = [w for w in crumbs.inner_text().split() if w != "\u203a"]
        assert words == ["Home", "Roan", "Purge", "dashboard"]
        band = crumbs.evaluate("e => getComputedStyle(e).backgroundColor")
        assert band not in {"rgba(0, 0, 0, 0)", "transparent"}
        assert page.locator("#roan-windows .roan-window-24h .roan-total").inner_text() == str(total)
        # The charts follow the admin's theme: page and bar colours switch together.
        colours = page.evaluate(
            """() => [getComputedStyle(document.body).backgroundColor,
                      getComputedStyle(document.querySelector('rect.roan-failed')).fill,
                      getComputedStyle(document.querySelector('.roan-tick')).fill]"""
        )
        expected = {
            "light": ["rgb(255, 255, 255)", "rgb(186, 33, 33)", "rgb(102, 102, 102)"],
            "dark": ["rgb(18, 18, 18)", "rgb(227, 95, 95)", "rgb(208, 208, 208)"],
        }
        assert colours == expected[scheme]
        admin.screenshot(f"dashboard-{scheme}")
    finally:
        context.close()


def test_re_purging_a_failure_from_the_dashboard_writes_a_new_attempt_naming_the_editor(
    admin_page: Admin, settings: Any, outbox: list[Any]
) -> None:
    settings.ROAN_BACKENDS = BACKENDS
    seed_attempts()
    failed = PurgeAttempt.objects.filter(status="failed").latest()
    page = admin_page.page
    admin_page.open("/admin/roan/dashboard/")
    page.locator("#roan-failures tr", has_text=failed.target).get_by_role(
        "button", name=f"Re-purge {failed.target}"
    ).first.press("Enter")  # a keyboard user: focus the button, press Enter
    page.wait_for_url("**/admin/roan/dashboard/")
    assert any(failed.target in m for m in admin_page.messages())
    again = PurgeAttempt.objects.get(target=failed.target, trigger="admin")
    assert (again.backend, again.user_id, again.status) == ("varnish", admin_page.user.pk, "ok")
    failed.refresh_from_db()
    assert failed.status == "failed"  # the old row is history, never edited
    assert ("varnish-1", failed.target) in [(node, r.target) for node, r in outbox]
