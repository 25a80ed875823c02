"""A roan backend of your own: POST each purged URL to a webhook.

Use it with:
    ROAN_BACKENDS = {"hook": {
        "BACKEND": "mysite.purging.WebhookBackend",
        "ENDPOINT": "https://purger.internal.example/purge",
        "HOSTS": ["www.example.com"],
    }}
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import requests
from django.core.exceptions import ImproperlyConfigured

from roan.backends.base import (
    FAILED,
    GAVE_UP,
    NOT_CACHED,
    OK,
    URL,
    BaseBackend,
    PurgeRequest,
    PurgeResult,
)


class WebhookBackend(BaseBackend):
    capabilities = frozenset({URL})  # what it can purge: url, prefix, tag, all
    batch_size = 1  # requests per purge() call
    options_accepted: ClassVar[frozenset[str]] = frozenset({"ENDPOINT"})

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)  # HOSTS, TIMEOUT, LABEL; refuses unknown options
        endpoint = options.get("ENDPOINT")
        if not isinstance(endpoint, str) or not endpoint.startswith("https://"):
            raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}]['ENDPOINT'] must be https://")
        self.endpoint = endpoint
        self.session = requests.Session()

    def purge(self, node: str, requests_: Sequence[PurgeRequest]) -> list[PurgeResult]:
        results = []
        for request in requests_:
            host = request.host or self.default_host()
            started = time.perf_counter()
            try:
                answer = self.session.post(
                    self.endpoint,
                    json={"url": f"https://{host}{request.target}"},
                    timeout=self.timeout,  # always: (connect, read)
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                # Never raise for the cache's failure: a failed result is retried.
                results.append(PurgeResult(status=FAILED, error=type(exc).__name__))
                continue
            latency = (time.perf_counter() - started) * 1000
            if answer.status_code == 404:
                status, retryable = NOT_CACHED, True
            elif answer.ok:
                status, retryable = OK, True
            elif answer.status_code in (408, 429) or answer.status_code >= 500:
                status, retryable = FAILED, True
            else:  # any other 4xx is configuration: retrying cannot help
                status, retryable = GAVE_UP, False
            results.append(
                PurgeResult(
                    status=status,
                    http_status=answer.status_code,
                    latency_ms=latency,
                    retryable=retryable,
                    error="" if status in (OK, NOT_CACHED) else f"HTTP {answer.status_code}",
                )
            )
        return results

    def close(self) -> None:
        self.session.close()
