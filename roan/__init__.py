"""roan keeps HTTP caches fresh: purge rules as data, purges sent after commit, an audit log.

Public API (importing roan touches neither settings nor the app registry)::

    from roan import purge
    purge("/posts/").on_save(Post)          # roan 0.1, still supported

    import roan
    roan.purge_urls(["/posts/", "https://example.com/about/"])
    roan.purge_object(post)
    roan.purge_tags(["blog.post:42"])       # after raw SQL, QuerySet.update(), bulk_*
    roan.purge_model(Post)
    with roan.suppress_purges():
        ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.models import Model

__all__ = [
    "purge",
    "purge_model",
    "purge_object",
    "purge_tags",
    "purge_urls",
    "suppress_purges",
]


class purge:
    """roan 0.1's API: ``purge("/posts").on_save(Post)``.

    Registers a code rule: after a ``Post`` is saved (or deleted, with ``on_delete``) and
    the transaction commits, ``/posts`` is purged on every configured backend (with only
    ``ROAN_PURGE_URL`` set, that is ``GET {ROAN_PURGE_URL}/posts``, like roan 0.1).
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def on_save(self, model: type[Model] | str) -> purge:
        from roan.rules.index import SAVE, register_code_rule

        register_code_rule(self.url, model, SAVE)
        return self

    def on_delete(self, model: type[Model] | str) -> purge:
        from roan.rules.index import DELETE, register_code_rule

        register_code_rule(self.url, model, DELETE)
        return self


def purge_urls(
    urls: Iterable[str] | str,
    *,
    backends: Iterable[str] | None = None,
    kind: str = "url",
    trigger: str = "api",
    user: Any = None,
) -> int:
    """Purge ``urls`` (paths, or absolute URLs whose host a backend allows) after commit.

    ``kind`` is ``"url"``, ``"prefix"``, ``"tag"`` or ``"all"``. Returns the number of
    attempt rows written.
    """
    from roan.api import purge_urls as _purge_urls

    return _purge_urls(urls, backends=backends, kind=kind, trigger=trigger, user=user)


def purge_object(obj: Model, *, trigger: str = "api", user: Any = None) -> int:
    """Purge every URL the rules of ``obj``'s model render for it, as if it were saved
    (with ``ROAN_TAGS`` on, its object and list tags too)."""
    from roan.api import purge_object as _purge_object

    return _purge_object(obj, trigger=trigger, user=user)


def purge_tags(
    tags: Iterable[str] | str,
    *,
    backends: Iterable[str] | None = None,
    trigger: str = "api",
    user: Any = None,
) -> int:
    """Purge pages by cache tag after commit: as a tag where the backend can purge by
    tag, else each URL the tag index holds for the tag (pages cached with it, not yet
    expired). For what no signal tells (raw SQL, ``QuerySet.update()``, ``bulk_create``,
    ``bulk_update``). Returns the number of attempt rows written."""
    from roan.api import purge_tags as _purge_tags

    return _purge_tags(tags, backends=backends, trigger=trigger, user=user)


def purge_model(
    model: type[Model],
    *,
    backends: Iterable[str] | None = None,
    trigger: str = "api",
    user: Any = None,
) -> int:
    """Purge every page showing objects of ``model``: its list tag, and each of its object
    tags the tag index knows (after ``Post.objects.update(...)``, say). Returns the number
    of attempt rows written."""
    from roan.api import purge_model as _purge_model

    return _purge_model(model, backends=backends, trigger=trigger, user=user)


@contextmanager
def suppress_purges() -> Iterator[None]:
    """Collect no purges in this block (data migrations, seeding, bulk fixes)."""
    from roan.context import suppress_purges as _suppress

    with _suppress():
        yield
