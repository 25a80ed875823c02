"""``roan_audit``: indexed pages compared through a real nginx and from the origin.

The site is tests/support/tagged_site.py behind nginx (example/deploy/nginx.conf), its pages
indexed by the tag middleware as visitors fetch them. A page changed with purges
suppressed stays cached with the old content: the audit must name it and exit 1.
"""

from __future__ import annotations

import datetime
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

import roan
from roan import audit
from roan.models import TaggedURL
from roan.tags import index as tag_index
from tests.support.caches import Nginx, serve_tagged_site
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def site(nginx_site: Nginx, settings: Any) -> Nginx:
    return serve_tagged_site(settings, nginx_site, HOSTS=["127.0.0.1"])


def visit(site: Nginx, path: str) -> None:
    """Fetch ``path`` through nginx until it is cached (and so indexed)."""
    requests.get(site.url + path, timeout=10)
    assert requests.get(site.url + path, timeout=10).headers["X-Cache-Status"] == "HIT"


def dashboard(admin_client: Any, settings: Any) -> str:
    settings.ROOT_URLCONF = "tests.urls"
    response = admin_client.get("/admin/roan/dashboard/")
    assert response.status_code == 200
    return " ".join(response.content.decode().split())


def run_audit(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("roan_audit", "--recheck-after", "0", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def posts(site: Nginx) -> list[Post]:
    with roan.suppress_purges():
        made = [Post.objects.create(title=f"Post {n}", slug=f"audit-{n}") for n in range(3)]
    for post in made:
        visit(site, f"/one/{post.pk}/")
        visit(site, f"/front/{post.pk}/")
    return made


def test_a_fresh_site_exits_0_and_the_result_is_kept_for_the_dashboard(
    site: Nginx, posts: list[Post], admin_client: Any, settings: Any
) -> None:
    rows = sorted(TaggedURL.objects.values_list("tag", "url_key", "expires_at"))
    # No --cache-url: the nginx backend's LOCATION names the cache.
    code, out, _err = run_audit("--all")

    assert code == 0, out
    # The reference copies rendered in-process were not indexed: no cache keeps them.
    assert sorted(TaggedURL.objects.values_list("tag", "url_key", "expires_at")) == rows
    assert "6 page(s), 6 check(s), 0 stale, 0 error(s)" in out
    kept = audit.last()
    assert kept is not None
    assert (kept["pages"], kept["stale"]) == (6, 0)
    page = dashboard(admin_client, settings)
    assert "Last audit: 6 pages, 0 stale" in page


def test_a_page_changed_without_a_purge_is_reported_with_its_tags_and_purges(
    site: Nginx, posts: list[Post], admin_client: Any, settings: Any
) -> None:
    changed = posts[1]
    roan.purge_urls([f"/one/{changed.pk}/"], trigger="admin")  # an earlier purge of it
    visit(site, f"/one/{changed.pk}/")
    with roan.suppress_purges():
        changed.title = "Changed behind the cache's back"
        changed.save()

    code, out, _err = run_audit("--all", "--cache-url", site.url)

    assert code == 1
    stale = sorted(line for line in out.splitlines() if line.startswith("STALE"))
    # The post's own page, and every front page (they list all titles).
    assert len(stale) == 4, out
    own = f"STALE 127.0.0.1/one/{changed.pk}/ via {site.url} [HIT]: cache 200, origin 200"
    assert own in stale
    block = out.split(own, 1)[1]
    assert f"tags: testapp.post:{changed.pk}" in block.splitlines()[1]
    assert " nginx/" in block.splitlines()[2] and " ok 200 admin" in block.splitlines()[2]
    assert "4 stale" in out
    page = dashboard(admin_client, settings)
    assert "Last audit: 6 pages, 4 stale" in page


def test_an_uncached_origin_server_can_be_the_reference(
    site: Nginx, posts: list[Post], live_server: Any
) -> None:
    code, out, _err = run_audit("--all", "--origin", live_server.url)
    assert code == 0, out
    with roan.suppress_purges():
        Post.objects.filter(pk=posts[2].pk).update(title="Post 2 (edited)")
    code, out, _err = run_audit("--all", "--origin", live_server.url)
    assert code == 1
    assert f"STALE 127.0.0.1/one/{posts[2].pk}/" in out


def test_a_sample_audits_that_many_pages(site: Nginx, posts: list[Post]) -> None:
    code, out, _err = run_audit("--sample", "2")

    assert code == 0
    assert "2 page(s), 2 check(s), 0 stale" in out


def test_volatile_parts_are_ignored_by_roan_audit_ignore(
    site: Nginx, posts: list[Post], settings: Any
) -> None:
    with roan.suppress_purges():
        Post.objects.filter(pk=posts[0].pk).update(title="Post 0 (edited)")
    assert run_audit("--all")[0] == 1
    settings.ROAN_AUDIT_IGNORE = [r"Post 0( \(edited\))?"]
    assert run_audit("--all")[0] == 0


def test_csrf_tokens_differ_on_every_render_and_are_ignored() -> None:
    patterns = audit.ignored_patterns(())
    one = (200, '<input type="hidden" name="csrfmiddlewaretoken" value="abc">', "")
    two = (200, '<input type="hidden" name="csrfmiddlewaretoken" value="xyz">', "")
    assert audit.normalized(one, patterns) == audit.normalized(two, patterns)
    assert audit.normalized((200, "a", ""), patterns) != audit.normalized((200, "b", ""), patterns)


def test_only_hosts_the_backends_purge_are_asked_for(site: Nginx, posts: list[Post]) -> None:
    # A row for a host no backend purges (written by hand: the middleware never would).
    TaggedURL.objects.create(
        tag="testapp.post",
        host="elsewhere.example",
        path="/one/1/",
        url_key=tag_index.url_key("elsewhere.example", "/one/1/"),
        expires_at=timezone.now() + datetime.timedelta(minutes=5),
    )
    log = site.dir / "logs" / "access.log"
    before = log.read_text().count("elsewhere.example")

    code, out, _err = run_audit("--all")

    assert code == 0, out
    assert "7 page(s), 6 check(s), 0 stale" in out
    assert log.read_text().count("elsewhere.example") == before


def test_an_unreachable_cache_exits_2_and_says_why(site: Nginx, posts: list[Post]) -> None:
    code, out, err = run_audit(
        "--sample", "1", "--cache-url", "http://127.0.0.1:9", "--timeout", "1"
    )

    assert code == 2
    assert "could not check" in err and "1 error(s)" in out


def test_bad_options_are_refused(site: Nginx, settings: Any) -> None:
    for args in (["--sample", "0"], ["--timeout", "999"], ["--cache-url", "ftp://x"]):
        with pytest.raises(CommandError):
            call_command("roan_audit", *args, stdout=StringIO())
    settings.ROAN_AUDIT_IGNORE = ["("]
    with pytest.raises(CommandError, match="ROAN_AUDIT_IGNORE"):
        call_command("roan_audit", stdout=StringIO(), stderr=StringIO())
    settings.ROAN_BACKENDS = {"mem": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}
    with pytest.raises(CommandError, match="--cache-url"):
        call_command("roan_audit", stdout=StringIO())


def test_a_cache_address_with_credentials_is_never_printed(
    site: Nginx, posts: list[Post], settings: Any
) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": "http://roan:s3cret@127.0.0.1:9/purge",
            "HOSTS": ["127.0.0.1"],
        }
    }
    code, out, err = run_audit("--sample", "1", "--timeout", "1")

    assert code == 2
    assert "via http://127.0.0.1:9: ConnectionError" in err
    assert "s3cret" not in out + err


def test_an_empty_index_exits_2_and_says_why(site: Nginx) -> None:
    code, out, err = run_audit("--all")

    assert code == 2
    assert "0 page(s), 0 check(s)" in out
    assert "the tag index lists no page" in err
