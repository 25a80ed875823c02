"""The rate limit holds across processes when ROAN_CACHE is a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.db import connection

from roan.backends import build_backend
from roan.backends.options import SLOTS
from roan.models import PurgeAttempt

ROOT = Path(__file__).resolve().parent.parent

# Each worker is its own process: its own Django, its own connections, one shared Redis.
SETUP = """
import json, sys, time
import django
django.setup()
from django.test.utils import override_settings
override_settings(
    CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": sys.argv[1]}},
    ROAN_BACKENDS=json.loads(sys.argv[2]),
).enable()
"""

TAKER = (
    SETUP
    + """
import os, pathlib
from roan.backends.options import RateLimit
from roan.outbox.limits import take
rate, burst = map(float, sys.argv[3:5])
sync = pathlib.Path(sys.argv[5])
limit = RateLimit(rate, burst)
grants = []
# Ready, then wait for the test to name the window: a loaded machine may take seconds to
# start Django, and a fixed start time would leave a late worker outside the window.
(sync / f"ready-{os.getpid()}").touch()
while not (go := sync / "go").exists():
    time.sleep(0.005)
start, stop = map(float, go.read_text().split())
while time.time() < start:
    time.sleep(0.005)
while (now := time.time()) < stop:
    if take("cdn", limit, 1, now)[0]:
        grants.append(now)
    time.sleep(0.002)
print(json.dumps(grants))
"""
)

SENDER = (
    SETUP
    + """
from roan.models import PurgeAttempt
from roan.outbox.sender import send
deadline = time.monotonic() + 60
while PurgeAttempt.objects.filter(status="pending").exists() and time.monotonic() < deadline:
    send(None, limit=5)
    time.sleep(0.02)
"""
)


def start_workers(script: str, count: int, *args: str) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env["ROAN_DB_NAME"] = str(connection.settings_dict["NAME"])
    return [
        subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


def outputs_of(procs: list[subprocess.Popen[str]]) -> list[str]:
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out)
    return outputs


def run_workers(script: str, count: int, *args: str) -> list[str]:
    return outputs_of(start_workers(script, count, *args))


def assert_bucket_held(times: list[float], rate: float, burst: float, slack: float) -> None:
    """No stretch of time saw more sends than the bucket allows (BURST + RATE * length,
    plus one refill step and one token for a sender that read the clock just before)."""
    times = sorted(times)
    step = burst / rate / SLOTS
    for i in range(len(times)):
        for j in range(i, len(times)):
            allowed = burst + rate * (times[j] - times[i] + slack + step) + 1
            assert j - i + 1 <= allowed, (i, j, times[j] - times[i])


def test_three_processes_share_one_bucket(redis_url, tmp_path: Path) -> None:
    rate, burst = 20.0, 5.0
    procs = start_workers(TAKER, 3, redis_url, "{}", str(rate), str(burst), str(tmp_path))
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 3:
        assert all(p.poll() is None for p in procs), outputs_of(procs)
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.02)
    start = time.time() + 0.2
    (tmp_path / "go.tmp").write_text(f"{start} {start + 1.5}")
    (tmp_path / "go.tmp").rename(tmp_path / "go")  # whole, or not at all
    outputs = outputs_of(procs)
    per_process = [json.loads(out) for out in outputs]
    grants = [t for times in per_process for t in times]
    # Three separate buckets would give about 3 * (5 + 20 * 1.5) = 105 tokens.
    assert burst < len(grants) <= burst + rate * 1.5 + 2
    # A grant is timed by the clock its process read before asking; on a busy machine a
    # process can stall between that reading and its increment, and a sender in the next
    # slot has not seen that increment yet. Two refill steps of slack allow for that; three
    # buckets instead of one would still be far outside.
    assert_bucket_held(grants, rate, burst, slack=2 * burst / rate / SLOTS)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_sending_processes_keep_to_one_rate_on_a_real_nginx(redis_url, nginx_cache) -> None:
    rate, burst, count = 10.0, 4.0, 24
    backends = {
        "cdn": {
            "BACKEND": "roan.backends.nginx.NginxBackend",
            "LOCATION": f"{nginx_cache.url}/purge",
            "RATE_LIMIT": {"RATE": rate, "BURST": burst},
        }
    }
    paths = [f"/rl/{uuid.uuid4().hex[:8]}/{i}" for i in range(count)]
    for path in paths:
        requests.get(f"{nginx_cache.url}{path}", timeout=5)
    [node] = build_backend("cdn", backends["cdn"]).nodes
    PurgeAttempt.objects.write(
        [{"backend": "cdn", "node": node, "target": p, "trigger": "api"} for p in paths]
    )

    run_workers(SENDER, 2, redis_url, json.dumps(backends))

    done = list(PurgeAttempt.objects.all())
    assert [a.status for a in done] == ["ok"] * count, {a.error for a in done}
    assert all(a.tries == 1 for a in done)  # waiting for a token is not a try
    for path in paths:
        response = requests.get(f"{nginx_cache.url}{path}", timeout=5)
        assert response.headers["X-Cache-Status"] == "MISS"
    # finished_at is stamped after the HTTP call and the row update: allow for that.
    assert_bucket_held([a.finished_at.timestamp() for a in done], rate, burst, slack=0.5)
