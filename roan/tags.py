"""Cache tag names: one tag per object and one per model (for pages that list them).

The names are a contract between the middleware that puts tags on responses and the
receivers that purge them, so both sides build them here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from roan.conf import roan_settings


def model_tag(model: type[models.Model] | models.Model) -> str:
    """``{ROAN_TAG_PREFIX}{app_label}.{model_name}``: the tag of pages listing ``model``."""
    opts = model._meta.concrete_model._meta  # type: ignore[union-attr]
    return f"{roan_settings.TAG_PREFIX}{opts.app_label}.{opts.model_name}"


def object_tag(model: type[models.Model] | models.Model, pk: Any) -> str:
    """``{model_tag}:{pk}``: the tag of pages showing that one object."""
    return f"{model_tag(model)}:{pk}"
