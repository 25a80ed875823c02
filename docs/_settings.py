"""The settings autodoc imports roan under (the docs build runs no site)."""

SECRET_KEY = "docs"
INSTALLED_APPS = [
    "roan",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "import_export",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
