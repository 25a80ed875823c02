"""Azure Front Door (Standard/Premium): purge an AFD endpoint through Azure Resource
Manager.

``POST {API_URL}/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}/
providers/Microsoft.Cdn/profiles/{PROFILE}/afdEndpoints/{ENDPOINT}/purge?api-version=...``
with ``{"contentPaths": [...], "domains": [...]}``: at most 100 paths a call, one call per
batch and host (the host is the call's one domain). Paths are ``/a/b.png``, directory
wildcards ``/posts/*`` and ``/*``; Front Door purges are case- and query-insensitive, so
a URL's query string is not sent.

ARM answers ``202 Accepted`` with a ``Location``: the purge runs in the background (up to
minutes). The attempt is ``ok`` with completion *in progress*, and ``roan_dispatch`` (or
the send task) polls the ``Location`` (``202`` while running, ``200`` when done); a
``Location`` on another server than ``API_URL`` is never fetched.

The credential is azure-identity's ``DefaultAzureCredential`` (``pip install
'roan[azure]'``; a managed identity, a service principal in the environment, the Azure
CLI's login...) or, for tests, a bearer ``TOKEN``.
https://learn.microsoft.com/rest/api/frontdoorservice/azurefrontdoorstandardpremium/afd-endpoints/purge-content
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from roan.backends._api import APIBackend, Batch, chunked, json_body
from roan.backends._http import Call, Reply, parse_retry_after
from roan.backends.base import (
    ALL,
    OK,
    PREFIX,
    URL,
    Progress,
    PurgeRequest,
    PurgeResult,
)

try:
    from azure.identity import DefaultAzureCredential
except ImportError:  # the extra is not installed: the backend says so when it needs it
    DefaultAzureCredential = None

INSTALL = "pip install 'roan[azure]'"
API_URL = "https://management.azure.com"
API_VERSION = "2023-05-01"
SCOPE = "https://management.azure.com/.default"
#: Paths per purge call (Front Door's limit).
MOST_PATHS = 100
#: Seconds to the first status check when ARM does not say.
CHECK_AFTER = 30.0
_NAME = r"[A-Za-z0-9._()-]{1,90}"


class AzureFrontDoorBackend(APIBackend):
    """Purge paths on one Azure Front Door (Standard/Premium) endpoint."""

    provider = "Azure Front Door"
    default_api_url = API_URL
    capabilities = frozenset({URL, PREFIX, ALL})
    batch_size = MOST_PATHS
    options_accepted: ClassVar[frozenset[str]] = APIBackend.options_accepted | {
        "SUBSCRIPTION_ID",
        "RESOURCE_GROUP",
        "PROFILE",
        "ENDPOINT",
        "DOMAINS",
        "TOKEN",
        "API_VERSION",
    }

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        options = dict(options)
        # DOMAINS are the custom domains purged; they are the hosts roan accepts too.
        if "DOMAINS" in options and "HOSTS" not in options:
            options["HOSTS"] = options["DOMAINS"]
        super().__init__(alias, options)
        self.subscription = self.id_option(options, "SUBSCRIPTION_ID", r"[0-9a-fA-F-]{36}")
        self.resource_group = self.id_option(options, "RESOURCE_GROUP", _NAME)
        self.profile = self.id_option(options, "PROFILE", _NAME)
        self.endpoint = self.id_option(options, "ENDPOINT", _NAME)
        self.domains = tuple(h.lower() for h in self._list_option(options, "DOMAINS", self.hosts))
        if set(self.domains) - set(self.hosts):
            raise ImproperlyConfigured(f"{self.where}['DOMAINS'] must be among HOSTS.")
        version = options.get("API_VERSION", API_VERSION)
        if not isinstance(version, str) or not re.fullmatch(
            r"[0-9]{4}-[0-9]{2}-[0-9]{2}[a-z-]*", version
        ):
            raise ImproperlyConfigured(f"{self.where}['API_VERSION'] must look like '2023-05-01'.")
        self.api_version = version
        self._token = self.secret_option(options, "TOKEN") if "TOKEN" in options else None
        if self._token is None and DefaultAzureCredential is None:
            raise ImproperlyConfigured(
                f"{self.where}: AzureFrontDoorBackend needs azure-identity for its "
                f"credential: {INSTALL} (or give TOKEN)."
            )
        self._credential: Any = None
        self._cached: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self.path = (
            f"/subscriptions/{self.subscription}/resourceGroups/{quote(self.resource_group)}"
            f"/providers/Microsoft.Cdn/profiles/{quote(self.profile)}"
            f"/afdEndpoints/{quote(self.endpoint)}/purge?api-version={self.api_version}"
        )

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer()}"}

    def bearer(self) -> str:
        """The static ``TOKEN``, or azure-identity's, cached until a minute before it ends."""
        if self._token is not None:
            return self._token
        with self._lock:
            if self._cached is None or self._cached[1] - 60 < time.time():
                if self._credential is None:
                    self._credential = DefaultAzureCredential()
                token = self._credential.get_token(SCOPE)
                self._cached = (token.token, float(token.expires_on))
                self._secrets.append(token.token)
            return self._cached[0]

    def prepare(self, call: Call) -> Call:
        # The token is fetched when the call goes, not when the batch was planned.
        return call._replace(headers={**call.headers, **self.auth_headers()})

    def headers(self, **extra: str) -> dict[str, str]:
        return {**self.base_headers, **extra}  # credentials: in prepare()

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind == PREFIX and not request.target.endswith("/"):
            return "Azure Front Door purges a directory with a wildcard: end the prefix with '/'"
        if request.kind in (URL, PREFIX) and "*" in request.target:
            return "a '*' in a Front Door path is a wildcard; percent-encode it (%2A)"
        return super().refuse(request)

    @staticmethod
    def content_path(request: PurgeRequest) -> str:
        if request.kind == ALL:
            return "/*"
        if request.kind == PREFIX:
            return request.target + "*"
        # Front Door's purge ignores query strings.
        return request.target.split("?", 1)[0]

    def batches(self, requests: Sequence[PurgeRequest]) -> list[Batch]:
        by_domains: dict[tuple[str, ...], list[int]] = {}
        for index, request in enumerate(requests):
            if request.kind == ALL and not request.host:
                domains = self.domains  # everything: on every domain of the endpoint
            else:
                domains = (self.page_host(request),)
            by_domains.setdefault(domains, []).append(index)
        batches: list[Batch] = []
        for domains, indexes in by_domains.items():
            for chunk in chunked(indexes, MOST_PATHS):
                paths = list(dict.fromkeys(self.content_path(requests[i]) for i in chunk))
                payload = {"contentPaths": paths, "domains": list(domains)}
                target = paths[0] if len(paths) == 1 else f"{len(paths)} paths"
                batches.append(Batch(chunk, self.json_call("POST", self.path, payload, target)))
        return batches

    def message(self, reply: Reply) -> str:
        body = json_body(reply)
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return ""
        said = [str(error[k]) for k in ("code", "message") if isinstance(error.get(k), str)]
        return ": ".join(said)

    def operation(self, reply: Reply) -> str:
        """The ``Location`` to poll, relative to ``API_URL`` (``""`` when it points
        elsewhere or will not fit the purge id column)."""
        location = reply.headers.get("Location") or ""
        base = urlsplit(self.api_url)
        parts = urlsplit(location)
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            return ""
        relative = parts.path + (f"?{parts.query}" if parts.query else "")
        if (
            not relative.startswith("/")
            or len(relative) > 200
            or any(c.isspace() for c in relative)
        ):
            return ""
        return relative

    def succeeded(self, reply: Reply, batch: Batch) -> list[PurgeResult] | str:
        operation = self.operation(reply) if reply.status == 202 else ""
        ok = PurgeResult(
            OK,
            http_status=reply.status,
            latency_ms=reply.latency_ms,
            purge_id=operation,
            in_progress=bool(operation),
            check_after=parse_retry_after(reply.headers.get("Retry-After")) or CHECK_AFTER,
        )
        return [ok] * len(batch.indexes)

    def status(self, node: str, purge_ids: Sequence[str]) -> dict[str, Progress]:
        found: dict[str, Progress] = {}
        for operation in purge_ids:
            if not operation.startswith("/"):
                continue
            call = self.prepare(
                Call("GET", self.api_url + operation, self.headers(), "purge status")
            )
            reply = self.transport.exchange(node, call)
            wait = parse_retry_after(reply.headers.get("Retry-After"))
            if reply.status == 200:
                body = json_body(reply)
                failed = isinstance(body, dict) and str(body.get("status", "")).lower() in {
                    "failed",
                    "canceled",
                }
                found[operation] = Progress(not failed, error="the purge failed" if failed else "")
            elif reply.status == 202:
                found[operation] = Progress(False, check_after=wait or CHECK_AFTER)
            else:
                found[operation] = Progress(
                    False, error=self.clean(reply.error or f"HTTP {reply.status}")
                )
        return found
