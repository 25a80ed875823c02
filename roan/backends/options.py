"""The options of a ``ROAN_BACKENDS`` entry that roan's sender reads, not the backend:
``RATE_LIMIT``, ``PAUSED``, ``AFTER``, ``VERIFY`` and ``WARM``. Parsed and validated
here, when a backend is built (and by the system checks); :mod:`roan.outbox.limits`,
:mod:`roan.outbox.layers`, :mod:`roan.outbox.verify` and :mod:`roan.outbox.warming`
apply them. And ``SOFT``, which the backends that can mark stale read
(:func:`soft_option`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

#: Options in ``ROAN_BACKENDS`` entries that roan's sender reads; backends never see them
#: (``AFTER``: see :mod:`roan.outbox.layers`).
SENDER_OPTIONS = frozenset({"RATE_LIMIT", "PAUSED", "AFTER"})


#: The bucket is kept as this many slots of ``BURST / RATE / SLOTS`` seconds each.
SLOTS = 10


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    rate: float  # tokens per second
    burst: float  # tokens the bucket holds

    @property
    def slot_seconds(self) -> float:
        return self.burst / self.rate / SLOTS


def parse_rate_limit(alias: str, value: Any) -> RateLimit | None:
    """The ``RATE_LIMIT`` option of backend ``alias``, validated (``None``: no limit)."""
    if value is None:
        return None
    where = f"ROAN_BACKENDS[{alias!r}]['RATE_LIMIT']"
    if not isinstance(value, Mapping) or set(value) - {"RATE", "BURST"} or "RATE" not in value:
        raise ImproperlyConfigured(
            f'{where} must be a dict like {{"RATE": 50, "BURST": 100}} (BURST optional).'
        )
    try:
        rate = float(value["RATE"])
        burst = float(value.get("BURST", max(1.0, rate)))
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{where}: RATE and BURST must be numbers.") from None
    if not (math.isfinite(rate) and rate > 0):
        raise ImproperlyConfigured(f"{where}: RATE must be more than 0 tokens a second.")
    if not (math.isfinite(burst) and burst >= 1):
        raise ImproperlyConfigured(f"{where}: BURST must be at least 1.")
    return RateLimit(rate, burst)


def soft_option(alias: str, options: Mapping[str, Any], *, default: bool) -> bool:
    """A backend's ``SOFT`` option: mark stale rather than remove, where the cache can."""
    soft = options.get("SOFT", default)
    if not isinstance(soft, bool):
        raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}]['SOFT'] must be True or False.")
    return soft


def validate_options(alias: str, config: Mapping[str, Any]) -> None:
    """Raise ``ImproperlyConfigured`` for a bad ``RATE_LIMIT`` or ``PAUSED`` option."""
    parse_rate_limit(alias, config.get("RATE_LIMIT"))
    if not isinstance(config.get("PAUSED", False), bool):
        raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}]['PAUSED'] must be True or False.")


OPTION_NAMES = frozenset({"BASE_URL", "HEADER", "HIT", "RATE", "TIMEOUT", "METHOD", "SAMPLE"})


DEFAULT_HIT = ("HIT", "STALE", "UPDATING")

#: Probes a second at most, per backend, of the sampled verification a backend without
#: a VERIFY option gets (see :func:`sampled_verify`).
SAMPLED_RATE = 1.0


_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyOptions:
    # scheme://host[:port], no trailing slash; "" fetches from the node the purge went
    # to, with the page's host (one of HOSTS) in the Host header.
    base_url: str
    host: str  # the host name of base_url, lowercase ("" with no base_url)
    header: str | None
    hit: frozenset[str]
    rate: float
    timeout: float
    method: str
    #: The fraction of purges probed.
    sample: float = 1.0
    #: The default of a backend without VERIFY: the draw, the rate and the probe happen
    #: on the probe thread, and purges not probed stay "not verified".
    sampled: bool = False


