"""The example blog: authors write posts, posts carry tags."""

from __future__ import annotations

from django.db import models
from django.urls import reverse
from django.utils import timezone


class Author(models.Model):
    username = models.SlugField("username", max_length=50, unique=True)
    name = models.CharField("name", max_length=100)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name or self.username

    def get_absolute_url(self) -> str:
        return reverse("blog:author", args=[self.username])


class Tag(models.Model):
    slug = models.SlugField("slug", max_length=50, unique=True)
    name = models.CharField("name", max_length=50)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("blog:tag", args=[self.slug])


class Post(models.Model):
    title = models.CharField("title", max_length=200)
    slug = models.SlugField("slug", max_length=200, unique=True)
    body = models.TextField("body", help_text="Plain text; blank lines separate paragraphs.")
    author = models.ForeignKey(
        Author, on_delete=models.PROTECT, related_name="posts", verbose_name="author"
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="posts", verbose_name="tags")
    published_at = models.DateTimeField("published", default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-published_at", "-id"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("blog:post", args=[self.slug])
