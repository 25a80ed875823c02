"""Browser fixtures: Debian's Chromium driven by Playwright against pytest-django's live server.

A pytest plugin (listed in ``tests/conftest.py``):

- ``browser`` (module-scoped): one Chromium for the module's tests. Never downloads a
  browser (no ``playwright install``): it runs ``/usr/bin/chromium``, and skips the test
  when that is missing (fails in CI, see ``tests.support.caches.require``).
- ``admin_page``: a fresh browser context (light colour scheme, 1280x900) signed in to the
  admin as a new superuser through the login form, on the live server.
- ``Admin`` (what ``admin_page`` returns): the page plus helpers to open admin URLs and
  save screenshots to ``screenshots/`` (git-ignored) for a person to look at; with
  ``ROAN_DOCS_SCREENSHOTS=1`` the light dashboard test also rewrites ``docs/dashboard.png``.

New steps (a rule preview, re-purging from the log, a CSV import) are new test functions
that take ``admin_page`` and drive the page; nothing here needs to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.caches import require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
# The README's dashboard picture; rewritten only on request (ROAN_DOCS_SCREENSHOTS=1).
DOCS = Path(__file__).resolve().parents[2] / "docs"
PASSWORD = "correct horse battery staple"
VIEWPORT = {"width": 1280, "height": 900}
# Generous, for a shared two-core machine; a failing step still ends the test quickly.
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        require("chromium", f"{CHROMIUM} is missing (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("chromium", "the playwright package is missing (pip install roan[test])")
    # Playwright's sync API keeps an asyncio event loop running in this thread, and Django
    # refuses ORM calls from a thread with a running loop. The tests call the ORM between
    # browser steps (one thread, never concurrently), so lift the guard, for this module's
    # tests only: other modules keep Django's check.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                yield chromium
            finally:
                chromium.close()


class Admin:
    """A signed-in admin page on the live server."""

    def __init__(self, page: Any, base_url: str, user: Any) -> None:
        self.page = page
        self.base_url = base_url
        self.user = user
        self.broken = watch_assets(page)

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.ok, f"GET {path}: {response and response.status}"
        return response

    def screenshot(self, name: str, *, full_page: bool = True, folder: Path = SCREENSHOTS) -> Path:
        # A page missing a stylesheet or script is not what users see; fail, do not save it.
        assert not self.broken, f"assets that did not load: {self.broken}"
        folder.mkdir(exist_ok=True)
        target = folder / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=full_page)
        return target

    def messages(self) -> list[str]:
        return [m.strip() for m in self.page.locator("ul.messagelist li").all_inner_texts()]


def watch_assets(page: Any) -> list[str]:
    """Collect the page's requests that fail or answer 4xx/5xx (the favicon aside)."""
    broken: list[str] = []

    def on_response(response: Any) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            broken.append(f"{response.status} {response.url}")

    page.on("response", on_response)
    page.on("requestfailed", lambda request: broken.append(f"failed {request.url}"))
    return broken


def new_context(browser: Any, **options: Any) -> Any:
    context = browser.new_context(viewport=VIEWPORT, **options)
    context.set_default_timeout(TIMEOUT_MS)
    return context


def sign_in(context: Any, base_url: str, username: str, password: str = PASSWORD) -> Any:
    page = context.new_page()
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")
    return page


@pytest.fixture
def admin_page(browser: Any, live_server: Any, django_user_model: Any) -> Iterator[Admin]:
    user = django_user_model.objects.create_superuser("editor", "editor@example.com", PASSWORD)
    context = new_context(browser, color_scheme="light")
    try:
        page = sign_in(context, live_server.url, user.username)
        yield Admin(page, live_server.url, user)
    finally:
        context.close()
