"""What the benchmarks share: the example project, scratch PostgreSQL databases and a worker
in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent


def _server_database(engine: str, url: str, name: str) -> dict[str, Any]:
    """Django's DATABASES entry for database ``name`` on the server of ``url``."""
    parts = urlsplit(url)
    return {
        "ENGINE": f"django.db.backends.{engine}",
        "NAME": name,
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


def postgres_database(url: str, name: str) -> dict[str, object]:
    """Django's DATABASES entry for database ``name`` on the PostgreSQL server of ``url``."""
    return _server_database("postgresql", url, name)


def admin_sql(url: str, sql: str) -> None:
    """Run ``sql`` (CREATE/DROP DATABASE) on the server of ``url``, in autocommit."""
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, password=parts.password,
        dbname="postgres", autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute(sql)


def run_worker(
    script: str,
    args: list[str],
    database: dict[str, Any],
    *,
    stderr: bool = False,
    timeout: float = 1800,
) -> Any:
    """Run ``script`` with ``args`` and ``--db`` in a fresh Python process (its own Django
    settings and database) and return the JSON it prints on its last line. ``stderr``:
    let the child's standard error through (a profile)."""
    out = subprocess.run(
        [sys.executable, script, *args, "--db", json.dumps(database)],
        check=True, stdout=subprocess.PIPE, stderr=None if stderr else subprocess.PIPE,
        text=True, cwd=ROOT, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def mysql_database(url: str, name: str) -> dict[str, object]:
    """Django's DATABASES entry for database ``name`` on the MySQL/MariaDB server of ``url``."""
    return {**_server_database("mysql", url, name), "OPTIONS": {"charset": "utf8mb4"}}


def mysql_admin_sql(url: str, sql: str) -> None:
    """Run ``sql`` (CREATE/DROP DATABASE) on the MySQL/MariaDB server of ``url``."""
    import MySQLdb

    parts = urlsplit(url)
    conn = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
        user=parts.username or "root", password=parts.password or "",
    )  # fmt: skip
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def setup_example(sqlite: str, database_url: str) -> None:
    """Set Django up with the example project's settings, on the SQLite file ``sqlite`` or
    the PostgreSQL database ``database_url``, without a query log (it would be timed too)."""
    sys.path[:0] = [str(ROOT / "example"), str(ROOT)]
    os.environ["DJANGO_SETTINGS_MODULE"] = "exampleproject.settings"
    os.environ["ROAN_EXAMPLE_SQLITE"] = sqlite
    if database_url:
        os.environ["ROAN_EXAMPLE_DATABASE_URL"] = database_url
    os.environ["ROAN_EXAMPLE_DEBUG"] = "0"
    import django

    django.setup()
