"""Bounded growth (issue 30): ``roan_prune`` keeps the tag index within
``ROAN_TAG_INDEX_MAX_ROWS``, purging what it forgets, so that no forgotten page stays
cached where no tag purge finds it. Through the example nginx config."""

from __future__ import annotations

import datetime
import uuid
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone

from roan.models import PurgeAttempt, TaggedURL
from roan.tags import index as tag_index
from tests.support.caches import Nginx

pytestmark = pytest.mark.django_db(transaction=True)


def status(url: str) -> str:
    return requests.get(url, timeout=5).headers["X-Cache-Status"]


def test_roan_prune_purges_and_forgets_the_oldest_urls_over_the_bound(
    settings: Any, nginx_cache: Nginx
) -> None:
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {
        "nginx": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx_cache.url}/purge",
        }
    }
    run = uuid.uuid4().hex[:8]
    paths = [f"/bound-{run}/{n}/" for n in range(5)]
    now = timezone.now()
    for age, path in enumerate(reversed(paths)):  # paths[0] was rendered longest ago
        status(f"{nginx_cache.url}{path}")
        assert status(f"{nginx_cache.url}{path}") == "HIT"
        TaggedURL.objects.bulk_create(
            TaggedURL(
                tag=tag,
                host="127.0.0.1",
                path=path,
                url_key=tag_index.url_key("127.0.0.1", path),
                expires_at=now + datetime.timedelta(seconds=600 - age),
            )
            for tag in ("testapp.post", f"testapp.post:{age}")
        )
    settings.ROAN_TAG_INDEX_MAX_ROWS = 6  # three URLs of two rows each

    out = StringIO()
    call_command("roan_prune", days=30, stdout=out)

    assert "purged and evicted 2 URL(s) over ROAN_TAG_INDEX_MAX_ROWS (6)" in out.getvalue()
    assert sorted(set(TaggedURL.objects.values_list("path", flat=True))) == paths[2:]
    # The forgotten pages were purged first; the others stay cached.
    assert [status(f"{nginx_cache.url}{path}") for path in paths] == [
        "MISS",
        "MISS",
        "HIT",
        "HIT",
        "HIT",
    ]
    assert set(PurgeAttempt.objects.values_list("target", "status", "trigger")) == {
        (paths[0], "ok", "command"),
        (paths[1], "ok", "command"),
    }
