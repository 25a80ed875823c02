"""The names of cache tags: a model's list tag and an object's tag, with
``ROAN_TAG_PREFIX``. Pages carry them (:mod:`roan.tags.collect`), the index keeps them
(:mod:`roan.tags.index`), saves purge them (:mod:`roan.receivers`)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import QuerySet

from roan.conf import roan_settings


def model_tag(model: type[models.Model] | models.Model) -> str:
    """``{ROAN_TAG_PREFIX}{app_label}.{model_name}``: the list tag of ``model``'s rows.

    Proxies and instances name their concrete model, so a proxy's page and its base's
    page share tags.
    """
    opts = model._meta.concrete_model._meta  # type: ignore[union-attr]
    return f"{roan_settings.TAG_PREFIX}{opts.app_label}.{opts.model_name}"


def object_tag(model: type[models.Model] | models.Model, pk: Any) -> str:
    """``{model_tag(model)}:{pk}``: the tag of one row."""
    return f"{model_tag(model)}:{pk}"


def tag_for(item: Any) -> str:
    """The tag a hand-given item stands for: a string (the prefix is added), a model
    instance (its object tag), a model class or a queryset (its list tag).

    In a template, pass a queryset or a string rather than a model class: the template
    language calls a class it is given, which builds an unsaved instance (list tag too).
    """
    if isinstance(item, str):
        return f"{roan_settings.TAG_PREFIX}{item}"
    if isinstance(item, models.Model):
        # An unsaved instance has no row to name yet: its model's list tag is safe.
        return model_tag(item) if item.pk is None else object_tag(item, item.pk)
    if isinstance(item, type) and issubclass(item, models.Model):
        return model_tag(item)
    if isinstance(item, QuerySet):
        return model_tag(item.model)
    raise TypeError(
        f"a cache tag is a string, a model, a model instance or a queryset, not {item!r}"
    )
