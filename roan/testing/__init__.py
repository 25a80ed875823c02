"""Helpers for the test suites of sites that use roan.

``capture_purges()`` records what roan would purge instead of writing attempts or sending
anything, so a test can assert "saving this Post purges /posts/x/"::

    from roan.testing import capture_purges

    def test_publishing_purges_the_post_page(post):
        with capture_purges() as captured:
            post.title = "New"
            post.save()
        assert "/posts/x/" in captured.urls

It also works as a decorator; the captured requests are then passed nowhere, so use the
context manager when you want to look at them. Requests are captured when the change is
made, whether or not its transaction commits later.

For tests against a real cache, this module also offers a real nginx or Varnish on
loopback in front of Django's live server (:class:`CacheTestCase`, :func:`start_nginx`,
:func:`start_varnish`) and the checks :func:`assert_hit`, :func:`assert_miss` and
:func:`assert_fresh`: see docs/howto/testing-your-cache.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from roan.context import capturing
from roan.purges import Purge
from roan.testing.caches import (
    CacheServer,
    CacheTestCase,
    CacheUnavailable,
    Nginx,
    Varnish,
    assert_fresh,
    assert_hit,
    assert_miss,
    cache_status,
    start_nginx,
    start_varnish,
)

__all__ = [
    "CacheServer",
    "CacheTestCase",
    "CacheUnavailable",
    "CapturedPurges",
    "Nginx",
    "Varnish",
    "assert_fresh",
    "assert_hit",
    "assert_miss",
    "cache_status",
    "capture_purges",
    "start_nginx",
    "start_varnish",
]

F = TypeVar("F", bound=Callable[..., Any])


class CapturedPurges:
    """What was captured: ``purges`` (with backend, request and origin) and shortcuts."""

    def __init__(self) -> None:
        self.purges: list[Purge] = []

    def __iter__(self) -> Iterator[Purge]:
        return iter(self.purges)

    def __len__(self) -> int:
        return len(self.purges)

    @property
    def urls(self) -> list[str]:
        """Targets of URL purges, without duplicates, in the order they were asked for."""
        return list(dict.fromkeys(p.request.target for p in self.purges if p.request.kind == "url"))

    @property
    def prefixes(self) -> list[str]:
        return list(
            dict.fromkeys(p.request.target for p in self.purges if p.request.kind == "prefix")
        )

    def for_backend(self, alias: str) -> list[Purge]:
        return [p for p in self.purges if p.backend == alias]

    def clear(self) -> None:
        self.purges.clear()


class capture_purges:
    """Record purges instead of writing attempt rows and sending them."""

    def __init__(self) -> None:
        self.captured = CapturedPurges()
        self._tokens: list[Any] = []

    def __enter__(self) -> CapturedPurges:
        self._tokens.append(capturing.set(self.captured.purges))
        return self.captured

    def __exit__(self, *exc: object) -> None:
        capturing.reset(self._tokens.pop())

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with capture_purges():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
