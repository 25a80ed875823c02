from django.db import models


class Post(models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    body = models.TextField(blank=True)

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return f"/posts/{self.slug}/"
