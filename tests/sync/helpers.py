"""Shared pieces of the sync tests: a node-side sync stack and the exactly-once check."""

from __future__ import annotations

from edge.config import CentralConfig
from sync.keys import public_b64

TOKEN = "hn-gate-token-for-the-sync-tests-0001"  # the test gate HN's credential at central
TOKENS = {"HN": TOKEN}


def fast_config(url: str, public_key, **overrides) -> CentralConfig:
    values = dict(url=url, public_key=public_b64(public_key), token=TOKEN, upload_batch=200, backoff_initial_s=0.1,
                  backoff_max_s=1.0, request_timeout_s=2.0, down_after_s=4.0, feed_poll_s=1.0)
    values.update(overrides)
    return CentralConfig(**values)


def assert_exactly_once_in_order(central_events: list[dict], journal_entries) -> None:
    """Central holds every journal event once, and per lane in arrival order == seq order."""
    ids = [e["event_id"] for e in central_events]
    assert len(ids) == len(set(ids)), "duplicate events at central"
    expected = {e.event_id for e in journal_entries}
    missing = expected - set(ids)
    assert not missing, f"{len(missing)} events never reached central"
    assert set(ids) == expected
    by_lane: dict[str | None, list[int]] = {}
    for event in central_events:  # arrival order
        by_lane.setdefault(event["lane"], []).append(event["seq"])
    for lane, seqs in by_lane.items():
        assert seqs == sorted(seqs), f"lane {lane}: events arrived out of order"
