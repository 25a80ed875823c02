"""Public pages of the blog, each cached whole by Django's cache framework.

These views must stay cacheable: they never touch ``request.session``, ``request.user``
or the CSRF token, because any of those adds ``Vary: Cookie`` (one cache entry per
visitor) or a ``Set-Cookie`` header (not cached at all).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.http import http_date
from django.views.decorators.cache import cache_control, cache_page

from blog.models import Author, Post, Tag
from roan.tags.collect import cache_tags

View = Callable[..., HttpResponse]


def public_page(view: View) -> View:
    """Cache ``view`` in Django's cache (unless ``BLOG_PAGE_CACHE`` is off) and in shared
    caches in front; never in browsers.

    Shared caches (nginx, Varnish, a CDN) keep the page for ``s-maxage`` seconds: roan
    purges them when the content changes. A browser's cache is private and roan cannot
    purge it, so browsers get ``max-age=0, must-revalidate``: they may store the page
    but ask again every time (a cheap 304 when it has not changed: the ETag comes from
    ConditionalGetMiddleware), and an editor's "View on site" shows the edit at once.

    ``cache_page`` is given the timeout explicitly: without one it would read
    ``max-age`` from the response, and ``max-age=0`` means "do not cache" to Django.
    """
    # Inside cache_page, so the copies it stores (and answers from) carry their tags.
    view = cache_tags()(view)
    seconds = settings.BLOG_PAGE_SECONDS
    headers = cache_control(public=True, max_age=0, s_maxage=seconds, must_revalidate=True)
    view = _expires_now(headers(view))
    # ROAN_EXAMPLE_PAGE_CACHE=0: the caches in front keep the pages, Django does not.
    return cache_page(seconds)(view) if settings.BLOG_PAGE_CACHE else view


def _expires_now(view: View) -> View:
    # cache_page adds "Expires: now + timeout" unless the response has one; HTTP/1.0
    # caches (which ignore Cache-Control) would keep the page that long.
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.headers.setdefault("Expires", http_date())
        return response

    return wrapped


def _posts() -> QuerySet[Post]:
    return Post.objects.select_related("author").prefetch_related("tags")


def _render(request: HttpRequest, template: str, context: dict[str, object]) -> HttpResponse:
    # The footer shows this time: an old time means the page came from the cache.
    return render(request, template, {**context, "rendered_at": timezone.now()})


@public_page
def home(request: HttpRequest) -> HttpResponse:
    return _render(request, "blog/home.html", {"posts": _posts()[:5]})


@public_page
def post_list(request: HttpRequest) -> HttpResponse:
    return _render(request, "blog/post_list.html", {"posts": _posts()})


@public_page
def post_detail(request: HttpRequest, slug: str) -> HttpResponse:
    post = get_object_or_404(_posts(), slug=slug)
    return _render(request, "blog/post_detail.html", {"post": post})


@public_page
def author_detail(request: HttpRequest, username: str) -> HttpResponse:
    author = get_object_or_404(Author, username=username)
    posts = _posts().filter(author=author)
    return _render(request, "blog/author_detail.html", {"author": author, "posts": posts})


@public_page
def tag_detail(request: HttpRequest, slug: str) -> HttpResponse:
    tag = get_object_or_404(Tag, slug=slug)
    posts = _posts().filter(tags=tag)
    return _render(request, "blog/tag_detail.html", {"tag": tag, "posts": posts})
