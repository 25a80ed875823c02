"""Purge now: the purge-URLs page, purge everything, the rules action, PurgeCacheMixin."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from roan.models import PurgeAttempt
from tests.testapp.models import Post

# Real commits, so that purges are sent after them as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(outbox):
    return outbox


def test_urls_are_purged_on_the_chosen_backends_and_name_the_user(admin_client, sent) -> None:
    response = admin_client.post(
        "/admin/roan/purge/",
        {"urls": "/a/\n\n/b/?page=2\n/a/", "kind": "url", "backends": ["default"]},
        follow=True,
    )

    assert "Purging 2 targets: 2 purged." in response.text
    assert [r.target for _node, r in sent] == ["/a/", "/b/?page=2"]
    rows = PurgeAttempt.objects.all()
    assert {(a.trigger, a.user.username, a.status) for a in rows} == {("admin", "admin", "ok")}


def shown_messages(response) -> list[tuple[str, str]]:
    """(level, text) of each message as the page shows it."""
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def test_a_skipped_url_is_reported_as_skipped_with_the_reason(admin_client, settings, sent):
    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend", "HOSTS": ["www.example.com"]}
    }
    response = admin_client.post(
        "/admin/roan/purge/",
        {"urls": "/a/\nhttps://evil.example/b/", "kind": "url", "backends": ["default"]},
        follow=True,
    )

    [(level, text)] = shown_messages(response)
    assert level == "warning"
    assert text.startswith(
        "Purging 2 targets: 1 purged, 1 skipped, not sent (host &#x27;evil.example&#x27; is "
        "not in this backend&#x27;s HOSTS)."
    )
    assert [r.target for _node, r in sent] == ["/a/"]
    # The message links to exactly these attempts.
    link = response.content.decode().split("Show these attempts")[0].rsplit('href="', 1)[1]
    shown = admin_client.get(link.split('"')[0].replace("&amp;", "&"))
    assert sorted(a.status for a in shown.context["cl"].result_list) == ["ok", "skipped"]


def test_a_purge_nothing_could_send_is_an_error(admin_client, settings, sent) -> None:
    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend", "HOSTS": ["www.example.com"]}
    }
    response = admin_client.post(
        "/admin/roan/purge/",
        {"urls": "https://evil.example/b/", "kind": "url", "backends": ["default"]},
        follow=True,
    )

    [(level, text)] = shown_messages(response)
    assert level == "error" and "Purging 1 target: 1 skipped, not sent (host" in text
    assert sent == []


HOSTS = ["www.example.com"]


def test_purge_everything_is_not_offered_for_a_cache_that_refuses_it(
    admin_client, settings, sent
) -> None:
    settings.ROAN_BACKENDS = {
        "pages": {"BACKEND": "roan.backends.django_cache.DjangoCacheBackend", "HOSTS": HOSTS},
    }
    page = admin_client.get("/admin/roan/purge/")

    assert "No configured backend can purge everything." in page.text
    assert "Purge everything…" not in page.text
    assert "can purge by url" in page.text and "can purge by all" not in page.text
    refused = admin_client.post("/admin/roan/purge/all/", {"backend": "pages", "confirm": "yes"})
    assert refused.status_code == 200 and not PurgeAttempt.objects.exists()

    settings.ROAN_BACKENDS = {
        "pages": {
            "BACKEND": "roan.backends.django_cache.DjangoCacheBackend",
            "HOSTS": HOSTS,
            "ALLOW_CLEAR": True,
        },
    }
    assert "Purge everything…" in admin_client.get("/admin/roan/purge/").text


def test_a_bad_line_is_an_error_naming_it_and_nothing_is_purged(admin_client, sent) -> None:
    response = admin_client.post(
        "/admin/roan/purge/",
        {"urls": "/ok/\nftp://x/\n/also ok/", "kind": "url", "backends": ["default"]},
    )

    errors = response.context["form"].errors["urls"]
    assert any(e.startswith("Line 2: ") for e in errors)
    assert any(e.startswith("Line 3: ") for e in errors)
    assert sent == [] and not PurgeAttempt.objects.exists()


def test_a_prefix_is_refused_for_a_backend_that_cannot_purge_by_prefix(
    admin_client, settings, sent
) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": "http://127.0.0.1:9/p"}
    }
    page = admin_client.get("/admin/roan/purge/")
    # No configured backend purges prefixes, so the page does not offer them.
    assert "everything under these prefixes" not in page.text
    response = admin_client.post(
        "/admin/roan/purge/", {"urls": "/posts/", "kind": "prefix", "backends": ["nginx"]}
    )
    assert response.context["form"].errors["kind"] == ["No configured backend can purge prefixes."]
    assert "No configured backend can purge prefixes." in response.text
    assert not PurgeAttempt.objects.exists()


def test_a_prefix_is_refused_for_a_ticked_backend_that_cannot(admin_client, settings) -> None:
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": "http://127.0.0.1:9/p",
        },
        "mem": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
    }
    assert "everything under these prefixes" in admin_client.get("/admin/roan/purge/").text
    response = admin_client.post(
        "/admin/roan/purge/", {"urls": "/posts/", "kind": "prefix", "backends": ["nginx", "mem"]}
    )
    assert "nginx cannot purge by prefix." in response.context["form"].errors["backends"]
    assert not PurgeAttempt.objects.exists()


def test_purging_everything_asks_for_confirmation_first(admin_client, sent) -> None:
    page = admin_client.post("/admin/roan/purge/all/", {"backend": "default"})

    assert page.status_code == 200 and "Yes, purge everything" in page.text
    assert sent == [] and not PurgeAttempt.objects.exists()

    admin_client.post("/admin/roan/purge/all/", {"backend": "default", "confirm": "yes"})

    [(_node, request)] = sent
    assert request.kind == "all"
    assert PurgeAttempt.objects.get().user.username == "admin"


@pytest.mark.caches
def test_purging_everything_empties_a_real_varnish(
    admin_client, settings, varnish_cache, cache_origin
) -> None:
    settings.ROAN_BACKENDS = {
        "edge": {"BACKEND": "roan.backends.varnish.VarnishBackend", "NODES": [varnish_cache.url]}
    }
    pages = [f"{varnish_cache.url}/everything/{n}" for n in range(3)]
    for page in pages:
        requests.get(page, timeout=5)
    before = [cache_origin.count(f"/everything/{n}") for n in range(3)]

    admin_client.post("/admin/roan/purge/all/", {"backend": "edge", "confirm": "yes"})

    assert PurgeAttempt.objects.get().status == "ok"
    for page in pages:
        requests.get(page, timeout=5)
    assert [cache_origin.count(f"/everything/{n}") for n in range(3)] == [n + 1 for n in before]


def test_purge_now_on_rules_confirms_the_count_then_purges_every_object(
    admin_client, make_rule, sent
) -> None:
    for slug in ("a", "b", "c"):
        Post.objects.create(title=slug, slug=slug)
    sent.clear()
    PurgeAttempt.objects.all().delete()
    rule = make_rule("posts", "/posts/\n/posts/{slug}/")
    form = {"action": "purge_rules_now", "_selected_action": [rule.pk]}

    page = admin_client.post("/admin/roan/purgerule/", form)

    assert page.status_code == 200
    assert "This purges 4 URLs (4 attempts over the backends)." in page.text
    assert sent == [] and not PurgeAttempt.objects.exists()

    done = admin_client.post("/admin/roan/purgerule/", {**form, "post": "yes"}, follow=True)

    assert "Purging 1 rule: 4 purged." in done.text
    assert sorted(r.target for _node, r in sent) == [
        "/posts/",
        "/posts/a/",
        "/posts/b/",
        "/posts/c/",
    ]
    assert {a.user.username for a in PurgeAttempt.objects.all()} == {"admin"}


def test_above_the_per_event_limit_purge_now_needs_an_explicit_confirmation(
    admin_client, make_rule, settings, sent
) -> None:
    settings.ROAN_MAX_URLS_PER_EVENT = 2
    for slug in ("a", "b", "c"):
        Post.objects.create(title=slug, slug=slug)
    sent.clear()
    PurgeAttempt.objects.all().delete()
    rule = make_rule("posts", "/posts/{slug}/")
    form = {"action": "purge_rules_now", "_selected_action": [rule.pk], "post": "yes"}

    again = admin_client.post("/admin/roan/purgerule/", form)

    assert "Tick this box to go on." in again.text
    assert sent == []

    admin_client.post("/admin/roan/purgerule/", {**form, "confirm_over_limit": "yes"})

    # All three, not cut at the limit: the editor confirmed the count.
    assert sorted(r.target for _node, r in sent) == ["/posts/a/", "/posts/b/", "/posts/c/"]
    assert not PurgeAttempt.objects.filter(status="skipped").exists()


def test_the_mixin_action_purges_the_selected_objects(admin_client, post_rule, sent) -> None:
    one = Post.objects.create(title="One", slug="one")
    Post.objects.create(title="Two", slug="two")
    sent.clear()
    PurgeAttempt.objects.all().delete()

    response = admin_client.post(
        "/admin/testapp/post/",
        {"action": "purge_cache_for_selected", "_selected_action": [one.pk]},
        follow=True,
    )

    assert "Purging the cache for 1 object: 2 purged." in response.text
    assert sorted(r.target for _node, r in sent) == ["/posts/", "/posts/one/"]
    assert {(a.trigger, a.user.username) for a in PurgeAttempt.objects.all()} == {
        ("admin", "admin")
    }


def test_the_change_form_button_shows_the_urls_then_purges_on_post(
    admin_client, post_rule, sent
) -> None:
    post = Post.objects.create(title="One", slug="one")
    sent.clear()
    PurgeAttempt.objects.all().delete()
    url = f"/admin/testapp/post/{post.pk}/purge-cache/"

    assert f'href="{url}"' in admin_client.get(f"/admin/testapp/post/{post.pk}/change/").text
    confirm = admin_client.get(url)
    assert [line.target for line in confirm.context["targets"]] == ["/posts/", "/posts/one/"]
    assert sent == []

    done = admin_client.post(url, {"plan": confirm.context["plan"]})

    assert done.status_code == 302 and done["Location"].endswith(f"/{post.pk}/change/")
    assert sorted(r.target for _node, r in sent) == ["/posts/", "/posts/one/"]


def test_purge_cache_shows_each_target_once_with_its_rules_and_backends_then_writes_that(
    admin_client, make_rule, settings, sent
) -> None:
    settings.ROAN_BACKENDS = {
        "edge": {"BACKEND": "roan.backends.locmem.LocMemBackend", "NODES": ["e1", "e2"]},
        "pages": {"BACKEND": "roan.backends.locmem.LocMemBackend", "HOSTS": ["a.example"]},
    }
    make_rule("home", "/\n/posts/{slug}/")
    make_rule("lists", "/\n/latest/", backends=["edge"])
    post = Post.objects.create(title="One", slug="one")
    sent.clear()
    PurgeAttempt.objects.all().delete()
    url = f"/admin/testapp/post/{post.pk}/purge-cache/"

    page = admin_client.get(url)

    rows = [
        (line.target, line.rules, [(b.alias, b.nodes) for b in line.backends])
        for line in page.context["targets"]
    ]
    assert rows == [
        ("/", ["home", "lists"], [("edge", ("e1", "e2")), ("pages", ("default",))]),
        ("/posts/one/", ["home"], [("edge", ("e1", "e2")), ("pages", ("default",))]),
        ("/latest/", ["lists"], [("edge", ("e1", "e2"))]),
    ]
    text = page.content.decode()
    assert text.count('<td class="roan-target">/</td>') == 1
    summary = text.split('id="roan-plan-summary">')[1].split("</p>")[0]
    assert summary == (
        "roan's rules name 3 targets for this object; purging writes 8 attempts (one per "
        "backend node, or one skipped row)."
    )

    admin_client.post(url, {"plan": page.context["plan"]})

    assert PurgeAttempt.objects.count() == 8
    assert sorted((node, r.target) for node, r in sent) == sorted(
        [(n, t) for n in ("e1", "e2") for t in ("/", "/posts/one/", "/latest/")]
        + [("default", "/"), ("default", "/posts/one/")]
    )


def test_purge_cache_writes_nothing_when_the_plan_changed_since_it_was_shown(
    admin_client, make_rule, sent
) -> None:
    rule = make_rule("home", "/")
    post = Post.objects.create(title="One", slug="one")
    sent.clear()
    PurgeAttempt.objects.all().delete()
    url = f"/admin/testapp/post/{post.pk}/purge-cache/"
    shown = admin_client.get(url).context["plan"]
    rule.templates = "/\n/posts/{slug}/"
    rule.save()

    again = admin_client.post(url, {"plan": shown})

    assert again.status_code == 200 and "changed since the page was shown" in again.text
    assert [line.target for line in again.context["targets"]] == ["/", "/posts/one/"]
    assert not PurgeAttempt.objects.exists() and sent == []


def test_roan_pages_mount_once_on_another_admin_site() -> None:
    from django.contrib.admin import AdminSite
    from django.urls import URLResolver
    from django.urls.resolvers import RegexPattern

    from roan.admin import register

    site = AdminSite(name="other")
    register(site)
    register(site)

    def names(patterns: list[Any]) -> list[str | None]:
        found: list[str | None] = []
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                found += names(pattern.url_patterns)
            else:
                found.append(pattern.name)
        return found

    pages = ["roan_purge", "roan_purge_all", "roan_dashboard", "roan_dashboard_repurge"]
    assert [names(site.get_urls()).count(name) for name in pages] == [1] * len(pages)
    root = URLResolver(RegexPattern(r"^"), site.get_urls())
    # Served by roan's page, not the admin's catch-all.
    assert root.resolve("roan/purge/").url_name == "roan_purge"
    assert root.resolve("roan/purge/all/").url_name == "roan_purge_all"


# -- from a post to its purges -----------------------------------------------------------------


def post_form(post: Post, **changes: str) -> dict[str, str]:
    return {"title": post.title, "slug": post.slug, "body": "", "views": "0", **changes}


def test_a_save_in_the_admin_says_what_roan_purged_and_links_to_those_attempts(
    admin_client, post_rule, sent
) -> None:
    post = Post.objects.create(title="One", slug="one")
    PurgeAttempt.objects.all().delete()

    response = admin_client.post(
        f"/admin/testapp/post/{post.pk}/change/", post_form(post, slug="uno"), follow=True
    )

    [saved, purged] = shown_messages(response)
    assert "was changed successfully" in saved[1]
    # The old URL and the new one, and the list.
    assert purged[0] == "success"
    assert purged[1].startswith("Cache purges for this change: 3 purged.")
    link = response.content.decode().split("Show these attempts")[0].rsplit('href="', 1)[1]
    shown = admin_client.get(link.split('"')[0])
    assert sorted(a.target for a in shown.context["cl"].result_list) == [
        "/posts/",
        "/posts/one/",
        "/posts/uno/",
    ]


def test_the_save_message_tells_what_the_request_sent_without_reading_it_back(
    admin_client, post_rule, sent, settings
) -> None:
    """The outcomes the request's own send committed are told as recorded: the message
    needs no query of the attempt table, and says what the rows say, failures with why."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.support.caches import free_port

    settings.ROAN_BACKENDS = {
        "default": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
        # Nothing listens there: refused at once, failed and to be retried.
        "down": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"http://127.0.0.1:{free_port()}/purge",
        },
    }
    post = Post.objects.create(title="One", slug="one")
    PurgeAttempt.objects.all().delete()

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.post(f"/admin/testapp/post/{post.pk}/change/", post_form(post))
    assert response.status_code == 302
    read_back = [
        q["sql"]
        for q in queries.captured_queries
        # (MySQL and MariaDB claim by a locking read: that one is the send's own.)
        if q["sql"].startswith("SELECT") and "roan_purgeattempt" in q["sql"]
        and "FOR UPDATE" not in q["sql"]
    ]  # fmt: skip
    assert read_back == []

    said = [text for _level, text in shown_messages(admin_client.get(response.url))]
    [purged] = [text for text in said if text.startswith("Cache purges")]
    rows = list(PurgeAttempt.objects.order_by("backend", "target"))
    assert [(r.backend, r.status) for r in rows] == [
        ("default", "ok"), ("default", "ok"), ("down", "failed"), ("down", "failed")
    ]  # fmt: skip
    assert purged.startswith("Cache purges for this change: 2 purged, 2 failed, to be retried")
    assert rows[-1].error and rows[-1].error in purged


