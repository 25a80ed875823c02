"""What a purge is: a request for one backend (:class:`Purge`) and why it was asked for
(:class:`Cause`), copied onto each attempt row of the audit log."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from roan.context import current_user_id

if TYPE_CHECKING:
    from django.db import models

    from roan.backends.base import PurgeRequest


@dataclasses.dataclass(frozen=True, slots=True)
class Cause:
    """Why a purge was asked for: the trigger (a save, the admin, the API...), the rule and
    the object behind it, and the user acting."""

    trigger: str
    rule_id: int | None = None
    rule_name: str = ""
    content_type_id: int | None = None
    object_pk: str = ""
    object_repr: str = ""
    user_id: int | None = None

    @classmethod
    def now(cls, trigger: str, *, user_id: int | None = None, **fields: Any) -> Cause:
        """A cause for ``trigger``, naming ``user_id`` or else the user acting in this
        context."""
        return cls(trigger, user_id=current_user_id() if user_id is None else user_id, **fields)

    @classmethod
    def of_object(
        cls,
        trigger: str,
        obj: models.Model,
        *,
        using: str | None = None,
        user_id: int | None = None,
        **fields: Any,
    ) -> Cause:
        """A cause for ``trigger`` on ``obj``: its content type, primary key and
        ``str()``, and the user as :meth:`now` names them."""
        from django.contrib.contenttypes.models import ContentType

        types = ContentType.objects.db_manager(using) if using else ContentType.objects
        fields.setdefault("object_repr", object_repr(obj))
        return cls.now(
            trigger,
            user_id=user_id,
            content_type_id=types.get_for_model(obj).pk,
            object_pk=str(obj.pk) if obj.pk is not None else "",
            **fields,
        )


def object_repr(obj: models.Model) -> str:
    """``str(obj)`` for the log, bounded, never raising."""
    try:
        return str(obj)[:200]
    except Exception:
        return f"{type(obj).__name__} object ({obj.pk})"


@dataclasses.dataclass(frozen=True, slots=True)
class Purge:
    """A request for one backend, with its cause."""

    backend: str
    request: PurgeRequest
    cause: Cause
    #: Past the event's ``ROAN_MAX_URLS_PER_EVENT``: written with the change, sent after
    #: the response (or by the worker), never inside the editor's request.
    deferred: bool = False
    #: A tag on a backend that purges URLs only: one row, whose sender reads the tag's
    #: pages from the tag index and writes and sends a URL purge for each (see
    #: :func:`roan.backends.base.expanded_by_roan`). Always ``deferred`` too.
    expands: bool = False
