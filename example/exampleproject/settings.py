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
    "roan",  # before the admin: the "Purges" link on every change form
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "import_export",
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
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            # Readers write too (the tag index, on every page the caches miss) while an
            # editor saves: WAL lets reads go on during a write, IMMEDIATE takes the write
            # lock when a transaction starts (a deferred one that reads, then writes, fails
            # at once with "database is locked" if another writer got there first), and a
            # writer waits up to 20 s for the lock instead of 5.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
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

# ROAN_EXAMPLE_PAGE_CACHE=0 turns Django's page cache off (blog/views.py), for a site that
# leaves caching to nginx or Varnish in front.
BLOG_PAGE_CACHE = os.environ.get("ROAN_EXAMPLE_PAGE_CACHE", "1") == "1"
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
# The caches in front pass their readers' host names on: the page cache keys by them too.
_PAGE_HOSTS = list(_SITE_HOSTS)
ROAN_BACKENDS: dict[str, dict[str, object]] = {}
if BLOG_PAGE_CACHE:
    ROAN_BACKENDS["site"] = {
        "BACKEND": "roan.backends.django_cache.DjangoCacheBackend",
        "HOSTS": _PAGE_HOSTS,
    }
# The caches in front are purged after the page cache (AFTER): a reader who refills them
# right after their purge must not get the page cache's old copy, which they would then
# keep for their whole lifetime.
_INNER = ["site"] if BLOG_PAGE_CACHE else []

# With nginx in front (example/deploy/nginx.conf, with the ngx_cache_purge module; "GET
# /purge/<path>" purges <path>), set ROAN_EXAMPLE_NGINX_PURGE_URL, e.g.
# http://127.0.0.1:8080/purge. ROAN_EXAMPLE_NGINX_HOSTS (default "localhost") are the
# names readers use; nginx passes them to Django without the port, so the page cache keys
# its pages by them too.
if os.environ.get("ROAN_EXAMPLE_NGINX_PURGE_URL"):
    _nginx_hosts = os.environ.get("ROAN_EXAMPLE_NGINX_HOSTS", "localhost").split(",")
    _PAGE_HOSTS += _nginx_hosts
    ROAN_BACKENDS["nginx"] = {
        "BACKEND": "roan.backends.nginx.NginxBackend",
        "LOCATION": os.environ["ROAN_EXAMPLE_NGINX_PURGE_URL"],
        "HOSTS": _nginx_hosts,
        "AFTER": _INNER,
    }

# With Varnish in front (example/deploy/varnish.vcl: PURGE, BAN and xkey from localhost),
# set ROAN_EXAMPLE_VARNISH_URL, e.g. http://127.0.0.1:6081. Varnish keys pages by the Host
# as readers send it, port included: ROAN_EXAMPLE_VARNISH_HOSTS (default "localhost:6081").
# The pages' xkey header (CacheTagMiddleware) lets it purge by tag.
if os.environ.get("ROAN_EXAMPLE_VARNISH_URL"):
    _varnish_hosts = os.environ.get("ROAN_EXAMPLE_VARNISH_HOSTS", "localhost:6081").split(",")
    _PAGE_HOSTS += _varnish_hosts
    ROAN_BACKENDS["varnish"] = {
        "BACKEND": "roan.backends.varnish.VarnishBackend",
        "NODES": [os.environ["ROAN_EXAMPLE_VARNISH_URL"]],
        "HOSTS": _varnish_hosts,
        "AFTER": _INNER,
    }

# ROAN_EXAMPLE_PURGING=0: a process that only renders pages (and purges nothing, indexes
# nothing), such as the uncached reference server of tests/test_freshness.py.
ROAN_ENABLED = os.environ.get("ROAN_EXAMPLE_PURGING", "1") == "1"
# ROAN_EXAMPLE_RENDER_GUARD=0 turns roan's render guard off (to watch the race it closes).
ROAN_RENDER_GUARD = os.environ.get("ROAN_EXAMPLE_RENDER_GUARD", "1") == "1"

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