def sampled_verify(sample: float, header: str) -> VerifyOptions:
    """The verification a probe-able backend with ``HOSTS`` and no ``VERIFY`` option
    gets: ``sample`` of its purges, at most ``SAMPLED_RATE`` probes a second, fetched
    from the node the purge went to, reading ``header`` (or ``Age``)."""
    return VerifyOptions(
        base_url="",
        host="",
        header=header,
        hit=frozenset(DEFAULT_HIT),
        rate=SAMPLED_RATE,
        timeout=2.0,
        method="HEAD",
        sample=sample,
        sampled=True,
    )


def parse_verify(alias: str, config: Mapping[str, Any]) -> VerifyOptions | None:
    """The ``VERIFY`` option of backend ``alias`` as set (``None``: not set, or
    ``False``), validated against its ``HOSTS``. ``True`` is ``{}``: every purge probed,
    from the node it went to. Raises ``ImproperlyConfigured`` with what to fix."""
    value = config.get("VERIFY")
    if value is None or value is False:
        return None
    where = f"ROAN_BACKENDS[{alias!r}]['VERIFY']"
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(
            f'{where} must be True, False or a dict like {{"BASE_URL": "https://..."}}.'
        )
    unknown = set(value) - OPTION_NAMES
    if unknown:
        raise ImproperlyConfigured(f"{where}: unknown option(s) {', '.join(sorted(unknown))}.")
    if "BASE_URL" in value:
        base_url, host = _base_url(where, value["BASE_URL"], config.get("HOSTS", ()))
    elif not config.get("HOSTS"):
        raise ImproperlyConfigured(
            f"{where} needs the backend's HOSTS: the probe only fetches pages of a host "
            "listed there."
        )
    else:
        base_url, host = "", ""
    header = value.get("HEADER", "X-Cache-Status")
    if header is not None and not (isinstance(header, str) and _HEADER_NAME.fullmatch(header)):
        raise ImproperlyConfigured(f"{where}['HEADER'] must be a header name or None.")
    hit = value.get("HIT", DEFAULT_HIT)
    if isinstance(hit, str) or not all(isinstance(h, str) and h.strip() for h in hit):
        raise ImproperlyConfigured(f"{where}['HIT'] must be a list of header values.")
    rate = _number(where, "RATE", value.get("RATE", 5), 1000)
    timeout = _number(where, "TIMEOUT", value.get("TIMEOUT", 2), 30)
    method = value.get("METHOD", "HEAD")
    if method not in ("HEAD", "GET"):
        raise ImproperlyConfigured(f"{where}['METHOD'] must be 'HEAD' or 'GET'.")
    sample = _number(where, "SAMPLE", value.get("SAMPLE", 1), 1)
    return VerifyOptions(
        base_url=base_url,
        host=host,
        header=header,
        hit=frozenset(h.strip().upper() for h in hit),
        rate=rate,
        timeout=timeout,
        method=method,
        sample=sample,
    )


WARM_OPTION_NAMES = frozenset({"BASE_URL", "RATE", "TIMEOUT"})


@dataclasses.dataclass(frozen=True, slots=True)
class WarmOptions:
    base_url: str  # scheme://host[:port], no trailing slash
    host: str  # the host name of base_url, lowercase
    rate: float  # fetches a second at most, per backend
    timeout: float  # seconds for a whole fetch


def parse_warm(alias: str, config: Mapping[str, Any]) -> WarmOptions | None:
    """The ``WARM`` option of backend ``alias`` (``None``: off), validated against its
    ``HOSTS``. ``True`` takes the ``BASE_URL`` of the backend's ``VERIFY``. Raises
    ``ImproperlyConfigured`` with what to fix."""
    value = config.get("WARM")
    if value is None or value is False:
        return None
    where = f"ROAN_BACKENDS[{alias!r}]['WARM']"
    if value is True:
        verify = config.get("VERIFY")
        base = verify.get("BASE_URL") if isinstance(verify, Mapping) else None
        if base is None:
            raise ImproperlyConfigured(
                f'{where}: True needs VERIFY\'s BASE_URL; give a dict like {{"BASE_URL": '
                '"https://..."}} instead.'
            )
        value = {"BASE_URL": base}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(
            f'{where} must be True or a dict like {{"BASE_URL": "https://..."}}.'
        )
    unknown = set(value) - WARM_OPTION_NAMES
    if unknown:
        raise ImproperlyConfigured(f"{where}: unknown option(s) {', '.join(sorted(unknown))}.")
    base_url, host = _base_url(where, value.get("BASE_URL"), config.get("HOSTS", ()))
    return WarmOptions(
        base_url=base_url,
        host=host,
        rate=_number(where, "RATE", value.get("RATE", 2), 100),
        timeout=_number(where, "TIMEOUT", value.get("TIMEOUT", 10), 60),
    )


