"""The rule form's list of placeholders in a real browser (Chromium): under the URL
templates, filled in when a model is chosen on a new rule. Screenshots go to
``screenshots/`` for a person to look at."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType

from roan.models import PurgeRule
from tests.support.browser import Admin
from tests.testapp.models import Author, Tag

pytestmark = pytest.mark.django_db(transaction=True)


def test_choosing_a_model_on_a_new_rule_lists_its_placeholders_under_the_templates(
    admin_page: Admin,
) -> None:
    page = admin_page.page
    admin_page.open("/admin/roan/purgerule/add/")
    box = page.locator(".form-row.field-templates #roan-placeholders")
    assert "Choose a model" in box.inner_text()

    author = ContentType.objects.get_for_model(Author)
    page.select_option("#id_content_type", str(author.pk))
    page.locator("#roan-placeholders code", has_text="{post.slug}").wait_for()

    text = box.inner_text()
    assert "Placeholders for Author" in text and "{username}" in text
    assert "post: the posts pointing here" in text
    admin_page.screenshot("rule-add-placeholders")


def test_the_change_page_of_a_tag_rule_lists_the_posts_relation(admin_page: Admin) -> None:
    rule = PurgeRule.objects.create(
        name="tag's posts",
        content_type=ContentType.objects.get_for_model(Tag),
        templates="/posts/{posts.slug}/",
    )
    admin_page.open(f"/admin/roan/purgerule/{rule.pk}/change/")

    box = admin_page.page.locator(".form-row.field-templates #roan-placeholders")
    text: Any = box.inner_text()
    assert "Placeholders for Tag" in text and "{posts.slug}" in text and "{slug}" in text
    admin_page.screenshot("rule-change-placeholders")
