"""Fill the example blog with authors, tags, posts, purge rules and an admin user.

Safe to run again: existing rows (matched by username, slug or rule name) are left as
they are, so edits made in the admin survive a second run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.cache import caches
from django.core.management.base import BaseCommand
from django.db import models, transaction
from django.utils import timezone

import roan
from blog.models import Author, Post, Tag
from roan.models import PurgeRule

AUTHORS = [
    ("ada", "Ada Quill"),
    ("bo", "Bo Lindqvist"),
    ("chidi", "Chidi Okafor"),
]

TAGS = [
    ("caching", "Caching"),
    ("django", "Django"),
    ("http", "HTTP"),
    ("ops", "Operations"),
    ("notes", "Field notes"),
]

# (slug, title, author, tags, paragraphs)
POSTS = [
    (
        "why-pages-go-stale",
        "Why pages go stale",
        "ada",
        ["caching", "http"],
        [
            "A cached page is a promise that nothing changed. Every edit breaks that promise "
            "somewhere, and the question is only how long readers see the old version.",
            "Short lifetimes hide the problem; purging on change solves it.",
        ],
    ),
    (
        "purge-after-commit",
        "Purge after commit, not before",
        "ada",
        ["caching", "django"],
        [
            "If the purge reaches the cache before the transaction commits, the next reader "
            "refills the cache with the old row. Waiting for the commit closes that window."
        ],
    ),
    (
        "cache-page-in-practice",
        "cache_page in practice",
        "bo",
        ["django", "caching"],
        [
            "Django's cache_page stores the whole response under a key built from the URL, the "
            "host and the headers named in Vary.",
            "Touch the session in a view and every visitor gets a private copy.",
        ],
    ),
    (
        "reading-cache-control",
        "Reading Cache-Control headers",
        "bo",
        ["http"],
        [
            "public, private, max-age and s-maxage decide who may keep a response and for how "
            "long. Most surprises come from a header nobody meant to send."
        ],
    ),
    (
        "the-vary-header",
        "The Vary header, gently",
        "chidi",
        ["http", "caching"],
        [
            "Vary lists the request headers that select between stored variants. "
            "Vary: Cookie on a public page turns one cache entry into thousands."
        ],
    ),
    (
        "nginx-purge-module",
        "Purging nginx's proxy cache",
        "chidi",
        ["ops", "caching"],
        [
            "The cache purge module answers GET /purge/some/path by dropping the entry for "
            "/some/path. Keep that location reachable from localhost only."
        ],
    ),
    (
        "varnish-bans",
        "Bans and purges in Varnish",
        "ada",
        ["ops", "caching"],
        [
            "A purge removes one object now; a ban marks everything matching an expression as "
            "stale and lets the ban lurker clean up later."
        ],
    ),
    (
        "surrogate-keys",
        "Tagging responses with surrogate keys",
        "bo",
        ["caching", "http"],
        [
            "Tag each response with the objects it shows, then purge by tag: one request "
            "invalidates every page that mentions the changed object."
        ],
    ),
    (
        "audit-everything",
        "An audit log for cache purges",
        "chidi",
        ["ops", "django"],
        [
            "When a reader reports a stale page, the first question is whether the purge was "
            "sent and what the cache answered. Keep the answer in a table."
        ],
    ),
    (
        "retry-with-backoff",
        "Retrying with backoff",
        "ada",
        ["ops"],
        [
            "A cache that is restarting will refuse a few requests. Try again later, a little "
            "later each time, and give up loudly when it never comes back."
        ],
    ),
    (
        "notes-from-a-migration",
        "Notes from a cache migration",
        "bo",
        ["notes", "ops"],
        [
            "We moved from nginx to Varnish over a weekend. The purge rules did not change; "
            "only the backend setting did."
        ],
    ),
    (
        "small-sites-need-caches-too",
        "Small sites need caches too",
        "chidi",
        ["notes", "django"],
        [
            "A blog on a single small server can serve thousands of readers from the page "
            "cache, as long as edits show up at once."
        ],
    ),
]

# (name, model, templates, description, fire on many-to-many changes)
# Every page carries cache tags (CacheTagMiddleware): the lists carry blog.post, a post's
# page carries its post, author and tags, and a save purges what it touches. The rules
# name what a tag cannot: the object's own pages by URL, from its values before and after
# the save (a changed slug purges the old address), whether or not the URL<->tag index
# has seen them (pages cached before tags were on, a cache the index does not cover).
RULES: list[tuple[str, type[models.Model], list[str], str, bool]] = [
    (
        "Post pages",
        Post,
        ["/posts/{slug}/"],
        "The post's own page. Lists of posts carry the blog.post tag and are purged by it.",
        False,
    ),
    (
        "Author pages",
        Author,
        ["/authors/{username}/", "/posts/{posts.slug}/"],
        "The author's page and each of their posts, which show the author's name.",
        False,
    ),
    (
        "Tag pages",
        Tag,
        ["/tags/{slug}/", "/posts/{posts.slug}/"],
        "The tag's page and each post it is on, which link to it by slug.",
        False,
    ),
]


@contextlib.contextmanager
def _no_purges() -> Iterator[None]:
    # roan.suppress_purges() switches purging off for the block; fall back to a no-op
    # on a roan without it.
    suppress = getattr(roan, "suppress_purges", None)
    with suppress() if suppress is not None else contextlib.nullcontext():
        yield


class Command(BaseCommand):
    help = "Create demo authors, tags, posts, purge rules and an admin/admin superuser."

    def handle(self, *args: Any, **options: Any) -> None:
        with _no_purges(), transaction.atomic():
            authors = self._authors()
            tags = self._tags()
            created_posts = self._posts(authors, tags)
            created_rules = self._rules()
        # Seeding bypassed roan, so drop whatever pages an earlier run left cached.
        caches["default"].clear()
        self.stdout.write(
            f"Posts: {Post.objects.count()} ({created_posts} new); "
            f"purge rules: {PurgeRule.objects.count()} ({created_rules} new)."
        )
        self._superuser()

    def _authors(self) -> dict[str, Author]:
        return {
            username: Author.objects.get_or_create(username=username, defaults={"name": name})[0]
            for username, name in AUTHORS
        }

    def _tags(self) -> dict[str, Tag]:
        return {
            slug: Tag.objects.get_or_create(slug=slug, defaults={"name": name})[0]
            for slug, name in TAGS
        }

    def _posts(self, authors: dict[str, Author], tags: dict[str, Tag]) -> int:
        created = 0
        now = timezone.now().replace(microsecond=0)
        for age, (slug, title, author, tag_slugs, paragraphs) in enumerate(POSTS):
            post, new = Post.objects.get_or_create(
                slug=slug,
                defaults={
                    "title": title,
                    "body": "\n\n".join(paragraphs),
                    "author": authors[author],
                    # Newest last in POSTS; one post a day going back.
                    "published_at": now - timedelta(days=len(POSTS) - 1 - age),
                },
            )
            if new:
                post.tags.set([tags[t] for t in tag_slugs])
                created += 1
        return created

    def _rules(self) -> int:
        created = 0
        for name, model, templates, description, on_m2m in RULES:
            if PurgeRule.objects.filter(name=name).exists():
                continue
            rule = PurgeRule(
                name=name,
                content_type=ContentType.objects.get_for_model(model),
                templates="\n".join(templates),
                description=description,
                on_save=True,
                on_delete=True,
                on_m2m=on_m2m,
            )
            rule.full_clean()  # the same template validation as the admin form
            rule.save()
            created += 1
        return created

    def _superuser(self) -> None:
        User = get_user_model()
        user = User.objects.filter(username="admin").first()
        if user is None:
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write(self.style.SUCCESS("Superuser created: admin / admin"))
        elif user.check_password("admin"):
            self.stdout.write("Superuser: admin / admin")
        else:
            self.stdout.write("Superuser admin exists (its password is no longer 'admin').")
