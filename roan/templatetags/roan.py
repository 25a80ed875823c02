"""``{% load roan %}``: ``{% cache_tag "blog.post" post %}`` tags the page being rendered.

For what tracking does not see (data from raw SQL, another service, ``values()`` through
relations). Each argument is a tag name (``ROAN_TAG_PREFIX`` is added), a model instance
(its object tag), a model or a queryset (its list tag). It renders nothing, and does
nothing outside a response ``CacheTagMiddleware`` tracks.
"""

from __future__ import annotations

from typing import Any

from django import template

from roan.tags.collect import add_tags

register = template.Library()


@register.simple_tag
def cache_tag(*items: Any) -> str:
    add_tags(*items)
    return ""
