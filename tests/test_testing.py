"""roan.testing.capture_purges, as a user's test suite would use it."""

from __future__ import annotations

import pytest

from roan.models import PurgeAttempt
from roan.testing import capture_purges
from tests.testapp.models import Post

pytestmark = pytest.mark.django_db


def test_saving_a_post_purges_its_page(post_rule, outbox) -> None:
    post = Post.objects.create(title="T", slug="x")
    with capture_purges() as captured:
        post.title = "New"
        post.save()
    assert captured.urls == ["/posts/", "/posts/x/"]
    assert [p.backend for p in captured] == ["default", "default"]
    assert {p.cause.trigger for p in captured} == {"save"}
    # captured, so nothing was recorded or sent
    assert not PurgeAttempt.objects.filter(object_repr="New").exists()
    assert outbox == []


def test_the_decorator_form_captures_too(post_rule, outbox) -> None:
    @capture_purges()
    def edit() -> None:
        Post.objects.create(title="T", slug="y")

    edit()
    assert outbox == []
    assert not PurgeAttempt.objects.exists()


def test_nested_captures_see_their_own_purges(post_rule) -> None:
    with capture_purges() as outer:
        Post.objects.create(title="A", slug="a")
        with capture_purges() as inner:
            Post.objects.create(title="B", slug="b")
    assert inner.urls == ["/posts/", "/posts/b/"]
    assert outer.urls == ["/posts/", "/posts/a/"]