def test_a_save_without_rules_adds_no_purge_message(admin_client, sent) -> None:
    post = Post.objects.create(title="One", slug="one")

    response = admin_client.post(
        f"/admin/testapp/post/{post.pk}/change/", post_form(post), follow=True
    )

    assert [level for level, _text in shown_messages(response)] == ["success"]


def test_deleting_in_the_admin_says_what_roan_purged(admin_client, post_rule, sent) -> None:
    post = Post.objects.create(title="One", slug="one")

    response = admin_client.post(
        f"/admin/testapp/post/{post.pk}/delete/", {"post": "yes"}, follow=True
    )

    assert any(
        text.startswith("Cache purges for this change: 2 purged.")
        for _level, text in shown_messages(response)
    )


def test_the_change_form_links_to_the_objects_purges_when_its_model_has_rules(
    admin_client, make_rule, sent
) -> None:
    post = Post.objects.create(title="One", slug="one")
    other = Post.objects.create(title="Two", slug="two")
    change = f"/admin/testapp/post/{post.pk}/change/"
    assert "Purges</a>" not in admin_client.get(change).text  # no rule names posts yet

    make_rule("posts", "/posts/{slug}/")
    for obj in (post, other):
        obj.save()
    page = admin_client.get(change).content.decode()

    href = page.split('class="roan-purges-link"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert href == f"/admin/roan/purgeattempt/?object=testapp.post:{post.pk}"
    log = admin_client.get(href)
    assert [a.target for a in log.context["cl"].result_list] == ["/posts/one/"]
    # The sidebar names the object being filtered on.
    assert "By object" in log.text and ">One</a>" in log.text


def test_the_log_filters_by_model(admin_client, make_rule, sent) -> None:
    from tests.testapp.models import Tag

    make_rule("posts", "/posts/{slug}/")
    make_rule("tags", "/tags/{slug}/", model=Tag)
    Post.objects.create(title="One", slug="one")
    Tag.objects.create(slug="red")

    log = admin_client.get("/admin/roan/purgeattempt/?model=testapp.tag")

    assert [a.target for a in log.context["cl"].result_list] == ["/tags/red/"]
    assert "By model" in log.text and "?model=testapp.post" in log.text


def test_a_change_form_without_the_mixin_links_to_the_objects_purges(
    admin_client, make_rule, sent
) -> None:
    """Authors have a plain ModelAdmin: roan's object tools template adds the link."""
    from tests.testapp.models import Author

    author = Author.objects.create(username="ann")
    change = f"/admin/testapp/author/{author.pk}/change/"
    assert "roan-purges-link" not in admin_client.get(change).text  # no rule names authors

    make_rule("authors", "/authors/{username}/", model=Author)
    author.save()
    page = admin_client.get(change).content.decode()

    assert page.count('class="roan-purges-link"') == 1
    assert "History</a>" in page  # Django's own tools are still there
    href = page.split('class="roan-purges-link"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert href == f"/admin/roan/purgeattempt/?object=testapp.author:{author.pk}"
    log = admin_client.get(href)
    assert [a.target for a in log.context["cl"].result_list] == ["/authors/ann/"]


def test_the_purges_link_is_shown_once_with_the_mixin_and_never_without_the_log(
    admin_client, django_user_model, make_rule, sent
) -> None:
    from tests.support.admin_helpers import staff_client
    from tests.testapp.models import Author

    make_rule("posts", "/posts/{slug}/")
    make_rule("authors", "/authors/{username}/", model=Author)
    post = Post.objects.create(title="One", slug="one")
    author = Author.objects.create(username="ann")

    mixin_page = admin_client.get(f"/admin/testapp/post/{post.pk}/change/").text
    assert mixin_page.count('class="roan-purges-link"') == 1

    # An editor who may change authors but not read the purge log sees no link to it.
    editor = staff_client(
        django_user_model, "editor", ["testapp.view_author", "testapp.change_author"]
    )
    page = editor.get(f"/admin/testapp/author/{author.pk}/change/")
    assert page.status_code == 200
    assert "roan-purges-link" not in page.text


def test_saving_in_an_admin_without_the_mixin_says_what_roan_purged(
    admin_client, make_rule, sent
) -> None:
    """PurgeUserMiddleware tells the editor, for any ModelAdmin (Authors have a plain one)."""
    from tests.testapp.models import Author

    make_rule("authors", "/authors/{username}/", model=Author)
    author = Author.objects.create(username="ann")

    response = admin_client.post(
        f"/admin/testapp/author/{author.pk}/change/", {"username": "bea"}, follow=True
    )

    said = [text for _level, text in shown_messages(response) if "Cache purges" in text]
    assert len(said) == 1
    assert said[0].startswith("Cache purges for this change:")
    assert "Show these attempts" in said[0]
    assert {a.target for a in PurgeAttempt.objects.filter(trigger="save")} >= {
        "/authors/ann/",
        "/authors/bea/",
    }


def test_saving_with_the_mixin_says_it_once(admin_client, post_rule, sent) -> None:
    post = Post.objects.create(title="One", slug="one")

    response = admin_client.post(
        f"/admin/testapp/post/{post.pk}/change/", post_form(post), follow=True
    )

    said = [text for _level, text in shown_messages(response) if "Cache purges" in text]
    assert len(said) == 1
