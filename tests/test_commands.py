"""roan_purge, roan_dispatch and roan_prune, as an operator runs them."""

from __future__ import annotations

import datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from roan.backends import locmem
from roan.models import PurgeAttempt
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_roan_purge_urls_on_allowed_hosts_only(outbox, settings) -> None:
    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend", "HOSTS": ["www.example.com"]}
    }
    out = run("roan_purge", "/a/", "https://www.example.com/b/?x=1", "https://evil.example/c/")
    assert "3 attempt(s)" in out
    assert [(r.target, r.host) for _n, r in locmem.outbox] == [
        ("/a/", ""),
        ("/b/?x=1", "www.example.com"),
    ]
    refused = PurgeAttempt.objects.get(host="evil.example")
    assert refused.status == "skipped"
    assert "not in this backend's HOSTS" in refused.error


def test_roan_purge_says_what_was_sent_and_fails_when_nothing_could_be(outbox, settings):
    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend", "HOSTS": ["www.example.com"]}
    }
    out = run("roan_purge", "/a/", "https://evil.example/c/")
    assert out.startswith("roan_purge: 2 attempt(s) recorded: 1 purged, 1 skipped, not sent")

    with pytest.raises(CommandError, match=r"1 skipped, not sent \(host 'evil.example'"):
        run("roan_purge", "https://evil.example/c/")


def test_roan_purge_an_object(post_rule, outbox) -> None:
    post = Post.objects.create(title="T", slug="t")
    outbox.clear()
    run("roan_purge", "--object", "testapp.Post", str(post.pk))
    assert sorted(r.target for _n, r in outbox) == ["/posts/", "/posts/t/"]
    assert set(PurgeAttempt.objects.filter(trigger="command").values_list("target", flat=True)) == {
        "/posts/",
        "/posts/t/",
    }


def test_roan_purge_everything_needs_a_backend(outbox) -> None:
    with pytest.raises(CommandError, match="needs --backend"):
        run("roan_purge", "--all")
    run("roan_purge", "--all", "--backend", "default")
    assert [r.kind for _n, r in outbox] == ["all"]


def test_roan_purge_refuses_bad_input() -> None:
    with pytest.raises(CommandError, match="not a path"):
        run("roan_purge", "posts/")
    with pytest.raises(CommandError, match="unknown backend"):
        run("roan_purge", "/a/", "--backend", "nope")
    with pytest.raises(CommandError, match=r"no testapp\.Post with pk"):
        run("roan_purge", "--object", "testapp.Post", "999")
    assert not PurgeAttempt.objects.exists()


def test_roan_prune_deletes_old_finished_attempts_only() -> None:
    rows = [
        {
            "backend": "default",
            "node": "default",
            "target": f"/{status}/",
            "trigger": "api",
            "status": status,
        }
        for status in ("ok", "failed", "gave_up")
    ]
    PurgeAttempt.objects.write(rows)
    PurgeAttempt.objects.update(created_at=timezone.now() - datetime.timedelta(days=40))
    PurgeAttempt.objects.write(
        [
            {
                "backend": "default",
                "node": "default",
                "target": "/new/",
                "trigger": "api",
                "status": "ok",
            }
        ]
    )
    assert "would delete 2" in run("roan_prune", "--days", "30", "--dry-run")
    assert PurgeAttempt.objects.count() == 4
    assert "deleted 2" in run("roan_prune", "--days", "30", "--batch", "1")
    assert sorted(PurgeAttempt.objects.values_list("target", flat=True)) == ["/failed/", "/new/"]
    with pytest.raises(CommandError, match="only finished attempts"):
        run("roan_prune", "--days", "1", "--status", "failed")


@pytest.mark.parametrize("target", ["/", "/*", "https://www.example.com/"])
def test_roan_purge_a_prefix_of_everything_needs_a_backend_as_all_does(
    outbox, settings, target
) -> None:
    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend", "HOSTS": ["www.example.com"]}
    }
    with pytest.raises(CommandError, match="purges everything; that needs --backend"):
        run("roan_purge", "--kind", "prefix", "/posts/", target)

    assert outbox == [] and not PurgeAttempt.objects.exists()
    run("roan_purge", "--kind", "prefix", target, "--backend", "default")
    assert [r.kind for _n, r in outbox] == ["prefix"]


def test_roan_purge_a_narrower_prefix_needs_no_backend(outbox) -> None:
    run("roan_purge", "--kind", "prefix", "/posts/")
    assert [(r.kind, r.target) for _n, r in outbox] == [("prefix", "/posts/")]


@pytest.mark.parametrize("pk", ["abc", "1.5", ""])
def test_roan_purge_an_object_with_a_key_that_is_not_the_models_is_a_command_error(pk) -> None:
    with pytest.raises(CommandError, match=r"is not a pk of testapp\.Post|no testapp\.Post"):
        run("roan_purge", "--object", "testapp.Post", pk)
    assert not PurgeAttempt.objects.exists()
