"""Akamai Fast Purge (CCU v3), signed with EdgeGrid (``pip install 'roan[akamai]'``).

``POST https://{HOST}/ccu/v3/{ACTION}/{url|tag|cpcode}/{NETWORK}`` with
``{"objects": [...]}``: absolute URLs, cache tags (from the ``Edge-Cache-Tag`` header),
or the CP codes of ``CP_CODES`` for "everything". One object type per call and at most
50,000 bytes of body. ``ACTION`` is ``invalidate`` (the default, which Akamai
recommends: stale objects are revalidated, and stale-if-error keeps working) or
``delete``; ``SOFT = True`` / ``False`` says the same (``invalidate`` is Akamai's soft
purge), and the attempt records it.

Akamai answers 201 with a ``purgeId`` and ``estimatedSeconds``: the attempt is ``ok``
with its completion *in progress*, and reported *completed* once that time has passed
(Fast Purge has no status call; :mod:`roan.outbox.completion`). Throttling is a 429 without
``Retry-After``: roan waits ``X-Ratelimit-Seconds-To-Refresh-Limit(-Objects)``, or the
five seconds Akamai's docs advise.

The requests are signed by Akamai's ``edgegrid-python``, whose logger writes the signing
key at DEBUG: roan keeps that logger at INFO or above.
https://techdocs.akamai.com/purge-cache/reference/api
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import requests
from django.core.exceptions import ImproperlyConfigured

from roan.backends._api import APIBackend, Batch, json_body, provider_seconds, seconds_from
from roan.backends._http import Call, Reply
from roan.backends.base import ALL, OK, TAG, URL, Progress, PurgeRequest, PurgeResult
from roan.backends.options import soft_option

try:
    from akamai.edgegrid import EdgeRc
    from akamai.edgegrid.edgegrid import EdgeGridAuthHeaders, eg_timestamp, new_nonce
except ImportError:  # the extra is not installed: the backend says so when built
    EdgeGridAuthHeaders = None

INSTALL = "pip install 'roan[akamai]'"
#: Largest request body Fast Purge takes (413 beyond).
MAX_BODY = 50_000
#: Seconds to wait after a 429 that names no refresh time (Akamai's docs: five).
THROTTLE_WAIT = 5.0
_EDGEGRID_LOGGERS = ("akamai.edgegrid", "akamai.edgegrid.edgegrid", "akamai.edgegrid.edgerc")


def _quiet_edgegrid() -> None:
    """edgegrid logs the signing key and the signed header at DEBUG: never let it."""
    for name in _EDGEGRID_LOGGERS:
        log = logging.getLogger(name)
        if log.level < logging.INFO:
            log.setLevel(logging.INFO)


class AkamaiBackend(APIBackend):
    """Invalidate (or delete) URLs, cache tags or CP codes with Akamai Fast Purge."""

    provider = "Akamai"
    capabilities = frozenset({URL, TAG})  # and ALL with CP_CODES
    batch_size = 500
    options_accepted: ClassVar[frozenset[str]] = APIBackend.options_accepted | {
        "HOST",
        "CLIENT_TOKEN",
        "CLIENT_SECRET",
        "ACCESS_TOKEN",
        "EDGERC",
        "SECTION",
        "NETWORK",
        "ACTION",
        "CP_CODES",
        "SOFT",
    }
    # The URL objects bucket: 10,000 saved up, 12,000 a minute, per account. Tags (500 a
    # minute) and CP codes (30) have smaller ones; their 429 makes them wait.
    # https://techdocs.akamai.com/purge-cache/reference/rate-limiting
    default_rate_limit: ClassVar[Mapping[str, float] | None] = {"RATE": 200, "BURST": 10000}
    # Edge-Cache-Tag: comma-separated; 128 characters a tag. The header's total limit is
    # not in the research notes: roan keeps it under 8 KiB, as most servers' header lines.
    tag_header: ClassVar[str | None] = "Edge-Cache-Tag"
    tag_separator: ClassVar[str] = ","
    tag_header_limit: ClassVar[int] = 8192
    tag_max_length: ClassVar[int] = 128

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        where = f"ROAN_BACKENDS[{alias!r}]"
        if EdgeGridAuthHeaders is None:
            raise ImproperlyConfigured(f"{where}: AkamaiBackend needs edgegrid-python: {INSTALL}.")
        options = dict(options)
        credentials = self._credentials(where, options)
        host = credentials.pop("HOST")
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", host):
            raise ImproperlyConfigured(
                f"{where}['HOST'] is required: the API host of the client, such as "
                "'akab-xxxx.purge.akamaiapis.net'."
            )
        options.setdefault("API_URL", f"https://{host}")
        super().__init__(alias, options)
        token = self.secret_option(credentials, "CLIENT_TOKEN")
        secret = self.secret_option(credentials, "CLIENT_SECRET")
        access = self.secret_option(credentials, "ACCESS_TOKEN")
        self._signer = EdgeGridAuthHeaders(token, secret, access, max_body=MAX_BODY * 2)
        _quiet_edgegrid()
        network = options.get("NETWORK", "production")
        if network not in {"production", "staging"}:
            raise ImproperlyConfigured(f"{where}['NETWORK'] must be 'production' or 'staging'.")
        action = options.get("ACTION", "invalidate")
        if action not in {"invalidate", "delete"}:
            raise ImproperlyConfigured(f"{where}['ACTION'] must be 'invalidate' or 'delete'.")
        if "SOFT" in options:
            # SOFT, the option every backend that can mark stale shares: invalidate.
            soft = soft_option(alias, options, default=True)
            if "ACTION" in options and soft != (action == "invalidate"):
                raise ImproperlyConfigured(
                    f"{where}: SOFT={soft} contradicts ACTION={action!r}; give one of them."
                )
            action = "invalidate" if soft else "delete"
        self.network, self.action = str(network), str(action)
        codes = options.get("CP_CODES", [])
        if (
            isinstance(codes, int)
            or not isinstance(codes, list | tuple)
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in codes)
        ):
            raise ImproperlyConfigured(f"{where}['CP_CODES'] must be a list of CP code numbers.")
        self.cp_codes = list(codes)
        self.capabilities = frozenset({URL, TAG, ALL} if codes else {URL, TAG})

    @staticmethod
    def _credentials(where: str, options: dict[str, Any]) -> dict[str, Any]:
        """HOST and the three tokens, from the options or from an .edgerc section."""
        names = ("HOST", "CLIENT_TOKEN", "CLIENT_SECRET", "ACCESS_TOKEN")
        if "EDGERC" in options:
            if any(name in options for name in names[1:]):
                raise ImproperlyConfigured(f"{where}: give EDGERC or the tokens, not both.")
            path = os.path.expanduser(str(options["EDGERC"]))
            section = str(options.get("SECTION", "default"))
            if not os.path.isfile(path):
                raise ImproperlyConfigured(f"{where}['EDGERC']: no file at {path!r}.")
            rc = EdgeRc(path)
            if not rc.has_section(section):
                raise ImproperlyConfigured(f"{where}['SECTION']: {path!r} has no [{section}].")
            found = {name: rc.get(section, name.lower()) for name in names}
            if "HOST" in options:
                found["HOST"] = options["HOST"]
        else:
            if "SECTION" in options:
                raise ImproperlyConfigured(f"{where}['SECTION'] goes with EDGERC.")
            found = {name: options.get(name) for name in names}
        # .edgerc files write the host without a scheme; be kind to one with it.
        found["HOST"] = str(found["HOST"] or "").removeprefix("https://").rstrip("/")
        return found

    def auth_headers(self) -> dict[str, str]:
        return {}  # the EdgeGrid signature is added by prepare(), per call

    def prepare(self, call: Call) -> Call:
        """Sign ``call`` with EdgeGrid, right before it is sent (the signature holds a
        timestamp)."""
        prepared = requests.Request(
            call.method, call.url, headers=dict(call.headers), data=call.body
        ).prepare()
        header = self._signer.make_auth_header(prepared, eg_timestamp(), new_nonce())
        return call._replace(headers={**call.headers, "Authorization": header})

    def refuse(self, request: PurgeRequest) -> str:
        if request.kind == ALL and request.host:
            return "Akamai purges everything by CP code, not by host"
        if request.kind == TAG and ("," in request.target or len(request.target) > 128):
            return "an Akamai cache tag has at most 128 characters and no comma"
        return super().refuse(request)

    def batches(self, requests: Sequence[PurgeRequest]) -> list[Batch]:
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            kind = {URL: "url", TAG: "tag", ALL: "cpcode"}[request.kind]
            groups.setdefault(kind, []).append(index)
        batches: list[Batch] = []
        for kind, indexes in groups.items():
            path = f"/ccu/v3/{self.action}/{kind}/{self.network}"
            if kind == "cpcode":
                # Every "everything" of the batch is answered by one purge of the CP codes.
                call = self.json_call("POST", path, {"objects": self.cp_codes}, "CP codes")
                batches.append(Batch(tuple(indexes), call))
                continue
            for chunk, objects in self._fit(requests, indexes):
                target = objects[0] if len(objects) == 1 else f"{len(objects)} {kind}s"
                call = self.json_call("POST", path, {"objects": objects}, target)
                batches.append(Batch(chunk, call))
        return batches

    def _fit(
        self, requests: Sequence[PurgeRequest], indexes: list[int]
    ) -> list[tuple[tuple[int, ...], list[str]]]:
        """Runs of requests whose body stays within ``MAX_BODY`` bytes."""
        runs: list[tuple[list[int], list[str]]] = [([], [])]
        size = len('{"objects":[]}')
        for index in indexes:
            request = requests[index]
            value = self.absolute(request) if request.kind == URL else request.target
            cost = len(json.dumps(value).encode()) + 1
            if runs[-1][0] and size + cost > MAX_BODY:
                runs.append(([], []))
                size = len('{"objects":[]}')
            runs[-1][0].append(index)
            if value not in runs[-1][1]:
                runs[-1][1].append(value)
                size += cost
        return [(tuple(chunk), objects) for chunk, objects in runs if chunk]

    def message(self, reply: Reply) -> str:
        body = json_body(reply)
        if not isinstance(body, dict):
            return ""
        said = [str(body[k]) for k in ("title", "detail") if isinstance(body.get(k), str)]
        return ": ".join(dict.fromkeys(said))

    def succeeded(self, reply: Reply, batch: Batch) -> list[PurgeResult] | str:
        body = json_body(reply)
        if not isinstance(body, dict) or not isinstance(body.get("purgeId"), str):
            return "the answer has no purgeId"
        # Bounded: a JSON integer may be 10**400 (float() of it raises OverflowError).
        wait = provider_seconds(body.get("estimatedSeconds"))
        ok = PurgeResult(
            OK,
            http_status=reply.status,
            latency_ms=reply.latency_ms,
            purge_id=self.clean(body["purgeId"])[:200],
            in_progress=True,
            check_after=wait,
            soft=self.action == "invalidate",
        )
        return [ok] * len(batch.indexes)

    def throttle_wait(self, reply: Reply) -> float | None:
        """The longer of the two refresh times Akamai sends, else five seconds."""
        waits = [
            seconds_from(reply.headers.get(name))
            for name in (
                "X-Ratelimit-Seconds-To-Refresh-Limit",
                "X-Ratelimit-Seconds-To-Refresh-Limit-Objects",
                "Retry-After",
            )
        ]
        known = [w for w in waits if w is not None]
        if known:
            return max(known)
        return THROTTLE_WAIT if reply.status == 429 else None

    def status(self, node: str, purge_ids: Sequence[str]) -> dict[str, Progress]:
        # Fast Purge has no status call: it is checked once estimatedSeconds have
        # passed, and by then Akamai says it is done.
        return {purge_id: Progress(True) for purge_id in purge_ids}
