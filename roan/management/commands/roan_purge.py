from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from roan import api, context
from roan.backends.base import purges_everything
from roan.conf import roan_settings
from roan.outbox.outcome import outcome, outcome_parts
from roan.rules.targets import parse_target


class Command(BaseCommand):
    help = (
        "Purge URLs, prefixes or tags, one object (app_label.Model PK), or everything on "
        "one backend. Attempts are recorded with trigger 'command'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("targets", nargs="*", help="Paths or http(s) URLs (or tags, prefixes).")
        parser.add_argument(
            "--kind",
            choices=["url", "prefix", "tag"],
            default="url",
            help="A prefix of / purges everything: it needs --backend, as --all does.",
        )
        parser.add_argument(
            "--backend", action="append", dest="backends", help="Only this alias (repeatable)."
        )
        parser.add_argument(
            "--object",
            nargs=2,
            metavar=("MODEL", "PK"),
            help="Purge what the rules give for one object.",
        )
        parser.add_argument(
            "--all", action="store_true", help="Purge everything (needs --backend)."
        )

    def handle(
        self,
        *args: Any,
        targets: list[str],
        kind: str,
        backends: list[str] | None,
        object: list[str] | None,
        all: bool,
        **options: Any,
    ) -> None:
        known = set(roan_settings.BACKENDS)
        for alias in backends or ():
            if alias not in known:
                raise CommandError(
                    f"unknown backend {alias!r}; configured: {', '.join(sorted(known))}"
                )
        with context.collect_written() as ids, transaction.atomic():
            if all:
                if not backends:
                    raise CommandError(
                        "--all needs --backend: purging everything everywhere is too wide."
                    )
                written = api.purge_urls([], backends=backends, kind="all", trigger="command")
            elif object:
                label, pk = object
                try:
                    model = apps.get_model(label)
                except (LookupError, ValueError) as exc:
                    raise CommandError(f"no model {label!r}") from exc
                try:
                    obj = model._default_manager.get(pk=pk)
                except model.DoesNotExist as exc:
                    raise CommandError(f"no {label} with pk {pk!r}") from exc
                except (ValueError, TypeError, ValidationError) as exc:
                    # ``abc`` for an integer key, a malformed UUID...
                    raise CommandError(f"{pk!r} is not a pk of {label}") from exc
                written = api.purge_object(obj, trigger="command")
            elif targets:
                try:
                    requests = [parse_target(target, kind) for target in targets]
                except ValueError as exc:
                    raise CommandError(str(exc)) from exc
                if not backends and any(purges_everything(r) for r in requests):
                    # A prefix of / is --all by another name: as wide, and refused alike.
                    raise CommandError(
                        "a prefix of / purges everything; that needs --backend: purging "
                        "everything everywhere is too wide."
                    )
                try:
                    written = api.purge_urls(
                        targets, backends=backends, kind=kind, trigger="command"
                    )
                except ValueError as exc:
                    raise CommandError(str(exc)) from exc
            else:
                raise CommandError("give URLs, --object MODEL PK, or --all --backend ALIAS")
        # The block has committed: with inline dispatch the attempts are sent by now.
        found = outcome(ids, ids.recorded)
        parts = outcome_parts(found) or ["nothing to purge"]
        summary = f"roan_purge: {written} attempt(s) recorded: {', '.join(parts)}."
        if found.troubled and not (found.sent or found.pending):
            # Nothing could be sent: a script or cron job must see that.
            raise CommandError(summary)
        self.stdout.write(summary)
