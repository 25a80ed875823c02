from blog.models import Post
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.cache import cache_control


# Shared caches (nginx) keep the page for 10 minutes; browsers ask again each time.
@cache_control(public=True, max_age=0, s_maxage=600, must_revalidate=True)
def post_detail(request, slug):
    post = get_object_or_404(Post, slug=slug)
    rendered = timezone.now().isoformat(timespec="seconds")
    return HttpResponse(f"<h1>{post.title}</h1><p>{post.body}</p><p>Rendered {rendered}</p>")
