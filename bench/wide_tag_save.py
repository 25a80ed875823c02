"""An editor's save when the model's list tag is on many pages, behind nginx (issue 30).

    .venv/bin/python bench/wide_tag_save.py [--pages 1000 10000 100000] [--saves 5]
                                            [--database-url URL]

The example blog with its tag index filled with ``--pages`` URLs that carry the ``Post``
list tag (as the listings, archives and tagged pages of a busy site do), and a real nginx
on loopback (the test kit's, ``roan.testing.start_nginx``) as the only backend. Each save
of one post runs between Django's ``request_started`` and ``request_finished`` signals,
as in a view: the time to the end of ``save()`` is what the editor waits for (what roan
sends after the response is not counted), and the attempt rows written by then are
counted. Prints the median of ``--saves`` saves per size, and the rows written inside
the request. SQLite by default (a scratch file); PostgreSQL with ``--database-url``.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from _common import setup_example


def fill(pages: int, tag: str) -> None:
    from django.utils import timezone

    from roan.models import TaggedURL
    from roan.tags import index as tag_index

    TaggedURL.objects.all().delete()
    expires = timezone.now() + datetime.timedelta(hours=1)
    rows = (
        TaggedURL(
            tag=tag,
            host="www.example.com",
            path=f"/archive/{n}/",
            url_key=tag_index.url_key("www.example.com", f"/archive/{n}/"),
            page_key=tag_index.url_key("www.example.com", f"/archive/{n}/"),
            expires_at=expires,
        )
        for n in range(pages)
    )
    TaggedURL.objects.bulk_create(rows, batch_size=5000)


def saves(count: int) -> tuple[float, int]:
    """Median ms an editor's request waits for a save, and rows written by then."""
    from blog.models import Post
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from roan.models import PurgeAttempt

    post = Post.objects.order_by("pk").first()
    assert post is not None
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    times, rows = [], []
    try:
        for n in range(count):
            PurgeAttempt.objects.all().delete()
            request_started.send(sender=None)
            start = time.perf_counter()
            post.title = f"title {n} {uuid.uuid4().hex[:6]}"
            post.save()
            times.append((time.perf_counter() - start) * 1000)
            rows.append(PurgeAttempt.objects.count())
            request_finished.send(sender=None)  # what waits for the response goes now
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return statistics.median(times), max(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        setup_example(str(Path(scratch) / "db.sqlite3"), args.database_url)
        from blog.models import Author, Post
        from django.core.management import call_command
        from django.test.utils import override_settings

        import roan
        from roan.tags.names import model_tag
        from roan.testing import start_nginx

        call_command("migrate", verbosity=0)
        with roan.suppress_purges():
            author = Author.objects.create(username="bench", name="Bench")
            Post.objects.create(title="bench", slug="bench", author=author)
        nginx = start_nginx(9)  # the origin is never asked: only purges are sent
        try:
            backends = {
                "nginx": {
                    "BACKEND": "roan.backends.nginx.NginxBackend",
                    "LOCATION": f"{nginx.url}/purge",
                    "HOSTS": ["www.example.com"],
                }
            }
            with override_settings(ROAN_BACKENDS=backends, ROAN_TAGS=True, ROAN_VERIFY_SAMPLE=0):
                print("pages carrying the tag   request ms (median)   attempt rows in the request")
                for pages in args.pages:
                    fill(pages, model_tag(Post))
                    ms, rows = saves(args.saves)
                    print(f"{pages:>22,}   {ms:>19.1f}   {rows:>28,}")
        finally:
            nginx.close()


if __name__ == "__main__":
    main()
