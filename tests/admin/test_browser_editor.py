"""The editor's admin at 1280 px in Chromium (issue 12): what happened after a purge or a
save, the object's purges, the attempt page, and lists that fit the screen.

Each test drives the admin as an editor would and asserts what the page shows; the
screenshots (``screenshots/``) are for a person to look at.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from roan.models import PurgeAttempt, PurgeRule
from tests.support.browser import Admin, new_context, sign_in
from tests.testapp.models import Author, Post, Tag

pytestmark = pytest.mark.django_db(transaction=True)

BACKENDS = {
    "edge": {
        "BACKEND": "roan.backends.locmem.LocMemBackend",
        "NODES": ["http://varnish-1.internal:6081", "http://varnish-2.internal:6081"],
        "HOSTS": ["www.example.com"],
    },
    "pages": {"BACKEND": "roan.backends.locmem.LocMemBackend", "HOSTS": ["www.example.com"]},
}
#: How much wider than its box a list may be before it scrolls (rounding).
SLACK = 1


def overflow(admin: Admin, selector: str) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the first element matching ``selector``."""
    sizes = admin.page.locator(selector).first.evaluate("e => [e.scrollWidth, e.clientWidth]")
    return int(sizes[0]), int(sizes[1])


def seed_log(editor: Any) -> None:
    """A log as a busy site has it: long URLs and titles, node URLs, errors, every trigger."""
    author = Author.objects.create(username="ada", name="Ada Lovelace")
    post = Post.objects.create(
        title="A rather long title for a post about purging caches at the edge",
        slug="a-rather-long-title-for-a-post-about-purging-caches-at-the-edge",
        author=author,
    )
    rule = PurgeRule.objects.get(name="post pages")
    now = timezone.now()
    rows = []
    for n, (status, trigger, error) in enumerate(
        [
            ("ok", "save", ""),
            ("not_cached", "m2m", ""),
            (
                "failed",
                "retry",
                "HTTP 503 Service Unavailable from the cache; retried with backoff",
            ),
            ("gave_up", "save", "connect timeout after 2.0 s (ConnectTimeout)"),
            ("skipped", "admin", "host 'evil.example' is not in this backend's HOSTS"),
            ("ok", "code_rule", ""),
        ]
        * 4
    ):
        rows.append(
            {
                "backend": "edge",
                "node": "http://varnish-1.internal:6081",
                "host": "www.example.com",
                "target": f"/posts/{post.slug}/comments/page/{n}/?utm_source=newsletter",
                "trigger": trigger,
                "status": status,
                "http_status": 200 if status == "ok" else (503 if status == "failed" else None),
                "latency_ms": 6.022481 + n,
                "error": error,
                "rule_id": rule.pk,
                "rule_name": rule.name,
                "content_type_id": _post_type(),
                "object_pk": str(post.pk),
                "object_repr": post.title,
                "user_id": editor.pk,
            }
        )
    ids = PurgeAttempt.objects.write(rows)
    for n, pk in enumerate(ids):
        PurgeAttempt.objects.filter(pk=pk).update(
            created_at=now - datetime.timedelta(minutes=n * 7)
        )


def _post_type() -> int:
    from django.contrib.contenttypes.models import ContentType

    return ContentType.objects.get_for_model(Post).pk


@pytest.fixture
def rules(make_rule: Any, settings: Any) -> None:
    settings.ROAN_BACKENDS = BACKENDS
    make_rule(
        "post pages",
        "/authors/{author.username}/posts/{slug}/\n/posts/{slug}/\n/\n/posts/\n/tags/{tags.slug}/",
        on_m2m=True,
    )
    make_rule("tag pages", "/tags/{slug}/\n/tags/{slug}/feed.xml", model=Tag)


def test_the_purge_log_fits_at_1280_px_and_shows_errors_and_seconds(
    admin_page: Admin, rules: None
) -> None:
    seed_log(admin_page.user)
    admin_page.open("/admin/roan/purgeattempt/")
    page = admin_page.page

    scroll, client = overflow(admin_page, "#changelist .results")
    assert scroll <= client + SLACK, f"the log scrolls sideways: {scroll} > {client}"
    # The error is in the row, not only in a tooltip; times have seconds.
    row = page.locator("#result_list tbody tr", has_text="retried with backoff").first
    assert row.locator(".roan-error").is_visible()
    assert row.locator(".field-created .roan-clock").inner_text().count(":") == 2
    admin_page.screenshot("admin-purge-log-1280", full_page=False)

    page.set_viewport_size({"width": 1600, "height": 900})
    admin_page.open("/admin/roan/purgeattempt/")
    scroll, client = overflow(admin_page, "#changelist .results")
    assert scroll <= client + SLACK
    # Nothing is cut: every cell's content fits inside its cell.
    cut = page.evaluate(
        """() => [...document.querySelectorAll('#result_list td, #result_list th')]
                 .filter(c => c.scrollWidth > c.clientWidth + 1).length"""
    )
    assert cut == 0
    admin_page.screenshot("admin-purge-log-1600", full_page=False)


