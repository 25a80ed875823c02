"""The editor's admin in a real browser (Chromium): rules, preview, the purge log and
re-purge (behind a real nginx), a CSV import with a bad row, the dashboard.

Each test signs in through the login form (``admin_page``, from ``tests/support/browser.py``)
and saves screenshots to ``screenshots/`` for a person to review.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.contrib.contenttypes.models import ContentType

from roan.models import PurgeAttempt, PurgeRule
from tests.support.admin_helpers import BACKENDS, seed_attempts
from tests.support.browser import DOCS, SCREENSHOTS, Admin, new_context, sign_in
from tests.support.caches import start_nginx
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


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
    admin_page.screenshot("rules-list")


@pytest.fixture(scope="module")
def nginx_site(live_server: Any) -> Iterator[Any]:
    """A real nginx cache in front of the live server, so "ok" and latencies are real."""
    node = start_nginx(live_server.thread.port)
    yield node
    node.close()


def cache_status(url: str) -> str:
    return requests.get(url, timeout=5).headers.get("X-Cache-Status", "")


def test_the_preview_shows_a_posts_urls_and_backends_and_sends_nothing(
    admin_page: Admin, make_rule: Any, settings: Any, outbox: list[Any]
) -> None:
    settings.ROAN_BACKENDS = BACKENDS
    rule = make_rule("post pages", "/posts/\n/posts/{slug}/", backends=["nginx", "varnish"])
    post = Post.objects.create(title="Hello", slug="hello")
    outbox.clear()
    PurgeAttempt.objects.all().delete()
    page = admin_page.page

    admin_page.open(f"/admin/roan/purgerule/{rule.pk}/change/")
    page.click("text=Preview and test")
    page.select_option("#id_object_id", str(post.pk))
    page.click("input[type=submit][value=Preview]")

    rows = page.locator("#content-main .module table tbody tr")
    cells = [[c.strip() for c in rows.nth(i).locator("td").all_inner_texts()[:4]]
             for i in range(rows.count())]  # fmt: skip
    assert cells == [
        ["url", "/posts/", "nginx", "nginx-a, nginx-b"],
        ["url", "/posts/hello/", "nginx", "nginx-a, nginx-b"],
        ["url", "/posts/", "varnish", "varnish-1"],
        ["url", "/posts/hello/", "varnish", "varnish-1"],
    ]
    assert page.get_by_role("button", name="Send a test purge").is_visible()
    admin_page.screenshot("rule-preview")
    assert outbox == [] and not PurgeAttempt.objects.exists()  # a preview sends nothing


def test_an_edit_purges_nginx_and_a_re_purge_from_the_log_writes_a_new_attempt(
    admin_page: Admin, post_rule: PurgeRule, settings: Any, nginx_site: Any
) -> None:
    nginx = {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": f"{nginx_site.url}/purge"}
    settings.ROAN_BACKENDS = {"nginx": nginx}
    post = Post.objects.create(title="Hello", slug="hello")
    public = f"{nginx_site.url}/posts/hello/"
    requests.get(public, timeout=5)
    assert cache_status(public) == "HIT"
    PurgeAttempt.objects.all().delete()  # only the editor's purges below
    page = admin_page.page

    admin_page.open(f"/admin/testapp/post/{post.pk}/change/")
    page.fill("#id_title", "Hello again")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/testapp/post/")
    assert requests.get(public, timeout=5).text.startswith("Hello again")

    admin_page.open("/admin/roan/purgeattempt/")
    row = page.locator("#result_list tbody tr", has_text="/posts/hello/")
    assert row.count() == 1
    assert row.locator("td.field-outcome_cell .roan-badge").inner_text().strip() == "ok"
    answer = row.locator("td.field-outcome_cell .roan-answer").inner_text().strip()
    status, latency = answer.split(" · ")
    assert status == "200" and latency.endswith(" ms") and float(latency.removesuffix(" ms")) > 0
    assert row.locator("td.field-cause .roan-user").inner_text().strip() == "editor"
    # The URL reads on one line (the column once shrank to a few letters per line).
    url_lines = row.locator("td.field-target_where .roan-url").evaluate(
        "e => { const r = document.createRange(); r.selectNodeContents(e);"
        " return r.getClientRects().length; }"
    )
    assert url_lines == 1
    admin_page.screenshot("purge-log")

    # Cached again since the edit; the editor sends the purge once more from the log.
    requests.get(public, timeout=5)
    assert cache_status(public) == "HIT"
    edited = PurgeAttempt.objects.get(target="/posts/hello/")
    before = PurgeAttempt.objects.filter(pk=edited.pk).values().get()
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "repurge_selected")
    page.click("#changelist-form button[name=index]")
    page.wait_for_url("**/admin/roan/purgeattempt/")
    assert any("Re-purging 1 target" in m for m in admin_page.messages())

    again = PurgeAttempt.objects.exclude(pk=edited.pk).get(target="/posts/hello/")
    assert (again.trigger, again.user_id, again.status, again.http_status) == (
        "admin", admin_page.user.pk, "ok", 200)  # fmt: skip
    assert again.latency_ms is not None and again.latency_ms > 0
    assert PurgeAttempt.objects.filter(pk=edited.pk).values().get() == before  # history
    assert cache_status(public) == "MISS"
    # The new row is listed above the old one.
    rows = page.locator("#result_list tbody tr", has_text="/posts/hello/")
    causes = [t.split()[0] for t in rows.locator("td.field-cause").all_inner_texts()]
    assert causes == ["admin", "save"]
    admin_page.screenshot("purge-log-after-re-purge")

    page.click(".object-tools a:text-is('Purge URLs')")
    assert page.locator("h1").inner_text() == "Purge URLs"
    admin_page.screenshot("purge-urls")


def test_a_csv_import_with_one_bad_row_names_the_row_and_imports_nothing(
    admin_page: Admin,
) -> None:
    csv_text = (
        "name,model,templates,backends,on_save,on_delete,on_m2m,enabled,description\n"
        "post pages,testapp.post,/posts/{slug}/,,1,1,0,1,\n"
        "tag pages,testapp.tag,/tags/{nope}/,,1,1,0,1,\n"
        "author pages,testapp.author,/authors/{username}/,,1,1,0,1,\n"
    )
    page = admin_page.page
    admin_page.open("/admin/roan/purgerule/")
    page.click(".object-tools a:text-is('Import')")
    page.wait_for_url("**/admin/roan/purgerule/import/")
    page.set_input_files(
        "#id_import_file",
        {"name": "rules.csv", "mimeType": "text/csv", "buffer": csv_text.encode()},
    )
    page.select_option("#id_format", label="csv")
    with page.expect_navigation():
        page.click("input[type=submit][value=Submit]")

    assert page.locator("h2", has_text="Some rows failed to validate").is_visible()
    rows = page.locator("table.import-preview tbody tr")
    assert rows.count() == 1
    row = rows.first
    assert row.locator("td").first.inner_text().strip() == "2"
    # The reason shows in the row (import-export alone shows it only on hover).
    reason = row.locator(".validation-error-container")
    assert reason.is_visible() and "has no field named 'nope'" in reason.inner_text()
    assert page.locator("input[name=confirm]").count() == 0  # nothing to confirm
    admin_page.screenshot("import-error")
    assert not PurgeRule.objects.exists()


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
        if scheme == "light" and os.environ.get("ROAN_DOCS_SCREENSHOTS"):
            admin.screenshot("dashboard", folder=DOCS)  # the README's picture
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


def test_an_editor_saves_a_post_and_view_on_site_shows_the_new_title(
    browser: Any,
    demo: str,
) -> None:
    # The demo as `make demo` runs it (runserver, the page cache, roan purging it). The
    # browser has the post's page in its own cache before the edit: with the old
    # "max-age=600" the "View on site" click would show it from there, old title and all.
    context = new_context(browser)
    try:
        page = sign_in(context, demo, "admin", password="admin")
        page.goto(demo + "/posts/")
        link = page.locator("a[href^='/posts/']:not([href='/posts/'])").first
        path = link.get_attribute("href")
        page.goto(demo + path)
        old_title = page.locator("h1").inner_text().strip()
        page.goto(demo + path)  # read twice: it is in the browser's cache now
        assert page.locator("h1").inner_text().strip() == old_title

        page.goto(f"{demo}/admin/blog/post/?q={path.strip('/').split('/')[-1]}")
        page.locator("#result_list tbody tr th a").first.click()
        page.fill("#id_title", "Edited in the browser")
        page.click("input[name=_continue]")
        page.wait_for_selector("ul.messagelist li.success")

        page.click("a.viewsitelink")
        page.wait_for_url(demo + path)
        assert page.locator("h1").inner_text().strip() == "Edited in the browser"
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "view-on-site.png"))
    finally:
        context.close()
