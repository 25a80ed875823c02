from __future__ import annotations

from django.apps import AppConfig


class BlogConfig(AppConfig):
    name = "blog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A rule in roan 0.1's style, next to the rules the demo keeps in the database
        # (seed_demo): code rules and admin rules fire together.
        from blog.models import Post
        from roan import purge

        purge("/").on_save(Post)
