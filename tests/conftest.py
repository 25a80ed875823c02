from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from roan import audit, shared_cache
from roan.models import PurgeRule
from roan.rules import index as rules

pytest_plugins = [
    "tests.support.caches",
    "tests.support.workers",
    "tests.support.browser",
    "tests.support.example_site",
]


def pytest_itemcollected(item: pytest.Item) -> None:
    """A test that drives Chromium is marked ``browser`` (CI runs those in two of its four
    configurations: what they check does not depend on the database)."""
    if {"browser", "admin_page"} & set(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.browser)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` run only when the suite runs on PostgreSQL, and tests
    marked ``mysql`` only on MySQL or MariaDB."""
    from django.db import connection

    marker = {"postgresql": "postgres", "mysql": "mysql"}.get(connection.vendor)
    unwanted = {"postgres", "mysql"} - {marker}
    keep = [item for item in items if not unwanted & set(item.keywords)]
    dropped = [item for item in items if unwanted & set(item.keywords)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures of the freshness runs (tests/test_freshness.py), quotable as they are."""
    figures = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", "") == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == "freshness"
    ]
    if figures:
        terminalreporter.section("freshness")
        for line in figures:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _fresh_rules() -> Iterator[None]:
    """Each test starts with no code rules and a rule index that knows nothing."""
    saved = list(rules._code_rules)
    rules._code_rules.clear()
    rules.invalidate()
    yield
    rules._code_rules[:] = saved
    rules.invalidate()


@pytest.fixture(autouse=True)
def _fresh_dashboard() -> Iterator[None]:
    """The dashboard's kept hours (roan.admin.rollup) counted another test's rows; its
    last audit (roan.audit) was another test's."""
    shared_cache.forget_dashboard()
    shared_cache.cache().delete(audit.LAST_AUDIT_KEY)
    yield
    shared_cache.forget_dashboard()
    shared_cache.cache().delete(audit.LAST_AUDIT_KEY)


@pytest.fixture
def outbox() -> Iterator[list[Any]]:
    from roan.backends import locmem

    locmem.outbox.clear()
    yield locmem.outbox
    locmem.outbox.clear()


@pytest.fixture
def make_rule(db: None) -> Callable[..., PurgeRule]:
    from django.contrib.contenttypes.models import ContentType

    from tests.testapp.models import Post

    def make(name: str, templates: str, model: Any = Post, **fields: Any) -> PurgeRule:
        rule = PurgeRule(
            name=name,
            content_type=ContentType.objects.get_for_model(model),
            templates=templates,
            **fields,
        )
        rule.full_clean()
        rule.save()
        return rule

    return make


@pytest.fixture
def post_rule(make_rule: Callable[..., PurgeRule]) -> PurgeRule:
    return make_rule("posts", "/posts/\n/posts/{slug}/")
