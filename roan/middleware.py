"""roan's middleware (both optional).

``PurgeUserMiddleware`` names the signed-in user on the purges a request causes. Add it
after ``AuthenticationMiddleware``. It never loads the user itself: only a user the
request has already looked at (the admin always does) is named, so public pages do not
start varying on the session cookie. After a save or delete in any ``ModelAdmin`` (one
without :class:`roan.admin.PurgeCacheMixin` too, which says it itself), it tells the
editor what roan purged, with a link to those attempts, when the editor may read the
purge log (after ``MessageMiddleware``, so that the message can be added).

``CacheTagMiddleware`` tags cacheable responses with the objects and lists they show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.template.response import SimpleTemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.functional import empty
from django.utils.translation import gettext as _

from roan.context import WrittenIds, acting_user_lookup, collect_written
from roan.models import PurgeAttempt
from roan.outbox import after_response
from roan.outbox.outcome import outcome, outcome_message
from roan.tags import collect as tags

logger = logging.getLogger(__name__)


class PurgeUserMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        def user_id() -> int | None:
            user: Any = getattr(request, "user", None)
            if user is None or getattr(user, "_wrapped", None) is empty:
                return None
            return user.pk if user.is_authenticated else None

        if request.method != "POST":
            with acting_user_lookup(user_id):
                return self.get_response(request)
        # A PurgeCacheMixin view collects its own (inside, so this list stays empty).
        with acting_user_lookup(user_id), collect_written() as ids:
            response = self.get_response(request)
        if ids:
            tell_admin_change(request, response, ids)
        return response


#: The admin's views after which the editor hears what roan purged.
_CHANGE_VIEWS = ("_add", "_change", "_delete")


def tell_admin_change(request: HttpRequest, response: HttpResponse, ids: WrittenIds) -> None:
    """Add "Cache purges for this change: ..." after an admin save or delete. Never raises:
    the save is done, and a message is not worth an error page."""
    try:
        match = request.resolver_match
        model_admin = getattr(getattr(match, "func", None), "model_admin", None)
        if (
            match is None
            or model_admin is None
            or not (match.url_name or "").endswith(_CHANGE_VIEWS)
            or response.status_code not in (301, 302, 303)
        ):
            return
        user: Any = getattr(request, "user", None)
        if user is None or not user.has_perm(f"{PurgeAttempt._meta.app_label}.view_purgeattempt"):
            return  # what the rules sent is the log's, and this user may not read it
        try:
            log_url: str | None = reverse(f"{match.namespace}:roan_purgeattempt_changelist")
        except NoReverseMatch:
            log_url = None
        text, level = outcome_message(
            _("Cache purges for this change:"),
            outcome(ids, ids.recorded),
            log_url=log_url,
            # A tag's pages past ROAN_MAX_INLINE_TAG_URLS go out after this response.
            queued=after_response.sends_queued(),
        )
        messages.add_message(request, level, text, fail_silently=True)
    except Exception:
        logger.exception("roan: cannot tell the editor what the change purged")


class CacheTagMiddleware:
    """Tag cacheable responses with what they were built from (see ``roan.tags.collect``).

    For GET and HEAD, the view runs (and its template renders) under
    ``roan.tags.collect.tracking()``; a response shared caches may keep
    (``roan.tags.collect.is_cacheable``)
    gets the tag header of every configured backend that reads one (Varnish ``xkey``),
    its tags go to ``roan.tags.index.remember`` for caches that cannot purge by tag, and
    ``roan.outbox.render_guard`` makes it uncacheable when a change to what it shows committed
    while it rendered (see ``roan.tags.collect.settle``).

    Put it first in ``MIDDLEWARE`` (or right after ``SecurityMiddleware``): it must see
    the ``Set-Cookie`` and ``Cache-Control`` headers the middleware below it adds.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        tags.install()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        with tags.tracking() as collector:
            response = self.get_response(request)
            if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
                # Rendering reads the querysets the view only built: keep it inside.
                response.render()
        if tags.is_cacheable(request, response):
            tags.settle(request, response, collector)
        return response
