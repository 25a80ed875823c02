"""What a rule may read: which models rules may name, which fields no placeholder may
read, and whether a user may see a model's data through roan's admin pages.

A rule editor is often not a developer, and what a rule renders ends up in purge URLs,
the purge log, exports and the cache. So a database rule may only name models the
project opts in to (``ROAN_RULE_MODELS``; by default everything but accounts, sessions,
the admin log, content types and roan itself), and a placeholder never reads a field
that holds a secret. Code rules (``purge(url).on_save(Model)``) are written by
developers and render no placeholders, so the allow-list does not apply to them.

Nothing of roan but ``roan.conf`` is imported here: the templating, rules, forms and
admin layers all ask this module.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_permission_codename
from django.db import models
from django.utils.translation import gettext as _

from roan.conf import roan_settings

#: roan's own app label: its rules and log may never be read through a rule.
ROAN_APP = "roan"

#: Apps whose models hold accounts, sessions, permissions or the admin's history. A rule
#: may name one of their models only when ``ROAN_RULE_MODELS`` lists it by model label.
SENSITIVE_APPS = frozenset({"auth", "sessions", "admin", "contenttypes"})

#: Name parts (a name split on ``_`` and camelCase) that mark a field as a secret.
SECRET_PARTS = frozenset(
    {
        "key",
        "keys",
        "hash",
        "hashed",
        "salt",
        "otp",
        "totp",
        "hotp",
        "nonce",
        "pwd",
        "pin",
    }
)
#: Words that mark a secret wherever they stand in a part (``accesstoken``, ``apikey``).
SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "credential")

#: Fields that are secrets under names that do not say so.
BUILTIN_PRIVATE_FIELDS = ("sessions.session.session_data",)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class ModelNotAllowed(ValueError):
    """A database rule names a model that rules may not read."""


# -- ROAN_RULE_MODELS ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AllowList:
    """``ROAN_RULE_MODELS`` parsed: model labels and app labels (``None``: the default)."""

    models: frozenset[str]
    apps: frozenset[str]


def allow_list() -> AllowList | None:
    entries = roan_settings.RULE_MODELS
    if entries is None:
        return None
    labels: set[str] = set()
    app_labels: set[str] = set()
    for entry in entries:
        app_label, dot, model_name = entry.strip().partition(".")
        if dot:
            labels.add(f"{app_label}.{model_name.lower()}")
        else:
            app_labels.add(app_label)
    return AllowList(frozenset(labels), frozenset(app_labels))


def _lineage(model: type[models.Model]) -> list[Any]:
    """The ``_meta`` of ``model``, the model it proxies and its concrete parents: the
    tables its rows are read from."""
    opts = model._meta
    related = [opts, opts.concrete_model._meta]  # type: ignore[union-attr]
    related += [parent._meta for parent in opts.get_parent_list()]
    return related


def is_sensitive(model: type[models.Model]) -> bool:
    """Whether ``model`` reads rows of an account, session or admin table."""
    user_label = str(getattr(settings, "AUTH_USER_MODEL", "auth.User")).lower()
    return any(
        opts.app_label in SENSITIVE_APPS or opts.label_lower == user_label
        for opts in _lineage(model)
    )


def is_roan_model(model: type[models.Model]) -> bool:
    return any(opts.app_label == ROAN_APP for opts in _lineage(model))


def rule_model_refusal(model: type[models.Model]) -> str:
    """Why a database rule may not name ``model`` ("" when it may)."""
    label = model._meta.label_lower
    if is_roan_model(model):
        return _("%s is one of roan's own models; a rule can never name it.") % label
    allowed = allow_list()
    sensitive = is_sensitive(model)
    if allowed is None:
        if sensitive:
            return _(
                "%(model)s holds accounts, sessions or admin data; a rule may name it only "
                "when ROAN_RULE_MODELS lists %(model)r."
            ) % {"model": label}
        return ""
    if label in allowed.models:
        return ""
    if sensitive:
        listed_app = model._meta.app_label in allowed.apps
        if listed_app:
            return _(
                "%(model)s holds accounts, sessions or admin data; a rule may name it only "
                "when ROAN_RULE_MODELS lists %(model)r (its app label is not enough)."
            ) % {"model": label}
        return _(
            "%(model)s holds accounts, sessions or admin data; a rule may name it only "
            "when ROAN_RULE_MODELS lists %(model)r."
        ) % {"model": label}
    if model._meta.app_label in allowed.apps:
        return ""
    return _("%s is not in ROAN_RULE_MODELS.") % label


def check_rule_model(model: type[models.Model]) -> None:
    """Raise ``ModelNotAllowed`` unless a database rule may name ``model``."""
    reason = rule_model_refusal(model)
    if reason:
        raise ModelNotAllowed(reason)


def allowed_models() -> list[type[models.Model]]:
    """Installed models (proxies included) that database rules may name."""
    return [m for m in apps.get_models() if not rule_model_refusal(m)]


# -- private fields --------------------------------------------------------------------------


def looks_secret(name: str) -> bool:
    """Whether a field called ``name`` probably holds a secret.

    The name is split into parts on ``_`` and camelCase: a part that *is* a short secret
    word (``key``, ``hash``, ``salt``, ``otp``...) or *contains* a long one (``password``,
    ``token``, ``secret``...) marks it. So ``api_key``, ``session_key``, ``password_hash``
    and ``accessToken`` are secret, while ``keywords``, ``monkey``, ``author_id`` and
    ``pk`` are not. It errs on the safe side: ``sort_key`` is refused too.
    """
    parts = _CAMEL.sub("_", name).lower().split("_")
    return any(part in SECRET_PARTS or any(word in part for word in SECRET_WORDS) for part in parts)


def private_field_names(model: type[models.Model]) -> frozenset[str]:
    """Field names ``ROAN_PRIVATE_FIELDS`` makes private on ``model``."""
    labels = {opts.label_lower for opts in _lineage(model)}
    names: set[str] = set()
    for entry in (*BUILTIN_PRIVATE_FIELDS, *roan_settings.PRIVATE_FIELDS):
        head, dot, field = entry.strip().rpartition(".")
        if not dot or head.lower() in labels:
            names.add(field)
    return frozenset(names)


def is_private_field(model: type[models.Model], field: Any) -> bool:
    """Whether no placeholder may read ``field`` of ``model``."""
    names = {field.name, getattr(field, "attname", None) or field.name}
    listed = private_field_names(model)
    return any(looks_secret(name) or name in listed for name in names)


# -- who may see a model's data --------------------------------------------------------------


def can_view_model(user: Any, model: type[models.Model]) -> bool:
    """Django's view or change permission on ``model`` (superusers have every one)."""
    opts = model._meta
    return any(
        user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
        for action in ("view", "change")
    )
