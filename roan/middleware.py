"""Name the signed-in user on the purges a request causes (optional).

Add ``"roan.middleware.PurgeUserMiddleware"`` after ``AuthenticationMiddleware``. It
never loads the user itself: only a user the request has already looked at (the admin
always does) is named, so public pages do not start varying on the session cookie.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty

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
