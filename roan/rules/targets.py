"""What a person or program may ask to purge: a path, a URL, a prefix, a tag or all,
parsed and bounded to what the attempt log's columns hold on every database."""

from __future__ import annotations

from urllib.parse import urlsplit

from roan.backends.base import (
    KINDS,
    MAX_ALIAS_LENGTH,
    MAX_HOST_LENGTH,
    MAX_TARGET_LENGTH,
    PurgeRequest,
)
from roan.rules.templating import MAX_LENGTH, has_dot_segment

_CONTROL = {chr(c) for c in range(0x21)} | {"\x7f"}


def parse_target(value: str, kind: str) -> PurgeRequest:
    """A request from what a person or program typed: a path, a URL, a prefix or a tag.

    Raises ``ValueError`` saying what is wrong; whatever it returns fits the attempt
    table's columns, on every database.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    value = value.strip()
    if kind == "all":
        return PurgeRequest("all", "")
    if not value:
        raise ValueError("empty target")
    longest = min(MAX_LENGTH, MAX_TARGET_LENGTH)
    if len(value) > longest:
        raise ValueError(f"longer than {longest} characters")
    if any(ch in _CONTROL for ch in value):
        raise ValueError(f"{value[:80]!r} contains spaces or control characters")
    if kind == "tag":
        return PurgeRequest("tag", value)
    host = ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"{value[:80]!r} is not an http(s) URL or a path")
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        if len(host) > (longest_host := MAX_HOST_LENGTH):
            raise ValueError(f"the host {host[:40]!r}... is longer than {longest_host} characters")
        value = parts.path or "/"
        if parts.query:
            value += "?" + parts.query
    if not value.startswith("/") or value.startswith("//"):
        raise ValueError(f"{value[:80]!r} is not a path starting with '/'")
    value = value.split("#", 1)[0]
    if kind == "prefix":
        value = value.removesuffix("*")
    if has_dot_segment(value):
        raise ValueError(
            f"{value[:80]!r} has a '.' or '..' segment (or %2E), which caches resolve to "
            "another path"
        )
    return PurgeRequest(kind, value, host)


def check_alias(alias: str) -> None:
    """Raise ``ValueError`` for a backend alias longer than the log's column."""
    if len(alias) > MAX_ALIAS_LENGTH:
        raise ValueError(f"backend alias {alias[:40]!r}... is longer than {MAX_ALIAS_LENGTH}")
