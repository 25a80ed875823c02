"""The rules export escapes formulas like the log export, and still round-trips (issue 7)."""

from __future__ import annotations

import csv
import io

import pytest
import tablib

from roan.models import PurgeRule
from roan.resources import PurgeRuleResource

pytestmark = pytest.mark.django_db(transaction=True)

NAME = '=HYPERLINK("http://evil.example/","click")'


def export(admin_client, fmt: int):
    url = "/admin/roan/purgerule/export/"
    form = admin_client.get(url).context["form"]
    data = {
        name: "on"
        for name, field in form.fields.items()
        if getattr(field, "is_selectable_field", False)
    }
    return admin_client.post(url, {**data, "format": str(fmt), "resource": "0"})


@pytest.fixture
def hostile(make_rule) -> PurgeRule:
    return make_rule(NAME, "/posts/\n/posts/{slug}/", description="@SUM(A1)")


def test_rule_cells_a_spreadsheet_would_run_are_escaped_in_csv(admin_client, hostile) -> None:
    response = export(admin_client, 0)  # CSV, the first export format

    [row] = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert row["name"] == "'" + NAME
    assert row["description"] == "'@SUM(A1)"
    assert row["templates"] == "/posts/\n/posts/{slug}/"  # a path: left alone


def test_rule_cells_are_escaped_in_xlsx(admin_client, hostile) -> None:
    response = export(admin_client, 3)  # XLSX

    sheet = tablib.Dataset().load(response.content, format="xlsx")
    assert (sheet.dict[0]["name"], sheet.dict[0]["description"]) == ("'" + NAME, "'@SUM(A1)")


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_an_exported_file_imports_back_to_the_same_rules(hostile, fmt: str) -> None:
    data = PurgeRuleResource().export().export(fmt)
    PurgeRule.objects.all().delete()

    result = PurgeRuleResource().import_data(tablib.Dataset().load(data, format=fmt))

    assert not result.has_errors() and not result.has_validation_errors()
    rule = PurgeRule.objects.get()
    assert (rule.name, rule.description) == (NAME, "@SUM(A1)")
    assert rule.template_lines == ["/posts/", "/posts/{slug}/"]
