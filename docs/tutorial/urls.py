from blog.views import post_detail
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("posts/<slug:slug>/", post_detail, name="post-detail"),
]
