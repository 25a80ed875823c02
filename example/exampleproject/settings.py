"""Settings for roan's example blog.

Made for ``make demo`` on one machine: SQLite, Django's page cache in files under
``example/.cache/pages/`` (shared by runserver and management commands), and roan purging
that cache through ``DjangoCacheBackend``. Environment variables override the parts
you may want to change; nothing here is fit for production as it stands.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent  # example/

SECRET_KEY = os.environ.get("ROAN_EXAMPLE_SECRET_KEY", "roan-example-not-secret")
DEBUG = os.environ.get("ROAN_EXAMPLE_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("ROAN_EXAMPLE_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "import_export",
    "roan",
    "blog",
]

# No site-wide cache middleware: it would cache the admin too. The public views use
# cache_page instead (blog/views.py).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Tags each cacheable page with the posts, authors and tags it shows (an xkey header
    # for Varnish); above the middleware that set cookies, so it sees their cookies.
    "roan.middleware.CacheTagMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # An ETag on every page, and 304 to a browser revalidating a page it has: the public
    # pages tell browsers to ask again each time (blog/views.py).
    "django.middleware.http.ConditionalGetMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Names the signed-in editor on the purges their saves cause.
    "roan.middleware.PurgeUserMiddleware",
]

ROOT_URLCONF = "exampleproject.urls"
WSGI_APPLICATION = "exampleproject.wsgi.application"

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


def _database() -> dict[str, object]:
    """SQLite in example/db.sqlite3, or PostgreSQL from ROAN_EXAMPLE_DATABASE_URL."""
    url = os.environ.get("ROAN_EXAMPLE_DATABASE_URL", "")
    if not url:
        name = os.environ.get("ROAN_EXAMPLE_SQLITE", str(BASE_DIR / "db.sqlite3"))
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise RuntimeError(
            f"ROAN_EXAMPLE_DATABASE_URL: only postgres:// URLs are supported, not {parts.scheme}"
        )
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "roan_example",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A file cache rather than LocMemCache: `manage.py seed_demo` or `roan_purge` run in
# their own process and must see (and purge) the pages runserver cached.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": os.environ.get("ROAN_EXAMPLE_CACHE_DIR", str(BASE_DIR / ".cache" / "pages")),
        "TIMEOUT": 600,
    }
}

# How long cache_page keeps a public page, and the s-maxage sent to caches in front
# (browsers get max-age=0 and revalidate: roan can purge shared caches, not theirs).
BLOG_PAGE_SECONDS = int(os.environ.get("ROAN_EXAMPLE_PAGE_SECONDS", "600"))

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True

STATIC_URL = "/static/"
# For `collectstatic` when a real web server serves the files (example/deploy/).
STATIC_ROOT = BASE_DIR / ".cache" / "static"

# --- roan -------------------------------------------------------------------------------

# The pages cached by cache_page above live in Django's cache; DjangoCacheBackend deletes
# them. HOSTS are the hosts the pages are served under: cache_page keys include the host,
# so a page fetched at localhost:8000 is a different entry from 127.0.0.1:8000.
_SITE_HOSTS = os.environ.get("ROAN_EXAMPLE_HOSTS", "127.0.0.1:8000,localhost:8000").split(",")
ROAN_BACKENDS: dict[str, dict[str, object]] = {
    "site": {
        "BACKEND": "roan.backends.django_cache.DjangoCacheBackend",
        "HOSTS": _SITE_HOSTS,
    },
    # With Varnish in front (example/deploy/ has a VCL accepting PURGE, BAN and xkey
    # from localhost):
    # "varnish": {
    #     "BACKEND": "roan.backends.varnish.VarnishBackend",
    #     "NODES": ["http://127.0.0.1:6081"],
    #     "HOSTS": ["localhost"],
    # },
}

# With nginx in front (example/deploy/nginx.conf, with the ngx_cache_purge module; "GET
# /purge/<path>" purges <path>), set ROAN_EXAMPLE_NGINX_PURGE_URL, e.g.
# http://127.0.0.1:8080/purge. nginx then sits in front of Django's page cache: it is
# purged AFTER it, so that a reader who refills nginx right after its purge cannot get
# the page cache's old copy (which nginx would then keep for its whole lifetime).
# ROAN_EXAMPLE_NGINX_HOSTS (default "localhost") are the names readers use; nginx passes
# them to Django without the port, so the page cache keys its pages by them too.
if os.environ.get("ROAN_EXAMPLE_NGINX_PURGE_URL"):
    _nginx_hosts = os.environ.get("ROAN_EXAMPLE_NGINX_HOSTS", "localhost").split(",")
    ROAN_BACKENDS["site"]["HOSTS"] = [*_SITE_HOSTS, *_nginx_hosts]
    ROAN_BACKENDS["nginx"] = {
        "BACKEND": "roan.backends.nginx.NginxBackend",
        "LOCATION": os.environ["ROAN_EXAMPLE_NGINX_PURGE_URL"],
        "HOSTS": _nginx_hosts,
        "AFTER": ["site"],
    }

# The models purge rules may name: the blog's. Without this setting every installed model
# but accounts, sessions, the admin log, content types and roan's own would be allowed;
# listing the apps whose pages are cached keeps rule editors away from everything else.
ROAN_RULE_MODELS = ["blog"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"roan": {"handlers": ["console"], "level": "INFO"}},
}
