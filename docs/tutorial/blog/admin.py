from blog.models import Post
from django.contrib import admin

from roan.admin import PurgeCacheMixin


@admin.register(Post)
class PostAdmin(PurgeCacheMixin, admin.ModelAdmin):
    list_display = ["title", "slug"]
