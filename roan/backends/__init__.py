"""Build the backends named in ``ROAN_BACKENDS`` (like ``CACHES``), once per process."""

from __future__ import annotations

import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from roan.backends.base import BaseBackend
from roan.backends.options import (
    SENDER_OPTIONS,
    layer_order,
    parse_verify,
    parse_warm,
    validate_options,
)
from roan.conf import roan_settings

_lock = threading.Lock()
_backends: dict[str, BaseBackend] | None = None


def build_backend(alias: str, config: dict[str, Any]) -> BaseBackend:
    """Build one backend from its config dict, validating it."""
    if not isinstance(config, dict) or "BACKEND" not in config:
        raise ImproperlyConfigured(f"ROAN_BACKENDS[{alias!r}] needs a 'BACKEND' dotted path.")
    try:
        cls = import_string(config["BACKEND"])
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"ROAN_BACKENDS[{alias!r}]['BACKEND']: cannot import {config['BACKEND']!r} ({exc})."
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseBackend)):
        raise ImproperlyConfigured(
            f"ROAN_BACKENDS[{alias!r}]['BACKEND']: {config['BACKEND']!r} is not a roan backend."
        )
    validate_options(alias, config)
    verify = parse_verify(alias, config)
    parse_warm(alias, config)
    # RATE_LIMIT, PAUSED, VERIFY and WARM are roan's (the sender applies them), so no
    # backend sees them.
    options = {
        k: v
        for k, v in config.items()
        if k not in {"BACKEND", "VERIFY", "WARM"} and k not in SENDER_OPTIONS
    }
    backend = cls(alias, options)
    node = backend.nodes[0] if backend.nodes else ""
    if verify is not None and not verify.base_url and backend.probe_origin(node) is None:
        backend.close()
        raise ImproperlyConfigured(
            f"ROAN_BACKENDS[{alias!r}]['VERIFY'] needs a BASE_URL: this backend's purges go "
            "to a server that does not serve the pages (set BASE_URL to the site's URL)."
        )
    return backend


def get_backends() -> dict[str, BaseBackend]:
    """Every configured backend by alias, built on first use."""
    global _backends
    backends = _backends
    if backends is None:
        with _lock:
            if _backends is None:
                # An AFTER naming an unknown alias or closing a cycle stops them all:
                # sending the outer caches in no order is what AFTER exists to prevent.
                layer_order(roan_settings.BACKENDS)
                _backends = {
                    alias: build_backend(alias, config)
                    for alias, config in roan_settings.BACKENDS.items()
                }
            backends = _backends
    return backends


def get_backend(alias: str) -> BaseBackend:
    try:
        return get_backends()[alias]
    except KeyError:
        raise ImproperlyConfigured(f"No backend {alias!r} in ROAN_BACKENDS.") from None


def reset() -> None:
    """Forget the built backends; the next use builds them from settings again."""
    global _backends
    with _lock:
        old, _backends = _backends, None
    for backend in (old or {}).values():
        backend.close()


@receiver(setting_changed, dispatch_uid="roan.backends.reset")
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {"ROAN_BACKENDS", "ROAN_PURGE_URL", "CACHES"}:
        reset()
