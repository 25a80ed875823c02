"""The tutorial (docs/tutorial/index.md), followed as a newcomer would: a new project from
`django-admin startproject`, roan added with the tutorial's files, the shipped nginx.conf
in front (only the lines marked "adjust" changed, as the tutorial says), a post and a
rule made in the admin, a save in the admin, and the page a MISS through a real nginx.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.caches import (
    PURGE_MODULE,
    Nginx,
    _launch,
    free_port,
    require,
    stop_process,
)
from tests.test_example import FormFields

# The tutorial's project runs in its own processes, on its own SQLite database.
pytestmark = pytest.mark.example

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial"
PASSWORD = "tutorial password 42"


class TutorialNginx(Nginx):
    """nginx with docs/tutorial/nginx.conf included in an http {} block, as Debian's
    /etc/nginx/nginx.conf includes conf.d/*.conf (and loads the purge module)."""

    def configure(self) -> None:
        (self.dir / "logs").mkdir()
        site = (TUTORIAL / "nginx.conf").read_text()
        # The three lines the tutorial marks "adjust": the port readers use, where
        # Django runs, where the cache lives (a directory of this test's own).
        for line, adjusted in (
            ("listen 8080;", f"listen 127.0.0.1:{self.port};"),
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{self.origin_port};"),
            ("/var/cache/nginx/roan", str(self.dir / "cache")),
        ):
            assert line in site, f"docs/tutorial/nginx.conf no longer has {line!r}"
            site = site.replace(line, adjusted)
        (self.dir / "roan.conf").write_text(site)
        # What Debian's main nginx.conf does around conf.d/*.conf.
        temp = " ".join(
            f"{kind}_temp_path {self.dir}/temp-{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (self.dir / "nginx.conf").write_text(
            f"load_module {PURGE_MODULE};\n"
            f"worker_processes 1;\npid {self.dir}/nginx.pid;\n"
            "events { worker_connections 64; }\n"
            f"http {{ access_log off; {temp} include {self.dir}/roan.conf; }}\n"
        )


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Step 1: `django-admin startproject mysite`, `startapp blog`, the tutorial's files."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run([sys.executable, "-m", "django", "startproject", "mysite"], tmp_path, env)
    site = tmp_path / "mysite"
    run([sys.executable, "manage.py", "startapp", "blog"], site, env)
    for name in ("models.py", "views.py", "admin.py"):
        shutil.copy(TUTORIAL / "blog" / name, site / "blog" / name)
    shutil.copy(TUTORIAL / "urls.py", site / "mysite" / "urls.py")
    return site


@pytest.fixture
def served(project: Path) -> Iterator[tuple[str, str, Path]]:
    """Steps 1 and 2: Django on a port, the tutorial's nginx in front of it."""
    if not shutil.which("nginx") or not PURGE_MODULE.exists():
        require("caches", "nginx with libnginx-mod-http-cache-purge is not installed")
    django_port = free_port()
    nginx = TutorialNginx(django_port)
    _launch(nginx)
    # "if you use other ports, change ... LOCATION in the settings to match"
    addition = (TUTORIAL / "settings_roan.py").read_text()
    assert "http://127.0.0.1:8080/purge" in addition
    addition = addition.replace("127.0.0.1:8080", f"127.0.0.1:{nginx.port}")
    settings = project / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\n" + addition)

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SUPERUSER_USERNAME": "editor",
        "DJANGO_SUPERUSER_EMAIL": "editor@example.com",
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = [sys.executable, "manage.py"]
    run([*manage, "makemigrations", "blog"], project, env)
    run([*manage, "migrate", "--noinput"], project, env)
    run([*manage, "createsuperuser", "--noinput"], project, env)
    checked = subprocess.run(
        [*manage, "check", "--deploy", "--tag", "roan"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # The tutorial's settings raise none of roan's warnings but the deployment one
    # (a LocMemCache ROAN_CACHE, fine for one runserver).
    assert re.findall(r"roan\.[EW]\d+", checked.stdout + checked.stderr) in ([], ["roan.W001"])
    # The same settings without HOSTS: every purge would carry the purge server's own
    # host, find nothing and report "not cached"; the check says so before it happens.
    (project / "mysite" / "settings_without_hosts.py").write_text(
        'from .settings import *  # noqa: F403\nROAN_BACKENDS["nginx"].pop("HOSTS")  # noqa: F405\n'
    )
    unhosted = subprocess.run(
        [*manage, "check", "--tag", "roan", "--settings", "mysite.settings_without_hosts"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "roan.W005" in unhosted.stdout + unhosted.stderr

    log = (project / "runserver.log").open("wb")
    server = subprocess.Popen(
        [*manage, "runserver", f"127.0.0.1:{django_port}", "--noreload"],
        cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        django = f"http://127.0.0.1:{django_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(django + "/admin/login/", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None, (project / "runserver.log").read_text()
                assert time.monotonic() < deadline, "runserver did not start"
                time.sleep(0.2)
        yield django, nginx.url, project
    finally:
        stop_process(server)
        log.close()
        nginx.close()


def submit(browser: requests.Session, url: str, values: dict[str, str]) -> requests.Response:
    """Fill the admin form at ``url`` as a browser would, with ``values`` typed in."""
    form = FormFields()
    form.feed(browser.get(url).text)
    data = [(k, v) for k, v in form.data if k not in values and not k.startswith("_")]
    data += list(values.items())
    return browser.post(url, data=data)


def verified(project: Path, target: str) -> bool:
    """Whether the purge of ``target`` is recorded verified fresh (waiting for the probe's
    record a few seconds)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        db = sqlite3.connect(project / "db.sqlite3")
        try:
            found = db.execute(
                "SELECT verification FROM roan_purgeattempt WHERE target = ?", (target,)
            ).fetchall()
        finally:
            db.close()
        if found and all(row[0] == "verified" for row in found):
            return True
        time.sleep(0.2)
    return False


def cache_status(url: str) -> str:
    return requests.get(url, timeout=5).headers.get("X-Cache-Status", "")


def test_the_tutorial_ends_with_a_page_purged_from_nginx(served: tuple[str, str, Path]) -> None:
    django, nginx, project = served
    with requests.Session() as browser:
        browser.get(django + "/admin/login/")
        login = browser.post(
            django + "/admin/login/?next=/admin/",
            data={
                "username": "editor",
                "password": PASSWORD,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
        )
        assert login.url.endswith("/admin/")

        # Step 3: a post, cached by nginx.
        added = submit(
            browser, django + "/admin/blog/post/add/", {"title": "Hello", "slug": "hello"}
        )
        assert added.url.endswith("/admin/blog/post/"), added.text[:2000]
        page = f"{nginx}/posts/hello/"
        assert cache_status(page) == "MISS"
        assert cache_status(page) == "HIT"
        assert "<h1>Hello</h1>" in requests.get(page, timeout=5).text

        # The rule, in the admin: model blog | post, templates /posts/{slug}/.
        rule_form = browser.get(django + "/admin/roan/purgerule/add/").text
        option = re.search(
            r'<option value="(\d+)"[^>]*>\s*[Bb]log \| [Pp]ost\s*</option>', rule_form
        )
        assert option, "the rule form offers blog | post"
        values = {
            "name": "Post pages",
            "content_type": option.group(1),
            "templates": "/posts/{slug}/",
            "on_save": "on",
            "on_delete": "on",
        }
        rule = submit(browser, django + "/admin/roan/purgerule/add/", values)
        assert rule.url.endswith("/admin/roan/purgerule/"), rule.text[:3000]

        # Step 4: the editor saves the post; the page is a MISS with the new title.
        changelist = browser.get(django + "/admin/blog/post/").text
        post_id = re.search(r"/admin/blog/post/(\d+)/change/", changelist).group(1)  # type: ignore[union-attr]
        saved = submit(
            browser, f"{django}/admin/blog/post/{post_id}/change/", {"title": "Hello again"}
        )
        assert saved.url.endswith("/admin/blog/post/"), saved.text[:2000]
        assert "1 purged" in saved.text  # "Cache purges for this change: 1 purged"
        # The server's first purge on nginx is always proved: roan fetched the page through
        # nginx right after it (a MISS, which cached the new page) and recorded the purge
        # verified fresh. The reader's fetch, seconds later, is a HIT with the new title.
        assert verified(project, "/posts/hello/")
        assert cache_status(page) == "HIT"
        assert "<h1>Hello again</h1>" in requests.get(page, timeout=5).text

        # Step 5: the purge log and the dashboard show it.
        assert browser.get(django + "/admin/roan/dashboard/").status_code == 200
        assert "/posts/hello/" in browser.get(django + "/admin/roan/purgeattempt/").text

    db = sqlite3.connect(project / "db.sqlite3")
    try:
        rows = db.execute(
            "SELECT status, http_status, trigger FROM roan_purgeattempt WHERE target = ?",
            ("/posts/hello/",),
        ).fetchall()
    finally:
        db.close()
    assert rows == [("ok", 200, "save")]
