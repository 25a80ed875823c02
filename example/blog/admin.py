from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from blog.models import Author, Post, Tag
from roan.admin import PurgeCacheMixin


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    list_display = ["name", "username", "post_count"]
    search_fields = ["name", "username"]
    prepopulated_fields = {"username": ["name"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Author]:
        return super().get_queryset(request).annotate(n_posts=Count("posts"))

    @admin.display(description="posts", ordering="n_posts")
    def post_count(self, author: Author) -> int:
        return author.n_posts  # type: ignore[attr-defined]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Post)
class PostAdmin(PurgeCacheMixin, admin.ModelAdmin):
    # roan: a "Purge cache for selected" action and a "Purge cache" button on the form.
    list_display = ["title", "author", "published_at", "tag_list"]
    list_filter = ["author", "tags", "published_at"]
    list_select_related = ["author"]
    search_fields = ["title", "slug", "body"]
    prepopulated_fields = {"slug": ["title"]}
    date_hierarchy = "published_at"
    filter_horizontal = ["tags"]
    autocomplete_fields = ["author"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Post]:
        return super().get_queryset(request).prefetch_related("tags")

    @admin.display(description="tags")
    def tag_list(self, post: Post) -> str:
        return ", ".join(tag.name for tag in post.tags.all())
