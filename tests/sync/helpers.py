"""Shared pieces of the sync tests: a node-side sync stack and the exactly-once check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.config import CentralConfig
from edge.journal import head_public_b64, load_or_create_head_key
from simulators.invariants import exactly_once_in_order
from sync.keys import public_b64

TOKEN = "hn-gate-token-for-the-sync-tests-0001"  # the test gate HN's credential at central
TOKENS = {"HN": TOKEN}
PUBLISHER = "publisher-token-for-the-sync-tests-01"
MONITOR = "monitor-token-for-the-sync-tests-0001"
API_TOKENS = {"test-publisher": ("publisher", PUBLISHER), "test-monitor": ("monitor", MONITOR)}
AS_PUBLISHER = {"Authorization": f"Bearer {PUBLISHER}"}
AS_MONITOR = {"Authorization": f"Bearer {MONITOR}"}


def node_key(data_dir: Path) -> str:
    """The journal-head public key of the node whose data (journal) lives in `data_dir`, made if absent."""
    return head_public_b64(load_or_create_head_key(data_dir))


def enrolled(data_dir: Path, gate: str = "HN", token: str = TOKEN) -> dict[str, Any]:
    """CentralServer keyword arguments: `gate` enrolled with its token and the node's key, plus the test operators."""
    return {"tokens": {gate: token}, "head_keys": {gate: node_key(data_dir)}, "api_tokens": API_TOKENS}


def fast_config(url: str, public_key, **overrides) -> CentralConfig:
    values = dict(url=url, public_key=public_b64(public_key), token=TOKEN, upload_batch=200, backoff_initial_s=0.1,
                  backoff_max_s=1.0, request_timeout_s=2.0, down_after_s=4.0, feed_poll_s=1.0,
                  insecure_http=url.startswith("http://"))
    values.update(overrides)
    return CentralConfig(**values)


def assert_exactly_once_in_order(central_events: list[dict], journal_entries) -> None:
    """Central holds every journal event once, and per lane in arrival order == seq order."""
    problems = exactly_once_in_order(central_events, journal_entries)
    assert not problems, problems
