"""roan's own signals.

``rules_changed`` is sent whenever purge rules are written in bulk (a queryset's
``update()``/``delete()``, ``bulk_create()``/``bulk_update()``), which Django's model
signals do not cover; the rule index (:mod:`roan.rules`) listens and reloads the rules
once the transaction commits. Storage thus never calls the index above it.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent with ``sender`` the rule model and ``using`` the database alias written to.
rules_changed = Signal()
