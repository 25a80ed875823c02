"""roan's app config: connects the receivers, patches the ORM's writes that send no
signals (``roan.tags.bulk_writes``) and registers the system checks once every app is loaded
(the only imports the layer test does not walk)."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RoanConfig(AppConfig):
    name = "roan"
    verbose_name = _("Roan")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from roan import checks, receivers
        from roan.tags import bulk_writes

        receivers.connect()
        bulk_writes.patch()
        checks.register()
