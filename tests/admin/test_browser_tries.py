"""The attempt page's "Tries" table in Chromium at 1280 px, light and dark (issue 12): an
attempt retried twice then purged lists its three tries, and the table fits the page."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from roan.models import PurgeAttempt
from tests.support.browser import Admin, new_context, sign_in
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_attempt_page_lists_each_try(
    browser: Any,
    live_server: Any,
    admin_user: Any,
    settings: Any,
    fake_cache: Any,
    post_rule: Any,
    scheme: str,
) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{fake_cache.url}/purge",
            "TIMEOUT": (1.0, 2.0),
        }
    }
    fake_cache.status = 503
    Post.objects.create(title="T", slug="busy")
    for status in (503, 200):  # the retries, as roan_dispatch sends them once due
        fake_cache.status = status
        PurgeAttempt.objects.exclude(next_attempt_at=None).update(next_attempt_at=timezone.now())
        call_command("roan_dispatch", verbosity=0)
    attempt = PurgeAttempt.objects.get(target="/posts/busy/")
    assert (attempt.status, attempt.tries) == ("ok", 3)

    context = new_context(browser, color_scheme=scheme)
    try:
        page = sign_in(context, live_server.url, admin_user.username, password="password")
        admin = Admin(page, live_server.url, admin_user)
        admin.open(f"/admin/roan/purgeattempt/{attempt.pk}/change/")
        rows = page.locator("#roan-tries tr.roan-try")
        assert rows.count() == 3
        cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(3)]
        assert [c[0] for c in cells] == ["1", "2", "3"]
        assert [(c[2], c[3]) for c in cells] == [
            ("failed", "503"),
            ("failed", "503"),
            ("ok", "200"),
        ]
        assert all(c[4].replace("\xa0", " ").endswith(" ms") for c in cells)
        assert cells[0][5].startswith("HTTP 503")
        table = page.locator("#roan-tries table")
        assert table.is_visible()
        width, box = table.evaluate("e => [e.scrollWidth, e.parentElement.clientWidth]")
        assert width <= box + 1
        page.locator("#roan-tries").scroll_into_view_if_needed()
        admin.screenshot(f"admin-attempt-tries-{scheme}")
    finally:
        context.close()
