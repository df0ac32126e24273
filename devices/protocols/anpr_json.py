"""Decodes and encodes the JSON plate results ANPR cameras publish over MQTT (sans-I/O).

Vendors name their fields differently, so field names come from the device profile
(`AnprFields`). A field name may be a dotted path into nested objects (`result.plate.text`); a
numeric part indexes a list (`results.0.plate`). A literal top-level key that contains dots is
found first.

Decoding never raises: anything the node cannot use becomes a `FrameRejected` with the reason.
A plate or camera id holding a control, bidi or other hidden character (`identifiers`) is refused.
Confidence is a fraction 0..1; a camera that reports percent (a value above 1, up to 100) is
scaled down. Timestamps are epoch seconds (epoch milliseconds are recognised by their size) or
ISO 8601 strings with a time zone (an ISO time without one only when the profile names the camera's
zone, `timezone:`); times outside 2000..2100 are refused as absurd. No clock is
read here: "absurd" is a fixed window, not a distance from now.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from devices.protocols.identifiers import check_device_text
from devices.readings import FrameRejected

MAX_PAYLOAD = 64 * 1024
"""Largest payload decoded, in bytes; larger ones are refused before parsing."""
MAX_PLATE_LENGTH = 32
MAX_CAMERA_ID_LENGTH = 64
EARLIEST_TIMESTAMP = 946_684_800.0  # 2000-01-01T00:00:00Z
LATEST_TIMESTAMP = 4_102_444_800.0  # 2100-01-01T00:00:00Z
_RAW_SAMPLE = 256  # bytes of a refused payload kept in the FrameRejected
_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
_INDEX = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class AnprFields:
    """Where a camera vendor puts each value in its JSON (dotted paths reach nested objects)."""

    plate: str = "plate"
    confidence: str = "confidence"
    timestamp: str = "timestamp"
    camera: str = "camera_id"


@dataclass(frozen=True)
class AnprResult:
    """One plate result: plate as sent (stripped), confidence 0..1, epoch seconds, camera id."""

    plate: str
    confidence: float
    timestamp: float | None = None
    camera_id: str | None = None


_MISSING = object()


def _lookup(message: dict[str, Any], path: str) -> Any:
    """Return the value at `path` (literal key first, then the dotted walk), or `_MISSING`."""
    if path in message:
        return message[path]
    current: Any = message
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and _INDEX.fullmatch(part) and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _as_number(value: Any) -> float | None:
    """A float from a JSON number or a numeric string (an integer too big gives inf); None otherwise.

    Bools are not numbers. The result may be inf or NaN (JSON `Infinity`, `NaN`): callers check.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > 64 or not _NUMBER.fullmatch(value):
            return None
    elif not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # only ints overflow here
    except ValueError:
        return None


def _parse_timestamp(value: Any, zone: tzinfo | None = None) -> float | str:
    """Epoch seconds from a number or an ISO 8601 string; a reason string when it cannot be used.

    An ISO time without a zone is read in `zone` (the profile's `timezone`), and refused without one.
    """
    number = _as_number(value)
    if number is None and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return f"bad timestamp {value[:40]!r}: expected ISO 8601 or epoch seconds"
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            if zone is None:
                return f"timestamp {value[:40]!r} has no time zone (and the profile names none)"
            parsed = parsed.replace(tzinfo=zone)
        try:
            number = parsed.timestamp()
        except (OverflowError, ValueError):
            return f"absurd timestamp {value[:40]!r}"
    if number is None:
        return f"bad timestamp of type {type(value).__name__}: expected ISO 8601 or epoch seconds"
    if math.isnan(number):
        return "bad timestamp NaN"
    if EARLIEST_TIMESTAMP * 1000 <= number < LATEST_TIMESTAMP * 1000:
        number /= 1000.0  # epoch milliseconds
    if not EARLIEST_TIMESTAMP <= number < LATEST_TIMESTAMP:
        return f"absurd timestamp {value!r:.40}: outside 2000..2100"
    return number


def decode_anpr_message(payload: bytes, fields: AnprFields = AnprFields(),
                        zone: tzinfo | None = None) -> AnprResult | FrameRejected:
    """Decode one camera message into an `AnprResult`, or a `FrameRejected` saying why not. Never raises.

    `zone` is the camera's time zone from its profile: ISO times without a zone are read in it; without
    it they are refused.
    """
    try:
        return _decode(payload, fields, zone)
    except Exception as exc:  # a codec bug must not kill the MQTT callback
        try:
            raw = bytes(payload[:_RAW_SAMPLE])
        except Exception:
            raw = b""
        return FrameRejected(f"internal decoder error: {type(exc).__name__}: {exc}", raw)


