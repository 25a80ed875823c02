"""A generic HTTP purge API or webhook: a method, a URL template and headers.

``URL`` may contain ``{url}`` (the page's full URL, ``SCHEME://host/path?query``),
``{path}``, ``{host}`` and ``{target}`` (the path, prefix or tag). Each is
percent-encoded as one value (``/`` is kept in ``{path}``), so the receiver decodes it
once to get the original. The scheme and host part of ``URL`` is fixed: roan connects
to it and to nothing else. ``HEADERS`` may carry credentials: they are sent, and never
logged, stored or put in an error message or a node name.

``SOFT = True`` (default False) says the call marks the page stale or refreshes it rather
than removing it (nginx's ``proxy_cache_bypass`` refresh in ``example/deploy/nginx.conf``,
a CDN's soft purge): roan records the attempts as soft. The call itself is the same.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import Call, HTTPTransport
from roan.backends.base import (
    KINDS,
    SKIPPED,
    URL,
    BaseBackend,
    PurgeRequest,
    PurgeResult,
    redact_url,
)
from roan.backends.options import soft_option

_FIELDS = frozenset({"url", "path", "host", "target"})
_PROBE = "roan-placeholder"


class HTTPBackend(BaseBackend):
    """``METHOD URL`` (rendered per request) with ``HEADERS``; one request per purge."""

    capabilities = frozenset({URL})  # set per instance from KINDS
    batch_size = 50
    options_accepted: ClassVar[frozenset[str]] = frozenset(
        {"URL", "METHOD", "HEADERS", "KINDS", "SCHEME", "SOFT"}
    )

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        where = f"ROAN_BACKENDS[{alias!r}]"
        # Messages below never repeat URL or HEADERS: either may hold a secret.
        template = options.get("URL")
        if not isinstance(template, str) or not template:
            raise ImproperlyConfigured(
                f"{where}['URL'] is required, e.g. 'https://api.example.com/purge?url={{url}}'."
            )
        try:
            names = {
                name for _, name, _, _ in string.Formatter().parse(template) if name is not None
            }
        except ValueError:
            raise ImproperlyConfigured(f"{where}['URL'] has unbalanced braces.") from None
        if names - _FIELDS:
            raise ImproperlyConfigured(
                f"{where}['URL'] may use {{url}}, {{path}}, {{host}} and {{target}} only."
            )
        # The part before the first placeholder must name the server: roan never lets a
        # rule or a model choose where it connects.
        try:
            parts = urlsplit(template.format_map(dict.fromkeys(_FIELDS, _PROBE)))
            parts.port  # noqa: B018 -- raises ValueError when the port is not a number
            valid = "@" not in parts.path.split(_PROBE, 1)[0]
        except ValueError:
            valid = False
        if not valid:
            # Raised outside the except block: the parser's message, kept as the
            # exception's context, can quote a password.
            raise ImproperlyConfigured(
                f"{where}['URL'] is not a valid URL; percent-encode any '/', '?', '#' or '@' "
                "in its user name or password (%2F, %3F, %23, %40)."
            )
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ImproperlyConfigured(f"{where}['URL'] must start with http(s)://host/.")
        if _PROBE in parts.netloc:
            raise ImproperlyConfigured(f"{where}['URL']: placeholders cannot be in the host.")
        if {"url", "host"} & names and not self.hosts:
            raise ImproperlyConfigured(
                f"{where}['HOSTS'] is required when 'URL' uses {{url}} or {{host}}: "
                "list the host names of your pages."
            )
        self.template = template
        # Where every rendered URL must stay: the literal path before the first
        # placeholder (the whole path when placeholders are only in the query).
        literal = urlsplit(template.split("{", 1)[0])
        self.base_path = literal.path if "{" in template else parts.path
        self.origin = f"{parts.scheme}://{parts.netloc}"

        method = options.get("METHOD", "PURGE")
        if not isinstance(method, str) or not method.isalpha():
            raise ImproperlyConfigured(f"{where}['METHOD'] must be an HTTP method, e.g. 'POST'.")
        self.method = method.upper()

        headers = options.get("HEADERS", {})
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ImproperlyConfigured(f"{where}['HEADERS'] must map header names to strings.")
        if any("\r" in v or "\n" in v for v in headers.values()):
            raise ImproperlyConfigured(f"{where}['HEADERS']: a value contains a line break.")
        self.headers = dict(headers)

        kinds = self._list_option(options, "KINDS", default=(URL,))
        if not kinds or set(kinds) - set(KINDS):
            raise ImproperlyConfigured(f"{where}['KINDS'] must list some of {', '.join(KINDS)}.")
        self.capabilities = frozenset(kinds)

        scheme = options.get("SCHEME", "https")
        if scheme not in {"http", "https"}:
            raise ImproperlyConfigured(f"{where}['SCHEME'] must be 'http' or 'https'.")
        self.scheme: str = scheme

        # Only the server's address names the node: paths and queries of webhook URLs
        # often embed tokens.
        self.node = redact_url(f"{parts.scheme}://{parts.netloc}")
        self.transport = HTTPTransport(self)
        self.soft = soft_option(alias, options, default=False)

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.node,)

    def probe_origin(self, node: str) -> str | None:
        # A purge location in front of the page's path ("http://cache:8080/purge{path}",
        # as nginx's) is taken to be on the cache that serves the pages; a URL that takes
        # the page in a query or a body (an API, a webhook) is not.
        shaped = self.template.endswith("{path}") and self.template.count("{") == 1
        return self.origin if shaped and "?" not in self.template else None

    def render(self, request: PurgeRequest) -> str:
        """The URL to call for ``request``."""
        host = request.host or self.default_host()
        return self.template.format(
            url=quote(f"{self.scheme}://{host}{request.target}", safe=""),
            path=quote(request.target, safe="/"),
            host=quote(host, safe=""),
            target=quote(request.target, safe=""),
        )

    def escapes(self, url: str) -> str:
        """Why the rendered ``url`` leaves the base of ``URL`` (``""`` when it stays).

        A ``{path}`` keeps ``/``, so ``/../../other/`` would reach another part of the
        API with the same credentials. Dot segments are refused, also percent-encoded
        (``%2e%2e``, decoded repeatedly, as some servers decode twice), and the path must
        start with the literal path of ``URL`` before its first placeholder.
        """
        if not url.startswith(self.origin):
            return "the purge URL would go to another server than URL's"
        path = urlsplit(url).path
        for segment in path.split("/"):
            decoded = segment
            for _ in range(3):
                decoded = unquote(decoded)
            # A decoded "/" or backslash is a separator to some servers: check the pieces.
            if any(part in (".", "..") for part in re.split(r"[/\\]", decoded)):
                return "the purge URL has a '.' or '..' segment, which could leave URL's base path"
        if not path.startswith(self.base_path):
            return "the purge URL would leave URL's base path"
        return ""

    def refuse(self, request: PurgeRequest) -> str:
        if why := super().refuse(request):
            return why
        return self.escapes(self.render(request))

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        results: list[PurgeResult | None] = []
        calls: list[Call] = []
        for request in requests:
            url = self.render(request)
            # Checked again here for rows written before the check at submit time.
            if why := self.escapes(url):
                results.append(PurgeResult(SKIPPED, error=why, retryable=False))
                continue
            results.append(None)
            calls.append(Call(self.method, url, self.headers, request.target))
        answers = self.transport.send_all(node, calls)
        if self.soft:
            for answer in answers:
                answer.soft = True
        sent = iter(answers)
        return [result or next(sent) for result in results]

    def close(self) -> None:
        self.transport.close()
