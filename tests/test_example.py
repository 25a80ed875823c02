"""The demo, as `make demo` runs it: seed, serve, edit a post in the admin, see the page change."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from tests.caches import free_port

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
            self.data.append((name, a.get("value", "")))
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


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "ROAN_EXAMPLE_SQLITE": str(tmp_path / "demo.sqlite3"),
        "ROAN_EXAMPLE_CACHE_DIR": str(tmp_path / "pages"),
        "ROAN_EXAMPLE_HOSTS": f"127.0.0.1:{port}",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = [sys.executable, str(EXAMPLE / "manage.py")]
    for command in (["migrate", "--noinput", "-v0"], ["seed_demo"]):
        subprocess.run([*manage, *command], env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(base + "/", timeout=1).close()
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(10)


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
