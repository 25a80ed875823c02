from django.contrib import admin

from roan.admin import PurgeCacheMixin
from tests.testapp.models import Author, Post, Tag

admin.site.register(Author, search_fields=["username"])
admin.site.register(Tag)


@admin.register(Post)
class PostAdmin(PurgeCacheMixin, admin.ModelAdmin):
    search_fields = ["title", "slug"]
