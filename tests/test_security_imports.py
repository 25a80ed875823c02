"""A rules file is bounded before it is parsed: its size as uploaded and as unpacked
(``ROAN_MAX_IMPORT_BYTES``), its rows (``ROAN_MAX_IMPORT_ROWS``), JSON's and YAML's
nesting and YAML's aliases. A 49 KiB .xlsx once added 247 MiB to peak memory (issue 25).
"""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from typing import Any

import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile

from roan.models import PurgeRule
from tests.support.admin_helpers import staff_client

pytestmark = pytest.mark.django_db(transaction=True)

IMPORTER = [
    "roan.add_purgerule",
    "roan.change_purgerule",
    "roan.view_purgerule",
    "testapp.view_post",
]
HEADERS = ["name", "model", "templates", "backends", "on_save", "on_delete", "on_m2m", "enabled"]
#: The admin's import formats, in PurgeRuleAdmin.import_formats' order.
FORMAT = {"csv": "0", "json": "1", "yaml": "2", "xlsx": "3"}


def rules_file(rows: int) -> tablib.Dataset:
    data = tablib.Dataset(headers=HEADERS)
    for n in range(rows):
        data.append([f"rule {n}", "testapp.post", f"/posts/{n}/", "", 1, 1, 0, 1])
    return data


def xlsx_bomb(padding: int) -> bytes:
    """A real workbook of one rule whose sheet carries ``padding`` bytes of whitespace:
    deflated, a few KiB on disk; unpacked, as large as asked."""
    workbook = rules_file(1).export("xlsx")
    source = zipfile.ZipFile(io.BytesIO(workbook))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for member in source.infolist():
            content = source.read(member)
            if member.filename == "xl/worksheets/sheet1.xml":
                content = content.replace(b"</worksheet>", b" " * padding + b"</worksheet>")
            bomb.writestr(member.filename, content)
    return out.getvalue()


@pytest.fixture
def importer(django_user_model: Any) -> Any:
    return staff_client(django_user_model, "importer", IMPORTER)


def upload(client: Any, name: str, content: bytes, kind: str) -> Any:
    return client.post(
        "/admin/roan/purgerule/import/",
        {
            "import_file": SimpleUploadedFile(name, content),
            "format": FORMAT[kind],
            "resource": "0",
        },
    )


def form_errors(response: Any) -> str:
    return " ".join(response.context["form"].errors.get("import_file", []))


def test_an_xlsx_bomb_is_refused_from_its_declared_sizes_without_being_unpacked(
    importer,
) -> None:
    bomb = xlsx_bomb(64 * 1024 * 1024)
    assert len(bomb) < 200 * 1024  # a small upload...

    tracemalloc.start()
    try:
        response = upload(importer, "rules.xlsx", bomb, "xlsx")
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 200
    assert "The file unpacks to 64.0\xa0MB" in form_errors(response)
    assert "ROAN_MAX_IMPORT_BYTES" in response.text
    assert "result" not in response.context
    assert not PurgeRule.objects.exists()
    assert peak < 16 * 1024 * 1024  # ...that never grows into its 64 MiB


def test_a_small_real_workbook_still_imports(importer) -> None:
    response = upload(importer, "rules.xlsx", xlsx_bomb(1000), "xlsx")

    assert response.status_code == 200 and not response.context["form"].errors
    assert not response.context["result"].has_errors()


@pytest.mark.parametrize("kind", ["csv", "xlsx", "json", "yaml"])
def test_a_file_with_too_many_rows_is_refused_before_parsing(importer, settings, kind) -> None:
    settings.ROAN_MAX_IMPORT_ROWS = 5
    content = rules_file(6).export(kind)

    response = upload(
        importer, f"rules.{kind}", content.encode() if kind != "xlsx" else content, kind
    )

    assert response.status_code == 200
    assert "more than 5 rows" in form_errors(response)
    assert "ROAN_MAX_IMPORT_ROWS" in response.text
    assert "result" not in response.context and not PurgeRule.objects.exists()


@pytest.mark.parametrize("kind", ["csv", "xlsx", "json", "yaml"])
def test_as_many_rows_as_allowed_pass(importer, settings, kind) -> None:
    settings.ROAN_MAX_IMPORT_ROWS = 5
    content = rules_file(5).export(kind)

    response = upload(
        importer, f"rules.{kind}", content.encode() if kind != "xlsx" else content, kind
    )

    assert not response.context["form"].errors
    assert not response.context["result"].has_errors()


def test_a_csv_larger_than_the_bound_is_refused(importer, settings) -> None:
    settings.ROAN_MAX_IMPORT_BYTES = 1000
    content = rules_file(40).export("csv").encode()
    assert len(content) > 1000

    response = upload(importer, "rules.csv", content, "csv")

    assert "larger than 1000\xa0bytes" in form_errors(response)
    assert not PurgeRule.objects.exists()


def test_yaml_aliases_are_refused(importer) -> None:
    laughs = (
        "- name: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        "  model: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "  templates: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    )

    response = upload(importer, "rules.yaml", laughs.encode(), "yaml")

    assert "anchors or aliases" in form_errors(response)
    assert not PurgeRule.objects.exists()


def test_json_nested_past_any_rules_file_is_refused(importer) -> None:
    response = upload(importer, "rules.json", b"[" * 50_000 + b"]" * 50_000, "json")

    assert "nests deeper than 20 levels" in form_errors(response)


def test_the_defaults_are_five_mib_and_ten_thousand_rows() -> None:
    from roan.resources import import_refusal  # here, so that the rest runs on any roan

    at_limit = "\n".join(["name"] + ["x"] * 10_000)
    over = at_limit + "\nx"

    assert import_refusal(at_limit, "csv") == ""
    assert "more than 10000 rows" in import_refusal(over, "csv")
    assert "larger than 5.0\xa0MB" in import_refusal(b"x" * (5 * 1024 * 1024 + 1), "json")
    # A quoted value over several lines is one row, and brackets in strings do not nest.
    assert import_refusal('name,templates\n"a\n\n\nb",/x/\n' * 3, "csv") == ""
    assert import_refusal('[{"name": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]', "json") == ""
