"""``{% load roan_admin %}``: the "Purge history" link on the change form of any object whose model
has purge rules, also in a ``ModelAdmin`` without :class:`roan.admin.PurgeCacheMixin`.

roan's ``admin/change_form_object_tools.html`` adds it after Django's own tools (History,
View on site); it takes effect when ``"roan"`` comes before ``"django.contrib.admin"`` in
``INSTALLED_APPS`` (Django uses the first app's template of a name).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from django import template
from django.contrib.contenttypes.models import ContentType
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _

from roan.admin.common import can_view_log
from roan.admin.log import models_with_rules

logger = logging.getLogger(__name__)

register = template.Library()


@register.simple_tag(takes_context=True)
def roan_purges_link(context: Any) -> str:
    """``<li>`` with a link to the purge log filtered to this object, or ``""``."""
    if "roan_can_purge" in context:
        return ""  # PurgeCacheMixin draws its own tools, this link among them
    obj = context.get("original")
    request = context.get("request")
    if obj is None or getattr(obj, "pk", None) is None or request is None:
        return ""
    try:
        if not can_view_log(request) or obj._meta.label_lower not in models_with_rules():
            return ""
        match = getattr(request, "resolver_match", None)
        namespace = match.namespace if match is not None and match.namespace else "admin"
        log = reverse(f"{namespace}:roan_purgeattempt_changelist")
        content_type = ContentType.objects.get_for_model(obj)
    except NoReverseMatch:
        return ""  # this admin site does not show roan's log
    except Exception:  # never break a change form for a link
        logger.exception("roan: cannot build the purge history link")
        return ""
    key = quote(f"{content_type.app_label}.{content_type.model}:{obj.pk}", safe=".:")
    return format_html(
        '<li><a href="{}?object={}" class="roan-purges-link">{}</a></li>',
        log,
        key,
        _("Purge history"),
    )