def _decode(payload: bytes, fields: AnprFields, zone: tzinfo | None) -> AnprResult | FrameRejected:
    data = bytes(payload)
    raw = data[:_RAW_SAMPLE]
    if len(data) > MAX_PAYLOAD:
        return FrameRejected(f"payload too large: {len(data)} bytes (limit {MAX_PAYLOAD})", raw)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return FrameRejected(f"payload is not UTF-8: {exc.reason} at byte {exc.start}", raw)
    try:
        message = json.loads(text)
    except RecursionError:
        return FrameRejected("invalid JSON: nested too deeply", raw)
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python allows
        return FrameRejected(f"invalid JSON: {exc}"[:200], raw)
    if not isinstance(message, dict):
        return FrameRejected(f"not a JSON object: got {type(message).__name__}", raw)

    plate = _lookup(message, fields.plate)
    if plate is _MISSING or plate is None:
        return FrameRejected(f"missing plate field {fields.plate!r}", raw)
    if not isinstance(plate, str):
        return FrameRejected(f"plate field {fields.plate!r} is not a string: {type(plate).__name__}", raw)
    problem = check_device_text(f"plate field {fields.plate!r}", plate)
    if problem is not None:
        return FrameRejected(problem, raw)
    plate = plate.strip()
    if not plate:
        return FrameRejected(f"empty plate in field {fields.plate!r}", raw)
    if len(plate) > MAX_PLATE_LENGTH:
        return FrameRejected(f"plate too long: {len(plate)} characters (limit {MAX_PLATE_LENGTH})", raw)

    confidence_value = _lookup(message, fields.confidence)
    if confidence_value is _MISSING or confidence_value is None:
        return FrameRejected(f"missing confidence field {fields.confidence!r}", raw)
    confidence = _as_number(confidence_value)
    if confidence is None or math.isnan(confidence):
        return FrameRejected(f"non-numeric confidence {confidence_value!r:.40}", raw)
    if confidence < 0 or confidence > 100:
        return FrameRejected(f"confidence {confidence!r} out of range: expected 0..1 or 0..100 percent", raw)
    if confidence > 1:
        confidence /= 100.0

    timestamp: float | None = None
    stamp_value = _lookup(message, fields.timestamp)
    if stamp_value is not _MISSING and stamp_value is not None:
        parsed = _parse_timestamp(stamp_value, zone)
        if isinstance(parsed, str):
            return FrameRejected(parsed, raw)
        timestamp = parsed

    camera_id: str | None = None
    camera_value = _lookup(message, fields.camera)
    if camera_value is not _MISSING and camera_value is not None:
        if isinstance(camera_value, bool) or not isinstance(camera_value, str | int):
            return FrameRejected(f"camera id field {fields.camera!r} is not a string: "
                                 f"{type(camera_value).__name__}", raw)
        camera_id = str(camera_value)
        problem = check_device_text(f"camera id field {fields.camera!r}", camera_id)
        if problem is not None:
            return FrameRejected(problem, raw)
        if len(camera_id) > MAX_CAMERA_ID_LENGTH:
            return FrameRejected(f"camera id too long: {len(camera_id)} characters (limit {MAX_CAMERA_ID_LENGTH})",
                                 raw)

    return AnprResult(plate=plate, confidence=confidence, timestamp=timestamp, camera_id=camera_id)


def _place(message: dict[str, Any], path: str, value: Any) -> None:
    """Set `value` at dotted `path`, creating nested objects (or lists for numeric parts)."""
    parts = path.split(".")
    current: Any = message
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        child: Any = value if last else ([] if _INDEX.fullmatch(parts[depth + 1]) else {})
        if isinstance(current, dict):
            if last:
                if part in current:
                    raise ValueError(f"field path {path!r} collides with another field")
                current[part] = child
                return
            current = current.setdefault(part, child)
        elif isinstance(current, list) and _INDEX.fullmatch(part):
            index = int(part)
            while len(current) <= index:
                current.append(None)
            if last:
                if current[index] is not None:
                    raise ValueError(f"field path {path!r} collides with another field")
                current[index] = child
                return
            if current[index] is None:
                current[index] = child
            current = current[index]
        else:
            raise ValueError(f"field path {path!r} collides with another field")
    raise ValueError(f"empty field path {path!r}")  # pragma: no cover - split() yields at least one part


def encode_anpr_message(result: AnprResult, fields: AnprFields = AnprFields()) -> bytes:
    """Return the camera's JSON (UTF-8) for `result`; the timestamp is written as ISO 8601 UTC.

    A None timestamp or camera id is left out. Raises ValueError for paths that collide, a
    non-finite confidence or a timestamp no date can hold.
    """
    message: dict[str, Any] = {}
    _place(message, fields.plate, result.plate)
    _place(message, fields.confidence, result.confidence)
    if result.timestamp is not None:
        try:
            when = datetime.fromtimestamp(result.timestamp, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"timestamp {result.timestamp!r} cannot be written as a date: {exc}") from exc
        _place(message, fields.timestamp, when.isoformat().replace("+00:00", "Z"))
    if result.camera_id is not None:
        _place(message, fields.camera, result.camera_id)
    return json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
