from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.cache import cache_control

from tests.testapp.models import Post


@cache_control(public=True, max_age=300)
def post_list(request: HttpRequest) -> HttpResponse:
    titles = ", ".join(p.title for p in Post.objects.order_by("pk"))
    return HttpResponse(f"posts: {titles}\n", content_type="text/plain")


@cache_control(public=True, max_age=300)
def post_detail(request: HttpRequest, slug: str) -> HttpResponse:
    post = get_object_or_404(Post, slug=slug)
    return HttpResponse(f"{post.title}\n{post.body}\n", content_type="text/plain")
