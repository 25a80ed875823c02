"""LocMemBackend: records instead of sending, and can play a failing cache."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from roan.backends import locmem
from roan.backends.base import KINDS, PurgeRequest
from roan.backends.locmem import LocMemBackend


def test_records_what_it_is_asked_to_send(outbox) -> None:
    backend = LocMemBackend("mem", {})
    assert backend.nodes == ("default",)
    assert backend.capabilities == set(KINDS)
    requests = [PurgeRequest(kind, "/x" if kind != "all" else "") for kind in KINDS]
    results = backend.purge("default", requests)
    assert [(r.status, r.http_status) for r in results] == [("ok", 200)] * len(KINDS)
    assert all(r.latency_ms is not None for r in results)
    assert locmem.outbox == [("default", r) for r in requests]


def test_nodes_for_fan_out_tests(outbox) -> None:
    backend = LocMemBackend("mem", {"NODES": ["a", "b"]})
    assert backend.nodes == ("a", "b")
    for node in backend.nodes:
        backend.purge(node, [PurgeRequest("url", "/x")])
    assert [node for node, _ in locmem.outbox] == ["a", "b"]


def test_can_play_a_failing_cache(outbox) -> None:
    def one(fail: object):
        [result] = LocMemBackend("mem", {"FAIL": fail}).purge("default", [PurgeRequest("url", "/")])
        return result

    down = one(True)
    assert (down.status, down.http_status, down.error, down.retryable) == (
        "failed",
        None,
        "connection refused",
        True,
    )
    limited = one(429)
    assert (limited.status, limited.http_status, limited.retryable) == ("failed", 429, True)
    denied = one(403)
    assert (denied.status, denied.retryable) == ("failed", False)
    assert "allow list" in denied.error
    assert one(404).status == "not_cached"
    assert one(False).status == "ok"
    assert len(locmem.outbox) == 5  # failing or not, every request is recorded


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"FAIL": "yes"}, "['FAIL'] must be True/False or an HTTP error status"),
        ({"FAIL": 200}, "['FAIL'] must be True/False or an HTTP error status"),
        ({"NODES": []}, "['NODES'] must be distinct names"),
        ({"NODES": ["a", "a"]}, "['NODES'] must be distinct names"),
        ({"URL": "x"}, "unknown option(s) URL"),
    ],
)
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        LocMemBackend("mem", options)
    assert message in str(info.value)
    assert "'mem'" in str(info.value)
