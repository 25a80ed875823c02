"""A second process for the rule-propagation tests.

For each line on stdin it saves the Post with that slug (capturing instead of sending)
and prints the URLs roan would purge, as JSON, one line each.
"""

from __future__ import annotations

import json
import sys

import django


def main() -> None:
    django.setup()
    from roan.testing import capture_purges
    from tests.testapp.models import Post

    print("ready", flush=True)
    for line in sys.stdin:
        slug = line.strip()
        with capture_purges() as captured:
            Post.objects.get(slug=slug).save()
        print(json.dumps(sorted(captured.urls)), flush=True)


if __name__ == "__main__":
    main()
