"""How fast roan sends a backlog of purges to nginx, with its bookkeeping, against
roan 0.1's way and against wrk on the same nginx.

    .venv/bin/python bench/dispatch_throughput.py [--n 10000] [--rounds 3]
        [--baseline-n 1000] [--batch 1000] [--wrk-seconds 3] [--database-url URL]
        [--mysql-url URL]

One nginx (example/deploy/nginx.conf, the cache purge module) on loopback serves every
setup, in interleaved rounds:

    roan (sqlite)      n pending attempt rows in a fresh SQLite database, sent the way
                       roan_dispatch sends them: list the due ids, then claim a batch,
                       send it in two halves, record every outcome on its row (the next
                       batch claimed, and one half recorded while the other is sent);
                       until nothing is due. Timed from the first query to the last row
                       written.
    roan (postgresql)  the same on a fresh PostgreSQL database (--database-url or
                       DATABASE_URL)
    roan (mariadb)     the same on a fresh MariaDB or MySQL database (--mysql-url or
                       MYSQL_URL)
    transport only     NginxBackend.purge() on the same URLs, no database: roan's ceiling
    roan 0.1           requests.get() per URL, a new connection each, one after another,
                       no bookkeeping (roan 0.1 had none); over --baseline-n URLs
    wrk                wrk -t2 -c8 on one purge URL: what nginx itself can answer

The URLs are not cached, so nginx answers 404 (recorded as not_cached): the cost measured
is the purge request and its bookkeeping, not nginx deleting cache files. Prints the
median purges per second of each setup, its ratio to roan 0.1 and its share of "transport
only" (how much of the ceiling roan reaches with its rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import admin_sql, mysql_admin_sql, mysql_database, postgres_database, run_worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def worker(n: int, batch: int, location: str, database: dict[str, object]) -> dict[str, float]:
    """Runs in a child process: migrate, write ``n`` pending rows, time sending them."""
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "roan"],
        DATABASES={"default": database},
        USE_TZ=True,
        SECRET_KEY="bench",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ROAN_BACKENDS={
            "nginx": {"BACKEND": "roan.backends.nginx.NginxBackend", "LOCATION": location}
        },
    )
    django.setup()
    from django.core.management import call_command

    from roan.backends import get_backend
    from roan.models import PurgeAttempt
    from roan.outbox.sender import send_ids

    call_command("migrate", verbosity=0)
    node = get_backend("nginx").nodes[0]

    def backlog(tag: str, count: int) -> None:
        rows = [
            {"backend": "nginx", "node": node, "target": f"/bench/{tag}/{i}", "trigger": "command"}
            for i in range(count)
        ]
        PurgeAttempt.objects.write(rows)

    def drain() -> int:
        # As roan_dispatch does: the due ids, then send_ids() a batch at a time (the next
        # batch claimed while this one is sent), until nothing is due.
        handled = 0
        while due := list(PurgeAttempt.objects.due().order_by("id").values_list("pk", flat=True)):
            handled += len(send_ids(due, batch=batch))
        return handled

    backlog("warm", min(n, 1000))  # connections, statement caches, imports
    drain()
    backlog(uuid.uuid4().hex[:8], n)
    start = time.perf_counter()
    handled = drain()
    elapsed = time.perf_counter() - start
    answered = PurgeAttempt.objects.filter(status__in=["ok", "not_cached"]).count()
    return {"per_s": handled / elapsed, "handled": handled, "answered": answered}


def sqlite_database(tmp: Path) -> dict[str, object]:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp / f"{uuid.uuid4().hex}.db")}


def run_roan(engine: str, args: argparse.Namespace, location: str, tmp: Path) -> float:
    name = f"roan_bench_dispatch_{uuid.uuid4().hex[:8]}"
    if engine == "postgresql":
        admin_sql(args.database_url, f'CREATE DATABASE "{name}"')
        database = postgres_database(args.database_url, name)
    elif engine == "mariadb":
        mysql_admin_sql(args.mysql_url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        database = mysql_database(args.mysql_url, name)
    else:
        database = sqlite_database(tmp)
    try:
        worker_args = ["--worker", location, "--n", str(args.n), "--batch", str(args.batch)]
        result = run_worker(__file__, worker_args, database)
    finally:
        if engine == "postgresql":
            admin_sql(args.database_url, f'DROP DATABASE IF EXISTS "{name}"')
        elif engine == "mariadb":
            mysql_admin_sql(args.mysql_url, f"DROP DATABASE IF EXISTS `{name}`")
    # A benchmark that lost purges would be measuring the wrong thing.
    if result["handled"] != args.n or result["answered"] < args.n:
        raise SystemExit(f"roan ({engine}): only {result['answered']} of {args.n} answered")
    return float(result["per_s"])


def run_transport(n: int, location: str) -> float:
    from roan.backends.base import PurgeRequest
    from roan.backends.nginx import NginxBackend

    backend = NginxBackend("nginx", {"LOCATION": location})
    tag = uuid.uuid4().hex[:8]
    requests_ = [PurgeRequest("url", f"/bench/{tag}/{i}") for i in range(n)]
    try:
        backend.purge(backend.nodes[0], requests_[:100])  # open the connection
        start = time.perf_counter()
        for first in range(0, n, backend.batch_size):
            chunk = requests_[first : first + backend.batch_size]
            results = backend.purge(backend.nodes[0], chunk)
            if any(r.http_status != 404 for r in results):
                raise SystemExit("transport: a purge was not answered")
        return n / (time.perf_counter() - start)
    finally:
        backend.close()


def run_roan_0_1(n: int, location: str) -> float:
    """roan 0.1's purge(): ``requests.get(ROAN_PURGE_URL + url)`` per URL."""
    import requests

    tag = uuid.uuid4().hex[:8]
    start = time.perf_counter()
    for i in range(n):
        response = requests.get(f"{location}/bench/{tag}/{i}", timeout=5)
        if response.status_code != 404:
            raise SystemExit(f"roan 0.1: HTTP {response.status_code}")
    return n / (time.perf_counter() - start)