def _number(where: str, name: str, value: Any, most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImproperlyConfigured(f"{where}[{name!r}] must be a number.")
    if not (math.isfinite(value) and 0 < value <= most):
        raise ImproperlyConfigured(f"{where}[{name!r}] must be more than 0 and at most {most}.")
    return float(value)


def _base_url(where: str, url: Any, hosts: Any) -> tuple[str, str]:
    if not isinstance(url, str):
        raise ImproperlyConfigured(f"{where} needs BASE_URL, the site's public http(s) URL.")
    try:
        parts = urlsplit(url)
        hostname = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{where}['BASE_URL'] is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ImproperlyConfigured(f"{where}['BASE_URL'] must be an http(s) URL.")
    if "@" in parts.netloc or parts.query or parts.fragment or parts.path.strip("/"):
        raise ImproperlyConfigured(
            f"{where}['BASE_URL'] must be scheme://host[:port] only: no user, path or query "
            "(the path comes from each purge)."
        )
    allowed = {str(h).lower() for h in ([hosts] if isinstance(hosts, str) else hosts)}
    if not allowed:
        raise ImproperlyConfigured(
            f"{where} needs the backend's HOSTS: the probe only fetches from a host listed there."
        )
    if hostname not in allowed and f"{hostname}:{port}" not in allowed:
        raise ImproperlyConfigured(
            f"{where}['BASE_URL'] host {hostname!r} is not in the backend's HOSTS "
            f"({', '.join(sorted(allowed))}): the probe only fetches from those."
        )
    return f"{parts.scheme}://{parts.netloc}", hostname


def after_option(alias: str, config: Any) -> tuple[str, ...]:
    value = config.get("AFTER", ()) if isinstance(config, Mapping) else ()
    where = f"ROAN_BACKENDS[{alias!r}]['AFTER']"
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ImproperlyConfigured(
            f"{where} must be a list of backend aliases (purged before this one), not {value!r}."
        )
    if not all(isinstance(item, str) and item for item in value):
        raise ImproperlyConfigured(f"{where} must hold backend aliases (non-empty strings).")
    if alias in value:
        raise ImproperlyConfigured(
            f"{where} names {alias!r} itself; a cache cannot wait for itself."
        )
    return tuple(dict.fromkeys(value))


def layer_order(backends: Mapping[str, Any]) -> dict[str, int]:
    """Each alias's layer (0: purged first), validating every ``AFTER`` option.

    Raises ``ImproperlyConfigured`` for an ``AFTER`` that is not a list of aliases, names
    an alias not in ``backends`` or the backend itself, or closes a cycle.
    """
    after = {alias: after_option(alias, config) for alias, config in backends.items()}
    for alias, inner in after.items():
        unknown = [name for name in inner if name not in after]
        if unknown:
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS[{alias!r}]['AFTER'] names {', '.join(map(repr, unknown))}, "
                f"not in ROAN_BACKENDS (configured: {', '.join(map(repr, after))})."
            )
    depth: dict[str, int] = {}

    def visit(alias: str, path: list[str]) -> int:
        if alias in depth:
            return depth[alias]
        if alias in path:
            cycle = " -> ".join([*path[path.index(alias) :], alias])
            raise ImproperlyConfigured(
                f"ROAN_BACKENDS: the AFTER options form a cycle ({cycle}); no backend in it "
                f"could ever be purged first."
            )
        level = 1 + max((visit(inner, [*path, alias]) for inner in after[alias]), default=-1)
        depth[alias] = level
        return level

    for alias in after:
        visit(alias, [])
    return depth
