# roan: appended to mysite/settings.py

# roan before the admin, so every object with rules gets a "Purges" link.
INSTALLED_APPS = ["roan", *INSTALLED_APPS, "import_export", "blog"]

ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

# Several threads write (runserver's, the sender's): SQLite waits for the write lock
# instead of failing with "database is locked" (system check roan.W004).
DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}

ROAN_BACKENDS = {
    "nginx": {
        "BACKEND": "roan.backends.nginx.NginxBackend",
        # nginx.conf's purge location: its "listen" port.
        "LOCATION": "http://127.0.0.1:8080/purge",
        # The host readers use, without the port: nginx keys pages by it.
        "HOSTS": ["127.0.0.1"],
    }
}
