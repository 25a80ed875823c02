from django.contrib import admin
from django.urls import path

from tests.testapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("posts/", views.post_list, name="post-list"),
    path("posts", views.post_list),  # roan 0.1's README purged "/posts"
    path("posts/<slug:slug>/", views.post_detail, name="post-detail"),
]
