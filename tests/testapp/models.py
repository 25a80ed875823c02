from __future__ import annotations

from django.db import models
from django.urls import reverse


class Author(models.Model):
    username = models.CharField(max_length=50, unique=True)
    name = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return self.username


class Tag(models.Model):
    slug = models.SlugField(unique=True)

    def __str__(self) -> str:
        return self.slug


class Post(models.Model):
    title = models.CharField(max_length=200)
    slug = models.CharField(max_length=200, unique=True)
    body = models.TextField(blank=True)
    author = models.ForeignKey(Author, null=True, blank=True, on_delete=models.SET_NULL)
    tags = models.ManyToManyField(Tag, blank=True, related_name="posts")
    views = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("post-detail", args=[self.slug])

    def secret(self) -> str:
        return "do-not-render"


class Comment(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    text = models.TextField()


class Event(models.Model):
    """Content with dates: published at ``publish_at``, off the lists at ``expires_at``."""

    title = models.CharField(max_length=200)
    slug = models.CharField(max_length=200, unique=True)
    publish_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    day = models.DateField(null=True, blank=True)

    def __str__(self) -> str:
        return self.title
