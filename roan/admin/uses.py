"""What the configured backends use, so that the admin shows a filter, a column or a field
only where it can hold something: no "CDN invalidations" with no CDN that finishes its
invalidations later, no choice of backend when there is one.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from roan.backends import get_backends
from roan.backends.base import BaseBackend


def configured() -> dict[str, BaseBackend]:
    """The configured backends by alias (none when they cannot be built: the system
    checks say why, and the admin shows what the log holds)."""
    try:
        return dict(get_backends())
    except ImproperlyConfigured:
        return {}


def completes_later() -> bool:
    """Does a configured backend accept purges that finish in the background (CloudFront,
    Azure Front Door, Akamai)? Only such a backend implements ``status()``."""
    return any(type(b).status is not BaseBackend.status for b in configured().values())
