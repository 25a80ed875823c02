"""The demo, as `make demo` runs it: seed, serve, edit a post in the admin, see the page change."""

from __future__ import annotations

import os
import pickle
import re
import sqlite3
import subprocess
import sys
import time
import zlib
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

# The example runs in its own processes, on its own SQLite database.
pytestmark = pytest.mark.example

EXAMPLE = Path(__file__).resolve().parent.parent / "example"


class FormFields(HTMLParser):
    """The values a browser would submit for the admin's change form."""

    def __init__(self) -> None:
        super().__init__()
        self.data: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name", "")
        if tag == "input" and name and a.get("type") not in {"submit", "button", "file"}:
            if a.get("type") in {"checkbox", "radio"} and "checked" not in a:
                return
            # A browser sends "on" for a ticked box without a value attribute.
            default = "on" if a.get("type") in {"checkbox", "radio"} else ""
            self.data.append((name, a.get("value", default)))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self.data.append((self._select, a.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.data.append((self._textarea, self._text.lstrip("\n")))
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text += data


def rendered_at(html: str) -> str:
    match = re.search(r'class="rendered-at" datetime="([^"]+)"', html)
    assert match, "the footer shows when the page was rendered"
    return match.group(1)


def test_editing_a_post_in_the_admin_changes_its_cached_page(demo: str, tmp_path: Path) -> None:
    with requests.Session() as browser:
        listing = browser.get(demo + "/posts/").text
        slug = re.search(r'href="/posts/([^/"]+)/"', listing).group(1)  # type: ignore[union-attr]
        page_url = f"{demo}/posts/{slug}/"
        first = browser.get(page_url).text
        time.sleep(1.1)
        assert rendered_at(browser.get(page_url).text) == rendered_at(first), "served from cache"

        browser.get(demo + "/admin/login/")
        login = browser.post(
            demo + "/admin/login/?next=/admin/",
            data={
                "username": "admin",
                "password": "admin",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
        )
        assert login.url.endswith("/admin/")
        changelist = browser.get(demo + f"/admin/blog/post/?q={slug}").text
        post_id = re.search(r"/admin/blog/post/(\d+)/change/", changelist).group(1)  # type: ignore[union-attr]
        form = FormFields()
        form.feed(browser.get(f"{demo}/admin/blog/post/{post_id}/change/").text)
        data = [(k, v) for k, v in form.data if k not in {"title", "_addanother", "_continue"}]
        data.append(("title", "Edited in the demo"))
        saved = browser.post(f"{demo}/admin/blog/post/{post_id}/change/", data=data)
        assert saved.url.endswith("/admin/blog/post/"), saved.text[:3000]

        fresh = browser.get(page_url).text
        assert "Edited in the demo" in fresh
        assert rendered_at(fresh) != rendered_at(first)

    db = sqlite3.connect(tmp_path / "demo.sqlite3")
    try:
        rows = db.execute(
            "SELECT a.status, a.trigger, u.username FROM roan_purgeattempt a"
            " JOIN auth_user u ON u.id = a.user_id WHERE a.target = ?",
            (f"/posts/{slug}/",),
        ).fetchall()
    finally:
        db.close()
    assert rows == [("ok", "save", "admin")]


def cache_entry(path: Path) -> tuple[float | None, object]:
    """(expiry, value) of a FileBasedCache file."""
    with path.open("rb") as f:
        expiry = pickle.load(f)
        return expiry, pickle.loads(zlib.decompress(f.read()))


def test_public_pages_are_for_shared_caches_and_browsers_revalidate(
    demo: str, tmp_path: Path
) -> None:
    first = requests.get(demo + "/posts/", timeout=5)
    directives = {d.strip() for d in first.headers["Cache-Control"].split(",")}
    # Shared caches keep the page 600 s (roan purges them); browsers ask again each time.
    assert directives == {"public", "max-age=0", "s-maxage=600", "must-revalidate"}
    # Expires is "now", not "now + 600" (Django and the server each read the clock, so a
    # second may tick between the two headers).
    expires = parsedate_to_datetime(first.headers["Expires"])
    date = parsedate_to_datetime(first.headers["Date"])
    assert abs((expires - date).total_seconds()) <= 1

    # Django's page cache still keeps it for the configured 600 s, though max-age is 0.
    time.sleep(1.1)
    again = requests.get(demo + "/posts/", timeout=5)
    assert rendered_at(again.text) == rendered_at(first.text), "served from Django's cache"
    # A file cache entry starts with its expiry time (None: roan's rule stamp, no timeout),
    # then the value. roan's notes of what the tag index holds (tuples) share the cache.
    stored = [cache_entry(f) for f in (tmp_path / "pages").rglob("*.djcache")]
    expiries = [
        expiry
        for expiry, value in stored
        if expiry is not None and not isinstance(value, tuple | dict)
    ]
    assert len(expiries) >= 2, "cache_page stored the page and its header list"
    assert all(550 < expiry - time.time() <= 600 for expiry in expiries)

    # A browser revalidating the page it has gets a 304, no body.
    etag = again.headers["ETag"]
    revalidated = requests.get(demo + "/posts/", headers={"If-None-Match": etag}, timeout=5)
    assert (revalidated.status_code, revalidated.content) == (304, b"")


def test_with_nginx_configured_the_example_purges_it_after_the_page_cache(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "ROAN_EXAMPLE_SQLITE": str(tmp_path / "demo.sqlite3"),
        "ROAN_EXAMPLE_NGINX_PURGE_URL": "http://127.0.0.1:8080/purge",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    code = (
        "from django.conf import settings as s; b = s.ROAN_BACKENDS; "
        "print(b['nginx']['AFTER'], b['nginx']['HOSTS'], b['site']['HOSTS'])"
    )
    manage = [sys.executable, str(EXAMPLE / "manage.py")]
    shown = subprocess.run(
        [*manage, "shell", "-v", "0", "-c", code],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert shown.stdout.strip() == (
        "['site'] ['localhost'] ['127.0.0.1:8000', 'localhost:8000', 'localhost']"
    )
    checked = subprocess.run(
        [*manage, "check", "--tag", "roan"], env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert "roan.E100" not in checked.stderr
