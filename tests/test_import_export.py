"""Rules in and out in four formats, all or nothing; the purge log out, filtered and escaped."""

from __future__ import annotations

import csv
import io
import json

import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile

from roan.models import PurgeAttempt, PurgeRule
from roan.resources import PurgeRuleResource
from tests.support.admin_helpers import attempt
from tests.testapp.models import Post, Tag

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = "name,model,templates,backends,on_save,on_delete,on_m2m,enabled,description\n"


def upload(admin_client, text: str):
    """Step one of the admin import: the dry run and its preview."""
    return admin_client.post(
        "/admin/roan/purgerule/import/",
        {
            "import_file": SimpleUploadedFile("rules.csv", text.encode()),
            "format": "0",  # CSV, the first of the admin's import formats
            "resource": "0",
        },
    )


@pytest.mark.parametrize("fmt", ["csv", "json", "yaml", "xlsx"])
def test_rules_round_trip_by_name_model_label_and_backend_alias(make_rule, settings, fmt) -> None:
    settings.ROAN_BACKENDS = {
        "edge": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
        "origin": {"BACKEND": "roan.backends.locmem.LocMemBackend"},
    }
    make_rule("posts", "/posts/\n/posts/{slug}/", backends=["edge", "origin"], on_m2m=True)
    make_rule("tags", "/tags/{slug}/", model=Tag, on_delete=False)
    exported = PurgeRuleResource().export()
    assert exported.dict[0]["model"] == "testapp.post"
    assert exported.dict[0]["backends"] == "edge, origin"
    data = exported.export(fmt)
    PurgeRule.objects.all().delete()

    result = PurgeRuleResource().import_data(tablib.Dataset().load(data, format=fmt))

    assert not result.has_errors() and not result.has_validation_errors()
    rules = {r.name: r for r in PurgeRule.objects.select_related("content_type")}
    assert rules["posts"].backends == ["edge", "origin"] and rules["posts"].on_m2m
    assert rules["posts"].template_lines == ["/posts/", "/posts/{slug}/"]
    assert rules["tags"].content_type.model == "tag" and not rules["tags"].on_delete


def test_bad_rows_are_reported_by_number_and_reason_and_nothing_is_imported(
    admin_client,
) -> None:
    text = HEADER + (
        "good,testapp.post,/posts/,,1,1,0,1,\n"
        "bad template,testapp.post,/posts/{nope}/,,1,1,0,1,\n"
        "bad model,testapp.nothing,/x/,,1,1,0,1,\n"
        "bad backend,testapp.post,/x/,nowhere,1,1,0,1,\n"
        "twice,testapp.post,/a/,,1,1,0,1,\n"
        "twice,testapp.post,/b/,,1,1,0,1,\n"
    )

    response = upload(admin_client, text)

    result = response.context["result"]
    invalid = {row.number: row.error_dict for row in result.invalid_rows}
    assert sorted(invalid) == [2, 3, 4, 5, 6]
    assert "nope" in str(invalid[2]["templates"])
    assert "unknown model 'testapp.nothing'" in str(invalid[3]["content_type"])
    assert "Unknown backend" in str(invalid[4]["backends"])
    assert "more than one row" in str(invalid[5]["name"])
    html = response.text
    assert "unknown model &#x27;testapp.nothing&#x27;" in html  # shown next to its row number
    assert "confirm_form" not in response.context or not response.context["confirm_form"]
    assert not PurgeRule.objects.exists()

    # Not through the admin either: a bad row rolls back the good ones.
    dataset = tablib.Dataset().load(text, format="csv")
    PurgeRuleResource().import_data(dataset, dry_run=False)
    assert not PurgeRule.objects.exists()


def test_an_import_is_previewed_then_confirmed_and_the_new_rule_fires(admin_client, outbox) -> None:
    preview = upload(admin_client, HEADER + "imported,testapp.post,/imported/{slug}/,,1,1,0,1,\n")

    assert "/imported/{slug}/" in preview.text  # the dry run's preview
    assert not PurgeRule.objects.exists()
    confirm = preview.context["confirm_form"]
    done = admin_client.post(
        "/admin/roan/purgerule/process_import/",
        {name: confirm[name].value() for name in confirm.fields},
        follow=True,
    )

    assert done.status_code == 200
    assert PurgeRule.objects.get().name == "imported"
    Post.objects.create(title="New", slug="new")  # the rule index saw the import
    assert [r.target for _node, r in outbox] == ["/imported/new/"]


def export(admin_client, query: str, fmt: int):
    url = f"/admin/roan/purgeattempt/export/?{query}"
    form = admin_client.get(url).context["form"]
    data = {
        name: "on"
        for name, field in form.fields.items()
        if getattr(field, "is_selectable_field", False)
    }
    return admin_client.post(url, {**data, "format": str(fmt), "resource": "0"})


def test_the_log_export_keeps_the_list_filters_and_escapes_formulas(admin_client) -> None:
    attempt(target="/ok/", status="ok")
    attempt(target="/bad/", status="failed", object_repr='=HYPERLINK("http://evil")')
    attempt(target="/bad2/", status="failed", object_repr="+1", error="@SUM(A1)")

    response = export(admin_client, "status__exact=failed", 0)  # CSV

    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sorted(r["target"] for r in rows) == ["/bad/", "/bad2/"]
    reprs = {r["target"]: (r["object_repr"], r["error"]) for r in rows}
    assert reprs["/bad/"][0] == '\'=HYPERLINK("http://evil")'
    assert reprs["/bad2/"] == ("'+1", "'@SUM(A1)")


def test_the_log_exports_as_json_and_xlsx(admin_client) -> None:
    attempt(target="/one/", status="not_cached", http_status=404)

    as_json = json.loads(export(admin_client, "", 2).content)
    xlsx = export(admin_client, "", 1)

    assert [(r["target"], r["status"]) for r in as_json] == [("/one/", "not_cached")]
    sheet = tablib.Dataset().load(xlsx.content, format="xlsx")
    assert sheet.dict[0]["target"] == "/one/"
    assert PurgeAttempt.objects.count() == 1
