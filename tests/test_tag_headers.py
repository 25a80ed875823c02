"""Tag headers that fit a stock proxy (issue 30): a page that shows hundreds of objects
must not make nginx (default ``proxy_buffer_size``, 4 KiB) answer 502 for everyone.

nginx runs example/deploy/nginx.conf in front of Django's live server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from roan.backends import build_backend
from roan.tags.collect import header_value
from tests.support.caches import Nginx, start_nginx
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

CLOUDFLARE = {
    "BACKEND": "roan.backends.cloudflare.CloudflareBackend",
    "ZONE_ID": "0" * 32,
    "API_TOKEN": "not-used-here",
    "HOSTS": ["127.0.0.1"],
}


@pytest.fixture(scope="module")
def nginx_site(live_server: Any) -> Iterator[Nginx]:
    node = start_nginx(live_server.thread.port)
    yield node
    node.close()


def test_a_page_showing_420_objects_passes_a_stock_nginx(settings: Any, nginx_site: Nginx) -> None:
    settings.ROOT_URLCONF = "tests.support.tagged_site"
    settings.ROAN_TAGS = True
    settings.ROAN_BACKENDS = {"cdn": CLOUDFLARE}  # Cache-Tag, up to 16 KiB at Cloudflare
    run = uuid.uuid4().hex[:8]
    Post.objects.bulk_create(Post(title=f"c{n}", slug=f"{run}-{n}") for n in range(420))

    response = requests.get(f"{nginx_site.url}/many/?{run}", timeout=10)

    assert response.status_code == 200
    assert "Cache-Tag" not in response.headers  # for caches only (proxy_hide_header)
    # What nginx read from Django:
    direct = requests.get(f"http://127.0.0.1:{nginx_site.origin_port}/many/?{run}", timeout=10)
    assert len(direct.headers["Cache-Tag"]) <= 2048
    assert direct.headers["Cache-Tag"] == "testapp.post"  # collapsed to the list tag


def test_the_limit_is_a_setting_and_a_backend_option_within_the_caches_own(
    settings: Any,
) -> None:
    tags = [f"testapp.post:{n}" for n in range(300)]  # about 5 KB
    cdn = build_backend("cdn", CLOUDFLARE)
    assert cdn.header_limit() == 2048
    assert header_value(tags, cdn) == "testapp.post"
    settings.ROAN_TAG_HEADER_LIMIT = 8000
    assert header_value(tags, cdn) == ",".join(sorted(tags))
    raised = build_backend("cdn", {**CLOUDFLARE, "TAG_HEADER_LIMIT": 6000})
    settings.ROAN_TAG_HEADER_LIMIT = 2048
    assert raised.header_limit() == 6000
    with pytest.raises(ImproperlyConfigured, match="TAG_HEADER_LIMIT"):
        build_backend("cdn", {**CLOUDFLARE, "TAG_HEADER_LIMIT": 10**6})
