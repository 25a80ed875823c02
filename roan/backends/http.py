"""A generic HTTP purge API or webhook: a method, a URL template and headers.

``URL`` may contain ``{url}`` (the page's full URL), ``{path}``, ``{host}`` and
``{target}`` (the path, prefix or tag), each percent-encoded. ``HEADERS`` may carry
credentials: they are sent, and never logged, stored or put in an error message.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from roan.backends._http import HTTPTransport
from roan.backends.base import KINDS, BaseBackend, PurgeRequest, PurgeResult, redact_url

_FIELDS = {"url", "path", "host", "target"}


class HTTPBackend(BaseBackend):
    capabilities = frozenset(KINDS)  # narrowed per instance by KINDS, see refuse()
    batch_size = 50
    options_accepted: ClassVar[frozenset[str]] = frozenset(
        {"URL", "METHOD", "HEADERS", "KINDS", "SCHEME"}
    )

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        where = f"ROAN_BACKENDS[{alias!r}]"
        template = options.get("URL")
        if not isinstance(template, str) or not template:
            raise ImproperlyConfigured(
                f"{where}['URL'] is required, e.g. 'https://api/purge?url={{url}}'."
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
        parts = urlsplit(template.split("{", 1)[0])
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ImproperlyConfigured(f"{where}['URL'] must start with http(s)://host.")
        self.template = template
        self.method = str(options.get("METHOD", "PURGE")).upper()
        if not self.method.isalpha():
            raise ImproperlyConfigured(f"{where}['METHOD'] is not an HTTP method.")
        headers = options.get("HEADERS", {})
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ImproperlyConfigured(f"{where}['HEADERS'] must map header names to strings.")
        self.headers = dict(headers)
        kinds = self._list_option(options, "KINDS", default=("url",))
        if not kinds or set(kinds) - set(KINDS):
            raise ImproperlyConfigured(f"{where}['KINDS'] must list some of {', '.join(KINDS)}.")
        self.kinds = frozenset(kinds)
        self.scheme = str(options.get("SCHEME", "https"))
        if self.scheme not in {"http", "https"}:
            raise ImproperlyConfigured(f"{where}['SCHEME'] must be 'http' or 'https'.")
        self.node = redact_url(f"{parts.scheme}://{parts.netloc}")
        self.transport = HTTPTransport(self)

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.node,)

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind not in self.kinds:
            return f"this backend's KINDS do not include {request.kind}"
        return super().refuse(request)

    def purge(self, node: str, requests: Sequence[PurgeRequest]) -> list[PurgeResult]:
        calls = []
        for request in requests:
            host = request.host or self.default_host()
            page = f"{self.scheme}://{host}{request.target}" if host else request.target
            url = self.template.format(
                url=quote(page, safe=""),
                path=quote(request.target, safe="/"),
                host=quote(host, safe=""),
                target=quote(request.target, safe=""),
            )
            calls.append((self.method, url, self.headers))
        return self.transport.send_all(calls)

    def close(self) -> None:
        self.transport.close()
