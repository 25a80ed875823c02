"""Views run through ``CacheTagMiddleware`` for roan's tag tests (``ROOT_URLCONF``).

Each view is wrapped in the middleware itself, so that Django's live server (whose
middleware chain is built once per test session) tags them like a site that lists the
middleware in ``MIDDLEWARE``. The admin is there for the tests that time an editor's save.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import path
from django.views.decorators.cache import cache_control, cache_page

from roan.middleware import CacheTagMiddleware
from roan.tags.collect import add_tags, cache_tags
from tests.testapp.models import Post

View = Callable[..., HttpResponse]


def tagged(view: View) -> View:
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return CacheTagMiddleware(lambda r: view(r, *args, **kwargs))(request)

    return wrapper


public = cache_control(public=True, max_age=300)


@public
def front(request: HttpRequest, pk: int) -> HttpResponse:
    """One post in full (get), and the titles of all posts (a list)."""
    post = Post.objects.get(pk=pk)
    titles = ", ".join(p.title for p in Post.objects.order_by("pk"))
    return HttpResponse(f"{post.title}\n{titles}\n", content_type="text/plain")


@public
def one(request: HttpRequest, pk: int) -> HttpResponse:
    post = Post.objects.select_related("author").get(pk=pk)
    author = post.author.username if post.author else ""
    return HttpResponse(f"{post.title} by {author}\n", content_type="text/plain")


TEMPLATE = engines["django"].from_string(
    "{% load roan %}{% cache_tag 'sidebar' post %}{% for p in posts %}{{ p.title }} {% endfor %}"
)


@public
def lazy(request: HttpRequest, pk: int) -> TemplateResponse:
    """The view builds a queryset; only the template reads it."""
    return TemplateResponse(
        request, TEMPLATE, {"posts": Post.objects.filter(pk=pk), "post": Post(pk=999)}
    )


@public
def by_hand(request: HttpRequest) -> HttpResponse:
    add_tags("weather", Post)
    return HttpResponse("sunny\n", content_type="text/plain")


@public
def with_cookie(request: HttpRequest, pk: int) -> HttpResponse:
    response = HttpResponse(Post.objects.get(pk=pk).title)
    response.set_cookie("seen", "1")
    return response


@cache_control(private=True, max_age=300)
def private(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(Post.objects.get(pk=pk).title)


def either(request: HttpRequest, pk: int) -> HttpResponse:
    response = HttpResponse(Post.objects.get(pk=pk).title)
    response["Cache-Control"] = "public, max-age=300"
    return response


@public
def many(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(len(list(Post.objects.all()))))


@public
def missing(request: HttpRequest, slug: str) -> HttpResponse:
    if not Post.objects.filter(slug=slug).exists():
        return HttpResponse("no such post", status=404)
    return HttpResponse("found")


@cache_page(300)
@public
@cache_tags()
def page_cached(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(Post.objects.get(pk=pk).title)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("front/<int:pk>/", tagged(front)),
    path("one/<int:pk>/", tagged(one)),
    path("lazy/<int:pk>/", tagged(lazy)),
    path("by-hand/", tagged(by_hand)),
    path("cookie/<int:pk>/", tagged(with_cookie)),
    path("private/<int:pk>/", tagged(private)),
    path("either/<int:pk>/", tagged(either)),
    path("many/", tagged(many)),
    path("missing/<slug:slug>/", tagged(missing)),
    path("page-cached/<int:pk>/", tagged(page_cached)),
]
