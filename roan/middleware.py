"""roan's middleware (both optional).

``PurgeUserMiddleware`` names the signed-in user on the purges a request causes. Add it
after ``AuthenticationMiddleware``. It never loads the user itself: only a user the
request has already looked at (the admin always does) is named, so public pages do not
start varying on the session cookie.

``CacheTagMiddleware`` tags cacheable responses with the objects and lists they show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.response import SimpleTemplateResponse
from django.utils.functional import empty

from roan import tags
from roan.pipeline import acting_user_lookup


class PurgeUserMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        def user_id() -> int | None:
            user: Any = getattr(request, "user", None)
            if user is None or getattr(user, "_wrapped", None) is empty:
                return None
            return user.pk if user.is_authenticated else None

        with acting_user_lookup(user_id):
            return self.get_response(request)


class CacheTagMiddleware:
    """Tag cacheable responses with what they were built from (see ``roan.tags``).

    For GET and HEAD, the view runs (and its template renders) under
    ``roan.tags.tracking()``; a response shared caches may keep (``roan.tags.is_cacheable``)
    gets the tag header of every configured backend that reads one (Varnish ``xkey``),
    its tags go to ``roan.tag_index.remember`` for caches that cannot purge by tag, and
    ``roan.render_guard`` makes it uncacheable when a change to what it shows committed
    while it rendered (see ``roan.tags.settle``).

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
