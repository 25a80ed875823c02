"""roan's configuration rows survive ``dumpdata --natural-primary`` and ``loaddata``:
the way a site copies its rules and pause switches from staging to production."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

from roan.models import BackendState, PurgeRule

pytestmark = pytest.mark.django_db


def dump(path: Path) -> None:
    call_command(
        "dumpdata",
        "roan.purgerule",
        "roan.backendstate",
        "--natural-primary",
        "--natural-foreign",
        "--indent=2",
        f"--output={path}",
    )


def test_natural_keys_round_trip_onto_existing_rows(tmp_path, post_rule, admin_user) -> None:
    BackendState.objects.create(alias="edge", paused=True, paused_by=admin_user)
    fixture = tmp_path / "roan.json"
    dump(fixture)
    assert '"pk"' not in fixture.read_text()

    # The target database has the same rows under its own ids, changed since.
    BackendState.objects.filter(alias="edge").update(paused=False, paused_by=None)
    PurgeRule.objects.filter(name="posts").update(templates="/elsewhere/")
    call_command("loaddata", str(fixture), verbosity=0)

    [state] = BackendState.objects.all()
    assert (state.alias, state.paused, state.paused_by) == ("edge", True, admin_user)
    [rule] = PurgeRule.objects.all()
    assert (rule.pk, rule.templates) == (post_rule.pk, "/posts/\n/posts/{slug}/")


def test_natural_keys_load_into_an_empty_database(tmp_path, post_rule) -> None:
    BackendState.objects.create(alias="edge", paused=True)
    fixture = tmp_path / "roan.json"
    dump(fixture)
    BackendState.objects.all().delete()
    PurgeRule.objects.all().delete()

    call_command("loaddata", str(fixture), verbosity=0)
    assert list(BackendState.objects.values_list("alias", "paused")) == [("edge", True)]
    assert list(PurgeRule.objects.values_list("name", flat=True)) == ["posts"]
