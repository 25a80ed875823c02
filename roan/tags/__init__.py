"""Cache tags: what a page shows, carried in its response header and in the URL<->tag
index, and purged when a save touches it.

- :mod:`roan.tags.names`: object tags (``blog.post:42``) and list tags (``blog.post``);
- :mod:`roan.tags.collect`: collecting tags while a response renders, and its header;
- :mod:`roan.tags.index`: the URL<->tag index for caches that cannot purge by tag;
- :mod:`roan.tags.purges`: a save's tags as purges, per backend;
- :mod:`roan.tags.bulk_writes`: the ORM hooks for writes that send no signals.

Public: :func:`add_tags` and :func:`cache_tags` (imported on first use, so that importing
a submodule never loads the models).
"""

from __future__ import annotations

from typing import Any

__all__ = ["add_tags", "cache_tags"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from roan.tags import collect

        return getattr(collect, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
