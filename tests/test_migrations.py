from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_missing_migrations() -> None:
    out = StringIO()
    call_command("makemigrations", "roan", "--check", "--dry-run", stdout=out, stderr=out)
    assert "No changes detected" in out.getvalue()


def test_migrations_do_not_import_roan_code() -> None:
    from pathlib import Path

    import roan

    folder = Path(roan.__file__).parent / "migrations"
    for path in folder.glob("0*.py"):
        text = path.read_text()
        assert "import roan" not in text and "from roan" not in text, path.name
