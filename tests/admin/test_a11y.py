"""roan's admin pages pass axe-core (WCAG 2.1 A and AA) in Chromium, light (and dark, where
roan draws colours of its own).

axe-core comes from the npm registry into tests/a11y/node_modules (``make test`` installs
it when npm is there; CI always). It runs in the test's browser only: roan never ships it.
Violations in Django's own admin markup are not roan's to fix and are left out; what a
roan template or stylesheet draws must have none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from roan.models import BackendState, PurgeAttempt
from tests.support.admin_helpers import BACKENDS, seed_attempts
from tests.support.browser import Admin, new_context, sign_in
from tests.support.caches import require
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

AXE = Path(__file__).resolve().parents[1] / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# In dark mode, the pages with colours of roan's own (the rest is the admin's palette).
DARK = {"dashboard", "preview", "rule form", "purge log"}


@pytest.fixture
def axe() -> str:
    if not AXE.exists():
        require("chromium", f"{AXE} is missing: npm install --prefix tests/a11y")
    return AXE.read_text()


def violations(page: Any, script: str) -> list[str]:
    """axe's violations on this page that roan drew, one line per element."""
    page.add_script_tag(content=script)
    result = page.evaluate(
        "tags => axe.run(document, "
        "{runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        RULES,
    )
    return [
        f"{v['id']} ({v['help']}): {n['target'][0]} {n['html'][:200]}"
        for v in result["violations"]
        for n in v["nodes"]
        if page.evaluate(OWN, n["target"][0])
    ]


# Drawn by roan: inside an element of roan's templates (class or id naming roan), the
# page's <body> aside (roan's pages put a roan class there for the admin's own chrome).
OWN = """selector => {
    const node = document.querySelector(selector);
    return !!(node && node.closest('[class*="roan"]:not(body), [id*="roan"]'));
}"""


def roan_pages(make_rule) -> dict[str, str]:
    rule = make_rule("posts", "/posts/\n/posts/{slug}/")
    post = Post.objects.create(title="Hello", slug="hello")
    BackendState.objects.get_or_create(alias="nginx")
    attempt = PurgeAttempt.objects.order_by("pk").first()
    assert attempt is not None
    return {
        "rules": "/admin/roan/purgerule/",
        "rule form": "/admin/roan/purgerule/add/",
        "rule change": f"/admin/roan/purgerule/{rule.pk}/change/",
        "preview": f"/admin/roan/purgerule/{rule.pk}/preview/?object_id={post.pk}",
        "purge log": "/admin/roan/purgeattempt/",
        "attempt": f"/admin/roan/purgeattempt/{attempt.pk}/change/",
        "dashboard": "/admin/roan/dashboard/",
        "backends": "/admin/roan/backendstate/",
        "purge URLs": "/admin/roan/purge/",
    }


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_roans_pages_have_no_axe_violations(
    browser, live_server, settings, make_rule, axe, scheme
) -> None:
    settings.ROAN_BACKENDS = BACKENDS
    seed_attempts()
    pages = roan_pages(make_rule)
    user = get_user_model().objects.create_superuser(
        "a11y", "a11y@example.com", "correct horse battery staple"
    )
    context = new_context(browser, color_scheme=scheme)
    found = {}
    try:
        page = sign_in(context, live_server.url, user.username)
        admin = Admin(page, live_server.url, user)
        for name, url in pages.items():
            if scheme == "dark" and name not in DARK:
                continue
            admin.open(url)
            if v := violations(page, axe):
                found[name] = v
        # The rule form's "Preview before saving" opens the draft's preview in a new tab.
        admin.open(pages["rule change"])
        with context.expect_page() as opened:
            page.click("#roan-draft-preview")
        draft = opened.value
        draft.wait_for_load_state()
        if v := violations(draft, axe):
            found["draft preview"] = v
    finally:
        context.close()
    assert found == {}, json.dumps(found, indent=1)
