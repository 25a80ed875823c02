"""roan's own signals.

``rules_changed`` is sent whenever purge rules are written in bulk (a queryset's
``update()``/``delete()``, ``bulk_create()``/``bulk_update()``), which Django's model
signals do not cover; the rule index (:mod:`roan.rules.index`) listens and reloads the rules
once the transaction commits. Storage thus never calls the index above it.

``backend_resumed`` is sent when a paused backend is resumed (:func:`roan.pauses.resume`),
after commit, with the ids of the attempts that queued meanwhile; the pipeline dispatches
them (inline or to a task), so the pause switches need not know how roan sends.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent with ``sender`` the rule model and ``using`` the database alias written to.
rules_changed = Signal()
#: Sent with ``alias``, ``ids`` (at most 1,000 a time) and ``using``.
backend_resumed = Signal()
