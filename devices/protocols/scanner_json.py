"""Decodes and encodes the container scanner's (NII, X-ray) JSON messages on MQTT (sans-I/O).

One message per scan event::

    {"event": "scan_started" | "scan_completed", "scan_id": "...", "lane": "...",
     "containers": ["CSQU3054383", ...], "verdict": "clear" | "suspect" | "pending",
     "image_ref": "..." | null, "timestamp": "2026-11-23T08:15:42Z"}

A scan starts with verdict ``pending`` (a started scan with any other verdict is refused; a missing
verdict on ``scan_started`` means pending). ``scan_completed`` must carry a verdict, and may still
say ``pending`` (scanned, image not yet analysed). ``containers`` may be missing or null (none
read yet); each number is folded like every identifier (`identifiers`), never corrected (the rules judge the
check digit). ``image_ref`` may be missing, null or empty (no image). The timestamp is ISO 8601
with a time zone (any offset, converted to UTC); a time without one is read in the profile's
`timezone` and refused when it names none; numbers and times outside 2000..2100 are refused.
Unknown extra fields are ignored.

A scan id, lane, container or image_ref holding a control, bidi or other hidden character is
refused (`identifiers.check_device_text`). Decoding never raises: anything the node cannot use
becomes a `FrameRejected` with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import Any

from devices.protocols.identifiers import check_device_text, normalise_container
from devices.readings import FrameRejected, ScanRead, ScanVerdict

MAX_PAYLOAD = 64 * 1024
"""Largest payload decoded, in bytes; larger ones are refused before parsing."""
MAX_ID_LENGTH = 64
"""Longest scan id and lane name accepted."""
MAX_CONTAINERS = 8
MAX_CONTAINER_LENGTH = 20
MAX_IMAGE_REF_LENGTH = 1024
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_RAW_SAMPLE = 256
_EVENTS = frozenset({"scan_started", "scan_completed"})
_VERDICTS = frozenset({"clear", "suspect", "pending"})


class ScanEvent(StrEnum):
    """What happened to the scan."""

    STARTED = "scan_started"
    COMPLETED = "scan_completed"


@dataclass(frozen=True)
class ScanMessage:
    """One scanner message: a scan started or completed, with the scanner's own UTC time."""

    event: ScanEvent
    scan_id: str
    lane: str
    containers: tuple[str, ...]
    verdict: ScanVerdict
    image_ref: str | None
    timestamp: datetime


def _identifier(message: dict[str, Any], field: str) -> str | FrameRejected:
    value = message.get(field)
    if value is None:
        return FrameRejected(f"missing {field}")
    if not isinstance(value, str):
        return FrameRejected(f"{field} is not a string: {type(value).__name__}")
    problem = check_device_text(field, value)
    if problem is not None:
        return FrameRejected(problem)
    text = value.strip()
    if not text:
        return FrameRejected(f"empty {field}")
    if len(text) > MAX_ID_LENGTH:
        return FrameRejected(f"{field} too long: {len(text)} characters (limit {MAX_ID_LENGTH})")
    if not text.isprintable():
        return FrameRejected(f"{field} holds a control character")
    return text


def _timestamp(value: Any, zone: tzinfo | None) -> datetime | str:
    if value is None:
        return "missing timestamp"
    if not isinstance(value, str):
        return f"bad timestamp of type {type(value).__name__}: expected an ISO 8601 string"
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return f"bad timestamp {value[:40]!r}: expected ISO 8601"
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        if zone is None:
            return f"timestamp {value[:40]!r} has no time zone (and the profile names none)"
        parsed = parsed.replace(tzinfo=zone)
    try:
        when = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return f"absurd timestamp {value[:40]!r}"
    if not EARLIEST <= when < LATEST:
        return f"absurd timestamp {value[:40]!r}: outside 2000..2100"
    return when


def decode_scanner_message(payload: bytes, zone: tzinfo | None = None) -> ScanMessage | FrameRejected:
    """Decode one scanner message into a `ScanMessage`, or a `FrameRejected` saying why not. Never raises.

    `zone` is the scanner's time zone from its profile: ISO times without a zone are read in it;
    without it they are refused.
    """
    try:
        data = bytes(payload)
    except Exception as exc:
        return FrameRejected(f"payload is not bytes: {type(exc).__name__}")
    raw = data[:_RAW_SAMPLE]
    try:
        result = _decode(data, zone)
    except Exception as exc:  # a codec bug must not kill the MQTT callback
        return FrameRejected(f"internal decoder error: {type(exc).__name__}: {exc}", raw)
    if isinstance(result, FrameRejected):
        return FrameRejected(result.reason, raw)
    return result


