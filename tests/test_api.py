"""roan.purge_urls / purge_object and what they accept."""

from __future__ import annotations

import pytest

import roan
from roan.api import parse_target
from roan.testing import capture_purges


@pytest.mark.parametrize(
    ("value", "kind", "target", "host"),
    [
        ("/posts/", "url", "/posts/", ""),
        ("/search?q=a", "url", "/search?q=a", ""),
        ("https://www.example.com/posts/?page=2#top", "url", "/posts/?page=2", "www.example.com"),
        ("http://example.com:8080", "url", "/", "example.com:8080"),
        ("/posts/*", "prefix", "/posts/", ""),
        ("section-posts", "tag", "section-posts", ""),
    ],
)
def test_targets_are_parsed(value: str, kind: str, target: str, host: str) -> None:
    request = parse_target(value, kind)
    assert (request.kind, request.target, request.host) == (kind, target, host)


@pytest.mark.parametrize(
    "value",
    [
        "posts/",
        "//evil.example/",
        "ftp://example.com/x",
        "/a b",
        "/x\r\nHost: evil",
        "",
        "/" + "a" * 2048,
    ],
)
def test_bad_targets_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_target(value, "url")


def test_purge_urls_goes_to_every_backend_unless_told(settings) -> None:
    settings.ROAN_BACKENDS = {
        "a": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
        "b": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
    }
    with capture_purges() as captured:
        roan.purge_urls(["/x/", "/x/"])
        roan.purge_urls("/y/", backends=["b"], trigger="admin")
    assert [(p.backend, p.request.target, p.cause.trigger) for p in captured] == [
        ("a", "/x/", "api"),
        ("b", "/x/", "api"),
        ("b", "/y/", "admin"),
    ]


def test_capture_purges_works_as_a_decorator() -> None:
    seen: list[int] = []

    @capture_purges()
    def run() -> None:
        seen.append(roan.purge_urls("/x/"))

    run()
    assert seen == [0]  # captured, so no attempt row was written
