"""Every try of an attempt is kept (issue 12): a retried attempt's page lists each try,
the dashboard counts the retried ones, and pruning takes them with their attempts."""

from __future__ import annotations

import contextlib
import datetime
import re
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from roan.models import PurgeAttempt, PurgeTry
from tests.support import retrying
from tests.support.retrying import dispatch_now
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

#: The nginx backend at the fake cache (tests/support/retrying.py).
cache = retrying.cache


def retried_twice_then_ok(cache) -> PurgeAttempt:
    """The post's own page: 503, 503, then 200. Returns its attempt."""
    cache.status = 503
    Post.objects.create(title="T", slug="busy")
    dispatch_now()
    cache.status = 200
    dispatch_now()
    return PurgeAttempt.objects.get(target="/posts/busy/")


def tries_table(html: str) -> list[list[str]]:
    """The cells of the attempt page's "Tries" table, tags stripped, one list per try."""
    section = html.split('id="roan-tries"', 1)[1].split("</fieldset>", 1)[0]
    rows = re.findall(r'<tr class="roan-try".*?</tr>', section, re.S)
    return [
        [re.sub(r"<[^>]+>", "", cell).replace("&nbsp;", " ").strip() for cell in cells]
        for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows)
    ]


def test_a_retried_attempt_shows_each_try_on_its_page(cache, admin_client) -> None:
    attempt = retried_twice_then_ok(cache)
    assert (attempt.status, attempt.tries, attempt.http_status) == ("ok", 3, 200)
    # The two failed tries are kept; the last one is the attempt row itself.
    kept = list(attempt.kept_tries.values_list("number", "status", "http_status"))
    assert kept == [(1, "failed", 503), (2, "failed", 503)]

    page = admin_client.get(reverse("admin:roan_purgeattempt_change", args=[attempt.pk]))
    assert page.status_code == 200
    rows = tries_table(page.content.decode())
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert [(row[2], row[3]) for row in rows] == [
        ("failed", "503"),
        ("failed", "503"),
        ("ok", "200"),
    ]
    # Each try's own time, to the second, and latency, rounded.
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[1]) for row in rows)
    assert all(re.fullmatch(r"\d+\.\d ms", row[4]) for row in rows)
    assert rows[0][5].startswith("HTTP 503") and rows[1][5].startswith("HTTP 503")
    assert rows[2][5] == "-"
    assert "roan-tries-missing" not in page.content.decode()


def test_the_dashboard_counts_the_retried_tries(cache, admin_client) -> None:
    retried_twice_then_ok(cache)  # two attempts (/posts/ and the post), two retries each
    PurgeTry.objects.filter(attempt__target="/posts/").update(
        finished_at=timezone.now() - datetime.timedelta(hours=3)
    )
    html = admin_client.get(reverse("admin:roan_dashboard")).content.decode()
    retried = {
        key: re.search(
            rf'class="roan-window-{key}">.*?class="roan-num roan-retried">(\d+)<', html, re.S
        ).group(1)
        for key in ("1h", "24h", "7d")
    }
    assert retried == {"1h": "2", "24h": "4", "7d": "4"}


def test_pruning_deletes_the_tries_with_their_attempts(cache) -> None:
    retried_twice_then_ok(cache)
    assert PurgeTry.objects.count() == 4
    PurgeAttempt.objects.update(created_at=timezone.now() - datetime.timedelta(days=40))
    out = StringIO()
    call_command("roan_prune", "--days", "30", stdout=out)
    assert "deleted 2 attempt(s)" in out.getvalue()
    assert PurgeAttempt.objects.count() == 0
    assert PurgeTry.objects.count() == 0


def test_a_first_try_that_succeeds_keeps_nothing_more(settings, nginx_cache, post_rule) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx_cache.url}/purge",
        }
    }
    with CaptureQueriesContext(connection) as queries:
        Post.objects.create(title="T", slug="fine")
    assert {(a.status, a.tries) for a in PurgeAttempt.objects.all()} == {("not_cached", 1)}
    assert PurgeTry.objects.count() == 0
    assert not [q for q in queries if "roan_purgetry" in q["sql"]]


@contextlib.contextmanager
def no_try_table_now() -> Iterator[None]:
    """The tries' table is gone (a migration not run yet, say): its writes fail."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE roan_purgetry RENAME TO roan_purgetry_away")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE roan_purgetry_away RENAME TO roan_purgetry")


def test_a_try_that_cannot_be_kept_does_not_cost_the_outcome(cache, caplog) -> None:
    with no_try_table_now():
        cache.status = 503
        Post.objects.create(title="T", slug="busy")
        rows = list(PurgeAttempt.objects.all())
    assert {(r.status, r.tries, r.http_status) for r in rows} == {("failed", 1, 503)}
    assert all(r.error.startswith("HTTP 503") and r.next_attempt_at for r in rows)
    assert "cannot keep 2 failed tries" in caplog.text
    assert PurgeTry.objects.count() == 0
    cache.status = 200
    dispatch_now()
    assert set(PurgeAttempt.objects.values_list("status", "tries")) == {("ok", 2)}


def test_an_attempt_waiting_for_its_retry_shows_its_try_once(cache, admin_client) -> None:
    cache.status = 500
    Post.objects.create(title="T", slug="down")
    attempt = PurgeAttempt.objects.get(target="/posts/down/")
    assert attempt.status == "failed" and attempt.kept_tries.count() == 1
    page = admin_client.get(reverse("admin:roan_purgeattempt_change", args=[attempt.pk]))
    rows = tries_table(page.content.decode())
    assert [(row[0], row[2], row[3]) for row in rows] == [("1", "failed", "500")]


def test_tries_from_before_they_were_kept_are_said_to_be_missing(admin_client) -> None:
    [pk] = PurgeAttempt.objects.write(
        [{"backend": "b", "node": "n", "target": "/old/", "trigger": "api", "status": "gave_up"}]
    )
    PurgeAttempt.objects.filter(pk=pk).update(tries=3, http_status=503, error="HTTP 503")
    html = admin_client.get(reverse("admin:roan_purgeattempt_change", args=[pk])).content.decode()
    assert [(row[0], row[2]) for row in tries_table(html)] == [("3", "gave up")]
    assert 'id="roan-tries-missing"' in html and "3 tries were made" in html


def test_an_attempt_not_sent_yet_has_no_tries(admin_client) -> None:
    [pk] = PurgeAttempt.objects.write(
        [{"backend": "b", "node": "n", "target": "/", "trigger": "api"}]
    )
    html = admin_client.get(reverse("admin:roan_purgeattempt_change", args=[pk])).content.decode()
    assert tries_table(html) == [] and 'id="roan-tries-none"' in html


def test_the_purge_log_list_does_not_read_the_tries(cache, admin_client) -> None:
    retried_twice_then_ok(cache)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(reverse("admin:roan_purgeattempt_changelist"))
    assert page.status_code == 200
    assert not [q for q in queries if "roan_purgetry" in q["sql"]]
