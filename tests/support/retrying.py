"""For the retry tests: a nginx backend pointed at the in-process fake cache, and a stand-in
for cron's ``roan_dispatch`` run once the backoff has passed."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.utils import timezone

from roan.models import PurgeAttempt


@pytest.fixture
def cache(settings, fake_cache, post_rule):
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{fake_cache.url}/purge",
            "TIMEOUT": (1.0, 2.0),
        }
    }
    return fake_cache


def dispatch_now() -> None:
    """What cron's roan_dispatch does once the backoff has passed."""
    PurgeAttempt.objects.exclude(next_attempt_at=None).update(next_attempt_at=timezone.now())
    call_command("roan_dispatch", verbosity=0)
