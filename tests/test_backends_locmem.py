from __future__ import annotations

from roan.backends import locmem
from roan.backends.base import PurgeRequest
from roan.backends.locmem import LocMemBackend


def test_records_what_it_is_asked_to_send(outbox) -> None:
    b = LocMemBackend("mem", {"NODES": ["a", "b"]})
    assert b.nodes == ("a", "b")
    [result] = b.purge("b", [PurgeRequest("url", "/x")])
    assert result.status == "ok"
    assert locmem.outbox == [("b", PurgeRequest("url", "/x"))]


def test_can_play_a_failing_cache(outbox) -> None:
    [refused] = LocMemBackend("mem", {"FAIL": True}).purge("default", [PurgeRequest("url", "/x")])
    assert (refused.status, refused.error) == ("failed", "connection refused")
    [limited] = LocMemBackend("mem", {"FAIL": 429}).purge("default", [PurgeRequest("url", "/x")])
    assert (limited.status, limited.http_status, limited.retryable) == ("failed", 429, True)
    [denied] = LocMemBackend("mem", {"FAIL": 403}).purge("default", [PurgeRequest("url", "/x")])
    assert denied.retryable is False