def test_the_rules_list_fits_and_never_breaks_a_placeholder(admin_page: Admin, rules: None) -> None:
    seed_log(admin_page.user)
    admin_page.open("/admin/roan/purgerule/")
    page = admin_page.page
    admin_page.screenshot("admin-rules-list")

    scroll, client = overflow(admin_page, "#changelist .results")
    assert scroll <= client + SLACK, f"the rules list scrolls sideways: {scroll} > {client}"
    cut = page.evaluate(
        """() => [...document.querySelectorAll('#result_list td, #result_list th')]
                 .filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.className)"""
    )
    assert cut == []
    activity = page.locator("#result_list td.field-activity").first.inner_text()
    assert "ago" in activity and "purges" in activity  # last fired and 24 h, both whole
    # Each placeholder reads on one line.
    split = page.evaluate(
        """() => [...document.querySelectorAll('#result_list .roan-placeholder')]
                 .filter(p => p.getClientRects().length > 1).map(p => p.textContent)"""
    )
    assert split == []
    assert "{author.username}" in page.locator("#result_list").inner_text()


def test_the_backends_page_fits(admin_page: Admin, rules: None) -> None:
    from roan import pauses

    admin_page.open("/admin/roan/backendstate/")  # creates the switches
    pauses.pause("pages", user=admin_page.user)
    admin_page.open("/admin/roan/backendstate/")
    state = admin_page.page.locator("#result_list tr", has_text="pages").locator("td.field-state")
    assert state.inner_text().startswith("paused") and "by editor" in state.inner_text()
    admin_page.screenshot("admin-backends")
    scroll, client = overflow(admin_page, "#changelist .results")
    assert scroll <= client + SLACK, f"the backends page scrolls sideways: {scroll} > {client}"


def test_a_purge_with_a_foreign_host_says_what_was_skipped(
    admin_page: Admin, rules: None, outbox: list[Any]
) -> None:
    page = admin_page.page
    admin_page.open("/admin/roan/purge/")
    assert page.locator("text=everything under these prefixes").count() == 1
    page.fill("#id_urls", "/posts/\nhttps://evil.example/x/")
    page.locator("#id_backends input[value=edge]").uncheck()
    page.click("input[type=submit][value=Purge]")
    page.wait_for_url("**/admin/roan/purgeattempt/**")

    [message] = page.locator("ul.messagelist li").all()
    assert "warning" in (message.get_attribute("class") or "")
    assert message.inner_text().startswith(
        "Purging 2 targets: 1 purged, 1 skipped, not sent (host 'evil.example' is not in "
        "this backend's HOSTS)."
    )
    admin_page.screenshot("admin-purge-message", full_page=False)
    message.locator("a", has_text="Show these attempts").click()
    page.wait_for_url("**/admin/roan/purgeattempt/?id__in=*")
    statuses = page.locator("#result_list td.field-outcome_cell .roan-badge").all_inner_texts()
    assert sorted(statuses) == ["ok", "skipped"]
    admin_page.screenshot("admin-purge-message-attempts")


def test_after_a_save_the_editor_is_led_to_the_posts_purges(
    admin_page: Admin, rules: None, outbox: list[Any]
) -> None:
    post = Post.objects.create(title="Hello", slug="hello")
    page = admin_page.page
    admin_page.open(f"/admin/testapp/post/{post.pk}/change/")
    page.fill("#id_title", "Hello again")
    page.click("input[name=_continue]")
    page.wait_for_selector("ul.messagelist li.success")

    texts = admin_page.messages()
    assert any(t.startswith("Cache purges for this change: ") for t in texts), texts
    admin_page.screenshot("admin-save-message")
    page.click(".object-tools a.roan-purges-link")
    page.wait_for_url("**/admin/roan/purgeattempt/?object=testapp.post:*")
    assert page.locator("#changelist-filter", has_text="By object").is_visible()
    targets = page.locator("#result_list .roan-url").all_inner_texts()
    assert "www.example.com/posts/hello/" not in targets  # no host on rule URLs
    assert "/posts/hello/" in targets
    admin_page.screenshot("admin-object-purges")

    page.go_back()
    page.click(".object-tools a:text-is('Purge cache now')")
    rows = page.locator("#roan-targets tbody tr")
    targets = [t.strip() for t in rows.locator("td.roan-target").all_inner_texts()]
    assert targets.count("/") == 1 and len(targets) == len(set(targets))
    assert "post pages" in rows.first.locator("td.roan-rules").inner_text()
    admin_page.screenshot("admin-purge-cache-confirmation")


