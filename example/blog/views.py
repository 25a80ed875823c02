"""Public pages of the blog, each cached whole by Django's cache framework.

These views must stay cacheable: they never touch ``request.session``, ``request.user``
or the CSRF token, because any of those adds ``Vary: Cookie`` (one cache entry per
visitor) or a ``Set-Cookie`` header (not cached at all).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.cache import cache_control, cache_page

from blog.models import Author, Post, Tag
from roan.tags import cache_tags

View = Callable[..., HttpResponse]


def public_page(view: View) -> View:
    """Cache ``view`` in Django's cache and let caches in front keep it too."""
    # Inside cache_page, so the copies it stores (and answers from) carry their tags.
    view = cache_tags()(view)

    seconds = settings.BLOG_PAGE_SECONDS
    return cache_page(seconds)(cache_control(public=True, max_age=seconds)(view))


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