def _decode(data: bytes, zone: tzinfo | None) -> ScanMessage | FrameRejected:
    if len(data) > MAX_PAYLOAD:
        return FrameRejected(f"payload too large: {len(data)} bytes (limit {MAX_PAYLOAD})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return FrameRejected(f"payload is not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        message = json.loads(text)
    except RecursionError:
        return FrameRejected("invalid JSON: nested too deeply")
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python allows
        return FrameRejected(f"invalid JSON: {exc}"[:200])
    if not isinstance(message, dict):
        return FrameRejected(f"not a JSON object: got {type(message).__name__}")

    event_value = message.get("event")
    if not isinstance(event_value, str) or event_value not in _EVENTS:
        return FrameRejected(f"unknown event {event_value!r:.40}: expected scan_started or scan_completed")
    event = ScanEvent(event_value)

    scan_id = _identifier(message, "scan_id")
    if isinstance(scan_id, FrameRejected):
        return scan_id
    lane = _identifier(message, "lane")
    if isinstance(lane, FrameRejected):
        return lane

    verdict_value = message.get("verdict")
    if verdict_value is None and event is ScanEvent.STARTED:
        verdict_value = ScanVerdict.PENDING.value
    if not isinstance(verdict_value, str) or verdict_value not in _VERDICTS:
        return FrameRejected(f"unknown verdict {verdict_value!r:.40}: expected clear, suspect or pending")
    verdict = ScanVerdict(verdict_value)
    if event is ScanEvent.STARTED and verdict is not ScanVerdict.PENDING:
        return FrameRejected(f"scan_started with verdict {verdict.value}: a scan that just started is pending")

    containers_value = message.get("containers")
    if containers_value is None:
        containers_value = []
    if not isinstance(containers_value, list):
        return FrameRejected(f"containers is not a list: {type(containers_value).__name__}")
    if len(containers_value) > MAX_CONTAINERS:
        return FrameRejected(f"too many containers: {len(containers_value)} (limit {MAX_CONTAINERS})")
    containers = []
    for item in containers_value:
        if not isinstance(item, str):
            return FrameRejected(f"container is not a string: {type(item).__name__}")
        problem = check_device_text("container", item)
        if problem is not None:
            return FrameRejected(problem)
        number = normalise_container(item)
        if not number:
            return FrameRejected("empty container number")
        if len(number) > MAX_CONTAINER_LENGTH or not number.isascii() or not number.isalnum():
            return FrameRejected(f"container {item[:24]!r} is not a container number")
        containers.append(number)

    image_value = message.get("image_ref")
    if image_value is not None and not isinstance(image_value, str):
        return FrameRejected(f"image_ref is not a string: {type(image_value).__name__}")
    image_ref = image_value or None
    if image_ref is not None and (problem := check_device_text("image_ref", image_ref)) is not None:
        return FrameRejected(problem)
    if image_ref is not None and len(image_ref) > MAX_IMAGE_REF_LENGTH:
        return FrameRejected(f"image_ref too long: {len(image_ref)} characters (limit {MAX_IMAGE_REF_LENGTH})")

    when = _timestamp(message.get("timestamp"), zone)
    if isinstance(when, str):
        return FrameRejected(when)

    return ScanMessage(event, scan_id, lane, tuple(containers), verdict, image_ref, when)


def encode_scanner_message(msg: ScanMessage) -> bytes:
    """Return the scanner's JSON (UTF-8) for `msg`, the timestamp as ISO 8601 UTC with ``Z``.

    Raises ValueError for a naive timestamp or a started scan whose verdict is not pending.
    """
    if msg.timestamp.tzinfo is None or msg.timestamp.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    event, verdict = ScanEvent(msg.event), ScanVerdict(msg.verdict)
    if event is ScanEvent.STARTED and verdict is not ScanVerdict.PENDING:
        raise ValueError("a started scan is pending")
    document = {
        "event": event.value,
        "scan_id": msg.scan_id,
        "lane": msg.lane,
        "containers": list(msg.containers),
        "verdict": verdict.value,
        "image_ref": msg.image_ref,
        "timestamp": msg.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def scan_message_to_read(msg: ScanMessage, device_id: str, received_at: float) -> ScanRead:
    """Turn a decoded message into the driver's `ScanRead` (observed_at is the scanner's own UTC time)."""
    return ScanRead(
        device_id=device_id,
        scan_id=msg.scan_id,
        verdict=ScanVerdict(msg.verdict),
        containers=tuple(msg.containers),
        image_ref=msg.image_ref,
        completed=ScanEvent(msg.event) is ScanEvent.COMPLETED,
        observed_at=msg.timestamp.timestamp(),
        received_at=received_at,
    )