def test_the_attempt_page_reads_well_and_re_purges(
    admin_page: Admin, rules: None, outbox: list[Any]
) -> None:
    seed_log(admin_page.user)
    failed = PurgeAttempt.objects.filter(status="failed").first()
    assert failed is not None
    page = admin_page.page
    admin_page.open(f"/admin/roan/purgeattempt/{failed.pk}/change/")

    assert page.locator(".field-latency .readonly").inner_text().strip().endswith(" ms")
    assert "." in page.locator(".field-latency .readonly").inner_text()
    assert len(page.locator(".field-latency .readonly").inner_text().split(".")[1]) == 4  # 1 ms
    assert page.locator(".field-created_exact .readonly").inner_text().count(":") == 2
    assert page.locator(".field-object_link .readonly a").count() == 1
    admin_page.screenshot("admin-attempt-page")

    page.click("#roan-repurge")
    page.wait_for_url(f"**/admin/roan/purgeattempt/{failed.pk}/change/")
    assert any("Re-purging 1 target" in m for m in admin_page.messages())


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_rule_form_warns_about_many_to_many_and_previews_by_name(
    browser: Any, live_server: Any, admin_user: Any, rules: None, scheme: str
) -> None:
    context = new_context(browser, color_scheme=scheme)
    try:
        page = sign_in(context, live_server.url, admin_user.username, password="password")
        admin = Admin(page, live_server.url, admin_user)
        rule = PurgeRule.objects.get(name="post pages")
        rule.on_m2m = False
        rule.save()
        Post.objects.create(title="Hello", slug="hello")
        admin.open(f"/admin/roan/purgerule/{rule.pk}/change/")
        warning = page.locator("#roan-m2m-warning")
        assert warning.is_visible() and "{tags.slug}" in warning.inner_text()
        assert page.locator("#roan-placeholders code", has_text="{author.username}").count()
        admin.screenshot(f"admin-rule-form-{scheme}")

        page.click("text=Preview and test")
        page.fill("#id_q", "hell")
        page.click("#roan-preview-search input[type=submit]")
        page.click("input[type=submit][value=Preview]")
        assert page.locator("#content-main td.roan-target", has_text="/posts/hello/").count()
        admin.screenshot(f"admin-rule-preview-{scheme}")
    finally:
        context.close()


def test_empty_states_say_how_to_fill_them(admin_page: Admin) -> None:
    admin_page.open("/admin/roan/purgeattempt/")
    box = admin_page.page.locator("#roan-empty")
    assert box.is_visible() and "add a purge rule" in box.inner_text()
    admin_page.screenshot("admin-empty-log")
    admin_page.open("/admin/roan/purgerule/")
    assert "No purge rules yet." in admin_page.page.locator("#roan-empty").inner_text()
    admin_page.screenshot("admin-empty-rules")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_dashboard_shows_a_paused_backend_and_nine_distinct_latency_lines(
    browser: Any, live_server: Any, admin_user: Any, settings: Any, scheme: str
) -> None:
    from roan import pauses

    aliases = [f"cache{n}" for n in range(9)]
    settings.ROAN_BACKENDS = {
        alias: {"BACKEND": "roan.backends.locmem.LocMemBackend"} for alias in aliases
    }
    now = timezone.now()
    rows = [
        {"backend": alias, "node": "default", "target": f"/p/{hour}/", "trigger": "save",
         "status": "ok", "latency_ms": 2.0 + n + hour % 3}
        for n, alias in enumerate(aliases) for hour in range(24)
    ]  # fmt: skip
    rows.append({"backend": "gone", "node": "gone", "target": "/old/", "trigger": "save",
                 "status": "ok", "latency_ms": 1.0})  # fmt: skip
    rows.append({"backend": "cache0", "node": "", "target": "/x/", "trigger": "admin",
                 "status": "skipped", "error": "refused"})  # fmt: skip
    ids = PurgeAttempt.objects.write(rows)
    for pk, row in zip(ids, rows, strict=True):
        hour = int(row["target"].split("/")[2]) if row["target"].startswith("/p/") else 1
        PurgeAttempt.objects.filter(pk=pk).update(created_at=now - datetime.timedelta(hours=hour))
    pauses.pause("cache3", user=admin_user)
    PurgeAttempt.objects.write(
        [
            {
                "backend": "cache3",
                "node": "default",
                "target": "/waiting/",
                "trigger": "save",
                "status": "pending",
            }
        ]
    )
    context = new_context(browser, color_scheme=scheme)
    try:
        page = sign_in(context, live_server.url, admin_user.username, password="password")
        admin = Admin(page, live_server.url, admin_user)
        admin.open("/admin/roan/dashboard/")
        paused = page.locator("#roan-paused")
        assert paused.is_visible()
        assert "cache3" in paused.inner_text() and "1 attempt waits" in paused.inner_text()
        backends = [t.split()[0] for t in page.locator("#roan-nodes tbody th").all_inner_texts()]
        assert backends == aliases  # not "gone", and no node-less row
        strokes = page.evaluate(
            """() => [...document.querySelectorAll('.roan-line')].map(g => {
                   const s = getComputedStyle(g.querySelector('polyline'));
                   return s.stroke + ' ' + s.strokeDasharray; })"""
        )
        assert len(strokes) == 9 and len(set(strokes)) == 9, strokes
        admin.screenshot(f"admin-dashboard-{scheme}")
    finally:
        context.close()