def run_wrk(seconds: int, location: str) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{seconds}s", f"{location}/bench/wrk"],
        check=True, capture_output=True, text=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if not match or "Non-2xx" not in out:  # every answer must be nginx's 404 "not cached"
        raise SystemExit(f"wrk: unexpected output:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="attempts per roan run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-n", type=int, default=1000, help="URLs per roan 0.1 run")
    parser.add_argument("--batch", type=int, default=1000, help="attempts claimed per send()")
    parser.add_argument("--wrk-seconds", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--mysql-url", default=os.environ.get("MYSQL_URL", ""))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.n, args.batch, args.worker, json.loads(args.db))))
        return
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    import django

    from tests.support.caches import Origin, start_nginx

    setups = ["roan (sqlite)"]
    if args.database_url:
        setups.append("roan (postgresql)")
    if args.mysql_url:
        setups.append("roan (mariadb)")
    setups += ["transport only", "roan 0.1", "wrk"]
    figures: dict[str, list[float]] = {s: [] for s in setups}
    origin = Origin()
    nginx = start_nginx(origin.port)
    location = f"{nginx.url}/purge"
    try:
        with tempfile.TemporaryDirectory(prefix="roan-bench-") as tmp:
            for _ in range(args.rounds):  # interleaved: drift on a shared machine hits all
                figures["roan (sqlite)"].append(run_roan("sqlite", args, location, Path(tmp)))
                if args.database_url:
                    figures["roan (postgresql)"].append(
                        run_roan("postgresql", args, location, Path(tmp))
                    )
                if args.mysql_url:
                    figures["roan (mariadb)"].append(run_roan("mariadb", args, location, Path(tmp)))
                figures["transport only"].append(run_transport(args.n, location))
                figures["roan 0.1"].append(run_roan_0_1(args.baseline_n, location))
                figures["wrk"].append(run_wrk(args.wrk_seconds, location))
    finally:
        nginx.close()
        origin.close()
    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        f"{os.cpu_count()} CPUs; nginx on loopback; {args.rounds} rounds, medians"
    )
    print(f"roan: {args.n} attempts, {args.batch} claimed per send(); roan 0.1: {args.baseline_n}")
    base = statistics.median(figures["roan 0.1"])
    transport = statistics.median(figures["transport only"])
    print(f"{'setup':<18} {'purges/s':>10} {'x roan 0.1':>11} {'of transport':>13}")
    for setup in setups:
        per_s = statistics.median(figures[setup])
        print(f"{setup:<18} {per_s:10.0f} {per_s / base:11.1f} {per_s / transport:12.0%}")


if __name__ == "__main__":
    main()
