"""What a rule's ``schedule_fields`` add to an editor's save (roan.outbox.schedule).

    .venv/bin/python bench/scheduled_saves.py [--n 300] [--rounds 5]

One process, a fresh SQLite database (the test settings, a LocMemBackend: no network),
one rule with two templates on the model saved. Two setups in interleaved rounds:

    plain       the rule without schedule_fields
    scheduled   the same rule with ``schedule_fields = "publish_at, expires_at"``; every
                save moves ``publish_at`` (an hour ahead, a second later each time), so
                each save cancels what the last one scheduled and schedules anew

The workload: load the object, change its title and date, save it, in autocommit and in
``atomic()`` (as the admin saves). Prints the median ms per save of each setup and mode,
the ratio of "scheduled" to "plain" in each round (median and range) and the statements
per save.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    scratch = tempfile.mkdtemp(prefix="roan-bench-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["ROAN_SQLITE_TEST_NAME"] = str(Path(scratch) / "db.sqlite3")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connection, reset_queries, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from roan.models import PurgeAttempt, PurgeRule
    from roan.rules import index as rules
    from tests.testapp.models import Event

    settings.DATABASES["default"]["NAME"] = os.environ["ROAN_SQLITE_TEST_NAME"]
    call_command("migrate", verbosity=0, run_syncdb=True)
    rule = PurgeRule.objects.create(
        name="events",
        content_type=ContentType.objects.get_for_model(Event),
        templates="/events/\n/events/{slug}/",
    )
    start = timezone.now() + datetime.timedelta(hours=1)
    event = Event.objects.create(title="E", slug="e", publish_at=start)
    step = 0

    def saves(n: int, atomic: bool) -> tuple[float, float]:
        nonlocal step
        times = []
        reset_queries()
        with CaptureQueriesContext(connection) as queries:
            for _ in range(n):
                step += 1
                began = time.perf_counter()
                with transaction.atomic() if atomic else contextlib.nullcontext():
                    obj = Event.objects.get(pk=event.pk)
                    obj.title = f"E {step}"
                    obj.publish_at = start + datetime.timedelta(seconds=step)
                    obj.save()
                times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times), len(queries) / n

    def use(schedule: str) -> None:
        PurgeRule.objects.filter(pk=rule.pk).update(schedule_fields=schedule)
        rules.invalidate()

    for mode in ("autocommit", "atomic"):
        results: dict[str, list[tuple[float, float]]] = {"plain": [], "scheduled": []}
        for _ in range(args.rounds):
            for setup, schedule in (("plain", ""), ("scheduled", "publish_at, expires_at")):
                use(schedule)
                results[setup].append(saves(args.n, mode == "atomic"))
        pairs = zip(results["plain"], results["scheduled"], strict=True)
        ratios = [s[0] / p[0] for p, s in pairs]
        for setup, rounds in results.items():
            ms = statistics.median(r[0] for r in rounds)
            sql = statistics.median(r[1] for r in rounds)
            print(f"{mode:10} {setup:10} {ms:7.3f} ms/save  {sql:5.1f} statements/save")
        print(
            f"{mode:10} scheduled / plain: {statistics.median(ratios):.2f} "
            f"(rounds {min(ratios):.2f}..{max(ratios):.2f})"
        )
    pending = PurgeAttempt.objects.filter(trigger="scheduled", status="pending").count()
    print(f"{pending} scheduled attempt(s) pending at the end (one save's worth)")


if __name__ == "__main__":
    main()
