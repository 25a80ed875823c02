"""Settings for roan's own test suite (SQLite by default; PostgreSQL or MySQL/MariaDB with
DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/roan or mysql://root@127.0.0.1:3306/roan)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "roan-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    # Before the admin: roan's object tools (the "Purge history" link) on every change form.
    "roan",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "import_export",
    "django_tasks_db",
    "django_rq",  # its rqworker command, for tests/test_tasks_rq.py
    "tests.testapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "roan.middleware.PurgeUserMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

STATIC_URL = "/static/"


def _database() -> dict[str, object]:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / "test.sqlite3"),
            "TEST": {
                "NAME": os.environ.get("ROAN_SQLITE_TEST_NAME", str(BASE_DIR / "test-db.sqlite3"))
            },
        }
    parts = urlsplit(url)
    engines = {
        "postgres": "django.db.backends.postgresql",
        "postgresql": "django.db.backends.postgresql",
        "mysql": "django.db.backends.mysql",  # MySQL and MariaDB, through mysqlclient
        "mariadb": "django.db.backends.mysql",
    }
    if parts.scheme not in engines:
        raise RuntimeError(
            f"DATABASE_URL: postgres:// or mysql:// is supported, not {parts.scheme}://"
        )
    database: dict[str, object] = {
        "ENGINE": engines[parts.scheme],
        "NAME": unquote(parts.path.lstrip("/")) or "roan",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }
    if database["ENGINE"] == "django.db.backends.mysql":
        # utf8mb4: targets and object names may hold any character. The server's
        # time-zone tables are deliberately not needed (and empty in CI).
        database["OPTIONS"] = {"charset": "utf8mb4"}
        database["TEST"] = {"CHARSET": "utf8mb4"}
    return database


DATABASES: dict[str, dict[str, Any]] = {"default": _database()}

# Django's default hasher spends about a second of CPU per password on a loaded CI
# machine, and most tests create a user (admin_client, the browser's sign-in). Nothing
# here tests hashing itself; the example (tests/test_example.py) keeps Django's default.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

ROAN_BACKENDS = {"default": {"BACKEND": "roan.backends.locmem.LocMemBackend"}}

# The task path is tested with the database backend and real `db_worker` processes;
# dispatch stays "inline" unless a test switches it.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# tests/test_tasks_rq.py points a queue at the Redis server it starts.
RQ_QUEUES: dict[str, dict[str, object]] = {}
RQ_SHOW_ADMIN_LINK = False

# A sampled verification probe refills the page it checks (fresh, as a reader would), so
# a test that expects a MISS right after a save would see a HIT one time in ten. The
# tests of the sampling set it themselves (tests/test_verify_sampled.py).
ROAN_VERIFY_SAMPLE = 0

# A subprocess started by a test connects to the test database by name.
if os.environ.get("ROAN_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["ROAN_DB_NAME"]

#: SQLite shared by several processes (a test and its workers): as README and the example
#: advise, each transaction takes the write lock when it begins and waits for it, rather
#: than failing with "database is locked" when two upgrade a read lock at the same time.
SQLITE_SHARED_OPTIONS = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
if os.environ.get("ROAN_SQLITE_SHARED") and DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"].setdefault("OPTIONS", {}).update(SQLITE_SHARED_OPTIONS)

# ... and takes the settings the test switched (JSON: {"ROAN_DISPATCH": "task", ...}).
globals().update(json.loads(os.environ.get("ROAN_TEST_SETTINGS", "{}")))
