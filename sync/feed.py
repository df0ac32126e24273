"""The declaration feed on the edge: verify a signed batch from central, then apply it atomically.

A batch is `{"gate", "cursor_from", "cursor_to", "issued_at", "nonce", "declarations",
"revocations"}`, signed by central (Ed25519 over its canonical JSON). The node sends a fresh random
nonce with every pull and central signs it into the answer, so a batch is fresh for exactly one
request. It is refused — nothing of it applied, the refusal logged, counted and raised as an alarm
by the caller — when:

* the signature is missing or does not verify with the site's central key (forged or tampered);
* its nonce is not the one this pull sent (`FEED_REPLAY`: a captured batch played back, even an
  empty one at the current cursor, cannot keep the cache "fresh" or hide a revocation);
* it is for another gate;
* `cursor_from` is not the cursor this cache holds (replayed, out of order, or skipping changes);
* `issued_at` is older than that of the last accepted batch (replayed);
* `cursor_to` is below `cursor_from`, or a declaration is malformed or for another gate.

The cache's age counts from `issued_at`, the time central signed for this very request (never
the node's receive time; a central clock ahead of the node's counts as the node's now).

Revocations are `{"number", "version"}`: the stored declaration is re-stored as status
`cancelled` at that version, so the rules refuse it (DECLARATION_CANCELLED); amendments are
declarations with a higher version. Everything in a batch, and the new cursor, is written in ONE
SQLite transaction of the cache, so a lane never sees half a batch and a crash never advances the
cursor past changes it did not store.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from devices.protocols.identifiers import normalise_gate
from edge.cache import DeclarationCache
from edge.declarations import Declaration, DeclarationError, declaration_from_mapping
from sync.keys import verify

log = logging.getLogger(__name__)

_CURSOR, _ISSUED = "feed_cursor", "feed_issued_at"


class FeedRejected(ValueError):
    """A batch that must not be applied; `code` is machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def feed_position(cache: DeclarationCache) -> tuple[int, float]:
    """(cursor, issued_at of the last accepted batch) stored in the cache; (0, 0.0) at first."""
    rows = cache.meta(_CURSOR, _ISSUED)
    return int(rows.get(_CURSOR, 0)), float(rows.get(_ISSUED, 0.0))


def check_batch(message: Any, gate: str, public_key, cursor: int, last_issued: float, *,
                nonce: str | None) -> dict[str, Any]:
    """Return the batch when it may be applied; raise FeedRejected saying why not.

    `public_key` may be one key or several (during a rotation of central's key); `nonce` is the one
    the pull that fetched `message` sent (None: no pull asked for it, so it is refused as a replay).
    """
    if not isinstance(message, dict) or not isinstance(message.get("batch"), dict):
        raise FeedRejected("FEED_MALFORMED", "no batch in the answer")
    batch, signature = message["batch"], message.get("signature")
    if not isinstance(signature, str) or not signature:
        raise FeedRejected("FEED_UNSIGNED", "batch has no signature")
    keys = public_key if isinstance(public_key, list | tuple) else [public_key]
    if not any(verify(key, batch, signature) for key in keys):
        raise FeedRejected("FEED_BAD_SIGNATURE", "signature does not verify with central's key (forged or tampered)")
    if nonce is None or batch.get("nonce") != nonce:
        raise FeedRejected("FEED_REPLAY", "the batch does not carry the nonce this pull sent (a replayed answer)")
    batch_gate = batch.get("gate")
    if not isinstance(batch_gate, str) or normalise_gate(batch_gate) != normalise_gate(gate):
        raise FeedRejected("FEED_WRONG_GATE", f"batch is for gate {batch.get('gate')!r}, this is {gate!r}")
    try:
        cursor_from, cursor_to = int(batch["cursor_from"]), int(batch["cursor_to"])
        issued_at = float(batch["issued_at"])
        if not 0 <= issued_at < 1e11:
            raise ValueError("issued_at out of range")
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise FeedRejected("FEED_MALFORMED", f"bad cursor or issued_at: {exc}") from exc
    if cursor_from != cursor:
        raise FeedRejected("FEED_OUT_OF_ORDER", f"batch starts at cursor {cursor_from}, the cache is at {cursor} "
                                                "(replayed or out of order)")
    if cursor_to < cursor_from:
        raise FeedRejected("FEED_MALFORMED", f"cursor_to {cursor_to} below cursor_from {cursor_from}")
    if issued_at < last_issued:
        raise FeedRejected("FEED_REPLAYED", f"batch issued at {issued_at}, before the last accepted ({last_issued})")
    return batch


def parse_batch(batch: dict[str, Any], gate: str) -> tuple[list[Declaration], list[tuple[str, int]]]:
    try:
        declarations = [declaration_from_mapping(row) for row in batch.get("declarations") or []]
        revocations = [(str(r["number"]), int(r["version"])) for r in batch.get("revocations") or []]
    except (DeclarationError, KeyError, TypeError, ValueError) as exc:
        raise FeedRejected("FEED_MALFORMED", f"bad declaration or revocation: {exc}") from exc
    for declaration in declarations:
        if normalise_gate(declaration.gate) != normalise_gate(gate):
            raise FeedRejected("FEED_WRONG_GATE", f"declaration {declaration.number} is for gate {declaration.gate}")
    return declarations, revocations


def apply_batch(cache: DeclarationCache, batch: dict[str, Any], gate: str, now: datetime | None = None) -> int:
    """Apply a checked batch and advance the cursor in one cache transaction; return changes applied.

    The cache counts as refreshed at the batch's signed `issued_at` (or `now`, if central's clock
    runs ahead of ours), never at the time the batch arrived.
    """
    declarations, revocations = parse_batch(batch, gate)
    issued = float(batch["issued_at"])
    meta = {_CURSOR: str(int(batch["cursor_to"])), _ISSUED: repr(issued)}
    refreshed = min(datetime.fromtimestamp(issued, UTC), now or datetime.now(UTC))
    return cache.apply_feed(declarations, revocations, meta, refreshed)
