"""The editor of the freshness test: seeded random changes to the example blog.

Run by ``tests/test_freshness.py`` as its own process, in the example's settings (the
environment names the database, the page cache and the caches to purge, as for the
server)::

    python tests/support/freshness_driver.py SEED

It speaks JSON lines. At start it prints ``{"pages": [...]}``, every public URL the site
has; then for each ``change`` line read from stdin it makes one random change in one
transaction (``change queryset_update`` and ``change bulk_update``: a write that sends no
signals) (roan dispatches its purges inline, at commit) and prints what it did,
every URL the site has ever had (deleted posts and renamed slugs stay on the list: their
old pages must be gone from the caches too) and how the purges ended. ``quit`` ends it.

The same seed makes the same changes in the same order.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "example"


def setup() -> None:
    sys.path.insert(0, str(EXAMPLE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")
    import django

    django.setup()


class Editor:
    """Random changes, each a plausible edit: the kinds an editor makes in the admin, plus
    a bulk transaction of several at once."""

    def __init__(self, seed: int) -> None:
        from blog.models import Author, Post, Tag

        self.Author, self.Post, self.Tag = Author, Post, Tag
        self.random = random.Random(seed)
        self.serial = 0
        self.pages: set[str] = {"/", "/posts/"}
        self.free_slugs: list[str] = []  # slugs of deleted or renamed posts, for reuse
        self.remember_all()
        self.kinds: list[tuple[int, Callable[[], str]]] = [
            (3, self.create_post),
            (4, self.edit_post),
            (2, self.change_slug),
            (2, self.change_author),
            (3, self.retag_from_post),
            (2, self.retag_from_tag),
            (2, self.delete_post),
            (2, self.rename_author),
            (2, self.rename_tag),
            (1, self.create_tag),
            (1, self.create_author),
            (1, self.delete_tag),
            (1, self.delete_author),
            (1, self.republish),
            (2, self.bulk),
        ]

    # -- bookkeeping ---------------------------------------------------------------------

    def remember_all(self) -> None:
        self.pages.update(p.get_absolute_url() for p in self.Post.objects.all())
        self.pages.update(a.get_absolute_url() for a in self.Author.objects.all())
        self.pages.update(t.get_absolute_url() for t in self.Tag.objects.all())

    def name(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def pick(self, model: Any) -> Any:
        pks = sorted(model.objects.values_list("pk", flat=True))
        return model.objects.get(pk=self.random.choice(pks)) if pks else None

    def some_tags(self) -> list[Any]:
        tags = list(self.Tag.objects.order_by("pk"))
        return self.random.sample(tags, self.random.randint(0, min(3, len(tags))))

    # -- the changes (each returns what it did) ------------------------------------------

    def create_post(self) -> str:
        author = self.pick(self.Author) or self.Author.objects.create(
            username=self.name("writer"), name="A writer"
        )
        if self.free_slugs and self.random.random() < 0.4:
            # An address that showed another post (or nothing) before.
            slug = self.free_slugs.pop(self.random.randrange(len(self.free_slugs)))
        else:
            slug = self.name("post")
        post = self.Post.objects.create(
            title=f"New post {slug}", slug=slug, body=f"About {slug}.", author=author
        )
        post.tags.set(self.some_tags())
        return f"create post {slug}"

    def edit_post(self) -> str:
        post = self.pick(self.Post)
        if post is None:
            return self.create_post()
        post.title = f"{post.title.split(' (')[0]} ({self.name('edit')})"
        if self.random.random() < 0.5:
            post.body = f"Rewritten: {self.name('body')}."
        post.save()
        return f"edit post {post.slug}"

    def change_slug(self) -> str:
        post = self.pick(self.Post)
        if post is None:
            return self.create_post()
        old = post.slug
        post.slug = self.name("moved")
        post.save()
        self.free_slugs.append(old)
        return f"slug {old} -> {post.slug}"

    def change_author(self) -> str:
        post = self.pick(self.Post)
        others = list(self.Author.objects.exclude(pk=getattr(post, "author_id", None)))
        if post is None or not others:
            return self.create_author()
        post.author = self.random.choice(sorted(others, key=lambda a: a.pk))
        post.save()
        return f"author of {post.slug} -> {post.author.username}"

    def retag_from_post(self) -> str:
        post = self.pick(self.Post)
        if post is None:
            return self.create_post()
        how = self.random.choice(["add", "remove", "set", "clear"])
        tags = self.some_tags()
        if how == "clear":
            post.tags.clear()
        elif how == "set":
            post.tags.set(tags)
        elif how == "add":
            post.tags.add(*tags)
        else:
            post.tags.remove(*(list(post.tags.all())[:1] or tags))
        return f"{how} tags of {post.slug}"

    def retag_from_tag(self) -> str:
        tag = self.pick(self.Tag)
        post = self.pick(self.Post)
        if tag is None or post is None:
            return self.create_tag()
        if tag.posts.filter(pk=post.pk).exists():
            tag.posts.remove(post)
            return f"tag {tag.slug}: remove {post.slug}"
        tag.posts.add(post)
        return f"tag {tag.slug}: add {post.slug}"

    def delete_post(self) -> str:
        post = self.pick(self.Post)
        if post is None:
            return self.create_post()
        post.delete()
        self.free_slugs.append(post.slug)
        return f"delete post {post.slug}"

    def rename_author(self) -> str:
        author = self.pick(self.Author)
        if author is None:
            return self.create_author()
        if self.random.random() < 0.3:
            author.username = self.name("user")  # a new address for their page
        author.name = f"Writer {self.name('name')}"
        author.save()
        return f"rename author {author.username}"

    def rename_tag(self) -> str:
        tag = self.pick(self.Tag)
        if tag is None:
            return self.create_tag()
        if self.random.random() < 0.5:
            tag.slug = self.name("topic")  # every post page links to it by slug
        tag.name = f"Topic {self.name('label')}"
        tag.save()
        return f"rename tag {tag.slug}"

    def create_tag(self) -> str:
        slug = self.name("tag")
        tag = self.Tag.objects.create(slug=slug, name=f"Tag {slug}")
        posts = list(self.Post.objects.order_by("pk"))
        tag.posts.add(*self.random.sample(posts, min(len(posts), self.random.randint(0, 3))))
        return f"create tag {slug}"

    def create_author(self) -> str:
        username = self.name("author")
        author = self.Author.objects.create(username=username, name=f"Author {username}")
        post = self.pick(self.Post)
        if post is not None and self.random.random() < 0.7:
            post.author = author
            post.save()
        return f"create author {username}"

    def delete_tag(self) -> str:
        tag = self.pick(self.Tag)
        if tag is None:
            return self.create_tag()
        tag.delete()  # its post links go with it (no m2m_changed for a cascade)
        return f"delete tag {tag.slug}"

    def delete_author(self) -> str:
        idle = sorted(self.Author.objects.filter(posts=None).values_list("pk", flat=True))
        if not idle:
            return self.create_author()
        author = self.Author.objects.get(pk=self.random.choice(idle))
        author.delete()
        return f"delete author {author.username}"

    def republish(self) -> str:
        # Moves the post in every list (the home page shows the newest five).
        from django.utils import timezone

        post = self.pick(self.Post)
        if post is None:
            return self.create_post()
        post.published_at = timezone.now()
        post.save()
        return f"republish {post.slug}"

    # -- writes that send no signals (roan.tags.bulk_writes purges their tags) -----------------

    def queryset_update(self) -> str:
        """``QuerySet.update()`` filtered by author, not by primary key: roan reads which
        rows it matches before it runs."""
        author = self.pick(self.Author)
        if author is None or not author.posts.exists():
            post = self.pick(self.Post)
            if post is None:
                return self.create_post()
            author = post.author
        label = self.name("update")
        changed = self.Post.objects.filter(author=author).update(title=f"Updated {label}")
        return f"update() of {changed} post(s) by {getattr(author, 'username', None)}"

    def bulk_update(self) -> str:
        """``bulk_update()`` of a few posts' titles and bodies."""
        posts = list(self.Post.objects.order_by("pk"))
        chosen = self.random.sample(posts, min(len(posts), 3))
        for post in chosen:
            post.title = f"Bulk {self.name('bulk')}"
            post.body = f"Bulk body {self.serial}."
        self.Post.objects.bulk_update(chosen, ["title", "body"], batch_size=2)
        return f"bulk_update() of {', '.join(p.slug for p in chosen)}"

    def bulk(self) -> str:
        simple = [k for w, k in self.kinds if k != self.bulk]
        done = [self.random.choice(simple)() for _ in range(self.random.randint(2, 5))]
        return "bulk [" + "; ".join(done) + "]"

    # -- one step ------------------------------------------------------------------------

    def change(self, named: str = "") -> dict[str, Any]:
        """One change: a random one, or the method ``named``
        (``queryset_update``, ``bulk_update``)."""
        from django.db import transaction

        from roan.models import PurgeAttempt

        weights = [w for w, _ in self.kinds]
        action = self.random.choices([k for _, k in self.kinds], weights)[0]
        if named:
            action = {"queryset_update": self.queryset_update, "bulk_update": self.bulk_update}[
                named
            ]
        first = PurgeAttempt.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        # One transaction per change: its purges go out together once it commits. (Two
        # commits, say "create the tag" then "add its posts", let a reader refill the
        # caches between them: a stale page the editor would see too, not roan's.)
        with transaction.atomic():
            did = action()
        self.remember_all()
        statuses = Counter(
            PurgeAttempt.objects.filter(pk__gt=first).values_list("status", flat=True)
        )
        return {"did": did, "pages": sorted(self.pages), "purges": dict(statuses)}


def main() -> None:
    setup()
    editor = Editor(int(sys.argv[1]))
    print(json.dumps({"pages": sorted(editor.pages)}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        verb, _, named = command.partition(" ")
        if verb == "change":
            print(json.dumps(editor.change(named)), flush=True)


if __name__ == "__main__":
    main()
