"""The container scanner's (NII) scan messages on MQTT, as the lane receives them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.protocols.scanner_json import (
    MAX_PAYLOAD,
    ScanEvent,
    ScanMessage,
    decode_scanner_message,
    encode_scanner_message,
    scan_message_to_read,
)
from devices.readings import FrameRejected, ScanRead, ScanVerdict

AT_GATE = datetime(2026, 11, 23, 8, 15, 42, tzinfo=UTC)
SCAN_DONE = ScanMessage(ScanEvent.COMPLETED, "NII1-20261123-0042", "lane1", ("CSQU3054383", "MWCU6059784"),
                        ScanVerdict.CLEAR, "nii://lane1/20261123/0042.dcm", AT_GATE)
SCAN_BEGUN = ScanMessage(ScanEvent.STARTED, "NII1-20261123-0042", "lane1", (), ScanVerdict.PENDING, None, AT_GATE)

IDENTIFIERS = st.text(min_size=1, max_size=64).filter(lambda text: text.strip() == text and text.isprintable())
MESSAGES = st.builds(
    ScanMessage,
    event=st.sampled_from(ScanEvent),
    scan_id=IDENTIFIERS,
    lane=IDENTIFIERS,
    containers=st.lists(st.from_regex(r"[A-Z]{3}[UJZ][0-9]{7}", fullmatch=True), max_size=4).map(tuple),
    verdict=st.sampled_from(ScanVerdict),
    image_ref=st.none() | st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")),
                                  min_size=1, max_size=200),
    timestamp=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)),
).filter(lambda msg: msg.event is ScanEvent.COMPLETED or msg.verdict is ScanVerdict.PENDING)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=15,
)
FIELDS = ["event", "scan_id", "lane", "containers", "verdict", "image_ref", "timestamp"]


def message(**fields: object) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


def good(**changes: object) -> bytes:
    document = json.loads(encode_scanner_message(SCAN_DONE))
    document.update(changes)
    return json.dumps({key: value for key, value in document.items() if value is not ...}).encode()


def check_result(result: ScanMessage | FrameRejected) -> None:
    """What the lane may rely on, whatever the scanner sent."""
    assert isinstance(result, ScanMessage | FrameRejected)
    if isinstance(result, FrameRejected):
        assert result.reason and not result.reason.startswith("internal")
        assert len(result.raw) <= 256
        return
    assert isinstance(result.event, ScanEvent) and isinstance(result.verdict, ScanVerdict)
    assert result.event is ScanEvent.COMPLETED or result.verdict is ScanVerdict.PENDING
    assert result.scan_id and result.lane
    assert all(number.isascii() and number.isalnum() and number == number.upper() for number in result.containers)
    assert result.image_ref is None or (isinstance(result.image_ref, str) and result.image_ref)
    assert result.timestamp.utcoffset().total_seconds() == 0


# ------------------------------------------------------------------ messages as the scanner sends them


def test_a_completed_clear_scan_reaches_the_lane_as_sent():
    payload = encode_scanner_message(SCAN_DONE)
    assert json.loads(payload) == {"event": "scan_completed", "scan_id": "NII1-20261123-0042", "lane": "lane1",
                                   "containers": ["CSQU3054383", "MWCU6059784"], "verdict": "clear",
                                   "image_ref": "nii://lane1/20261123/0042.dcm", "timestamp": "2026-11-23T08:15:42Z"}
    assert decode_scanner_message(payload) == SCAN_DONE


def test_a_started_scan_is_pending_and_not_completed():
    assert decode_scanner_message(encode_scanner_message(SCAN_BEGUN)) == SCAN_BEGUN
    read = scan_message_to_read(SCAN_BEGUN, "nii-lane1", received_at=AT_GATE.timestamp() + 0.2)
    assert read == ScanRead(device_id="nii-lane1", scan_id="NII1-20261123-0042", verdict=ScanVerdict.PENDING,
                            containers=(), image_ref=None, completed=False, observed_at=AT_GATE.timestamp(),
                            received_at=AT_GATE.timestamp() + 0.2)


def test_scanread_for_the_lane_carries_the_scanners_own_time_and_verdict():
    read = scan_message_to_read(replace(SCAN_DONE, verdict=ScanVerdict.SUSPECT), "nii-lane1", 1_795_000_000.5)
    assert (read.completed, read.verdict, read.containers) == (True, ScanVerdict.SUSPECT,
                                                               ("CSQU3054383", "MWCU6059784"))
    assert read.observed_at == AT_GATE.timestamp() and read.received_at == 1_795_000_000.5


def test_a_started_scan_without_a_verdict_is_pending():
    payload = message(event="scan_started", scan_id="S1", lane="lane1", timestamp="2026-11-23T08:15:42Z")
    result = decode_scanner_message(payload)
    assert result.verdict is ScanVerdict.PENDING and result.containers == () and result.image_ref is None


def test_a_completed_scan_may_still_wait_for_the_analyst():
    assert decode_scanner_message(good(verdict="pending")).verdict is ScanVerdict.PENDING


def test_container_numbers_are_normalised_not_corrected():
    result = decode_scanner_message(good(containers=["csqu 305438-3", "CSQU3054384"]))
    assert result.containers == ("CSQU3054383", "CSQU3054384")


def test_a_time_without_zone_is_read_in_the_zone_the_profile_names():
    payload = good(timestamp="2026-11-23T15:15:42")
    assert "the profile names none" in decode_scanner_message(payload).reason
    assert decode_scanner_message(payload, ZoneInfo("Asia/Ho_Chi_Minh")).timestamp == AT_GATE


def test_full_width_container_numbers_are_folded_to_ascii():
    result = decode_scanner_message(good(containers=["ＣＳＱＵ３０５４３８３", "MWCU\u2013605978\uff0e4"]))
    assert result.containers == ("CSQU3054383", "MWCU6059784")


@pytest.mark.parametrize("value", [None, ..., []])
def test_no_containers_read_yet_is_an_empty_tuple(value):
    assert decode_scanner_message(good(containers=value)).containers == ()


@pytest.mark.parametrize("value", [None, ..., ""])
def test_no_image_is_none(value):
    assert decode_scanner_message(good(image_ref=value)).image_ref is None


@pytest.mark.parametrize("stamp", ["2026-11-23T08:15:42Z", "2026-11-23T08:15:42+00:00", "2026-11-23T15:15:42+07:00",
                                   "2026-11-23T16:15:42.000+08:00", " 2026-11-23T08:15:42Z "])
def test_timestamps_in_any_offset_are_read_as_utc(stamp):
    result = decode_scanner_message(good(timestamp=stamp))
    assert result.timestamp == AT_GATE and result.timestamp.tzinfo is UTC


def test_ids_are_trimmed_and_unknown_fields_ignored():
    result = decode_scanner_message(good(scan_id="  S-7 ", lane=" lane2", operator="Nguyen", extra={"a": 1}))
    assert (result.scan_id, result.lane) == ("S-7", "lane2")


def test_a_utf8_byte_order_mark_is_tolerated():
    assert decode_scanner_message(b"\xef\xbb\xbf" + encode_scanner_message(SCAN_DONE)) == SCAN_DONE


# ------------------------------------------------------------------ messages the lane refuses


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"event": "scan_completed"', "invalid JSON"),
    (b"", "invalid JSON"),
    (b"[]", "not a JSON object"),
    (b"null", "not a JSON object"),
    (good(event=...), "unknown event"),
    (good(event="scan_aborted"), "unknown event"),
    (good(event="SCAN_COMPLETED"), "unknown event"),
    (good(event=1), "unknown event"),
    (good(scan_id=...), "missing scan_id"),
    (good(scan_id=None), "missing scan_id"),
    (good(scan_id=""), "empty scan_id"),
    (good(scan_id="   "), "empty scan_id"),
    (good(scan_id=42), "scan_id is not a string"),
    (good(scan_id="S" * 65), "scan_id too long"),
    (good(scan_id="S\x001"), "control character"),
    (good(lane=...), "missing lane"),
    (good(lane=["lane1"]), "lane is not a string"),
    (good(verdict=...), "unknown verdict"),
    (good(verdict=None), "unknown verdict"),
    (good(verdict="CLEAR"), "unknown verdict"),
    (good(verdict="ok"), "unknown verdict"),
    (good(verdict=True), "unknown verdict"),
    (good(event="scan_started", verdict="clear"), "scan_started with verdict clear"),
    (good(event="scan_started", verdict="suspect"), "scan_started with verdict suspect"),
    (good(containers="CSQU3054383"), "containers is not a list"),
    (good(containers={"a": "CSQU3054383"}), "containers is not a list"),
    (good(containers=["CSQU3054383"] * 9), "too many containers"),
    (good(containers=[3054383]), "container is not a string"),
    (good(containers=[None]), "container is not a string"),
    (good(containers=[" - "]), "empty container number"),
    (good(containers=["CSQU*3054383"]), "is not a container number"),
    (good(containers=["CSQU3054383" * 2]), "is not a container number"),
    (good(containers=["CSQU305438٣"]), "is not a container number"),  # Arabic-Indic 3: NFKC keeps it
    (good(containers=["CSQU305438\u202e3"]), "container holds a bidirectional control character U+202E"),
    (good(lane="IMP\u20661"), "lane holds a bidirectional control character U+2066"),
    (good(image_ref="nii://img\x85/1"), "image_ref holds a control character U+0085"),
    (good(image_ref=7), "image_ref is not a string"),
    (good(image_ref="x" * 1025), "image_ref too long"),
    (good(timestamp=...), "missing timestamp"),
    (good(timestamp=None), "missing timestamp"),
    (good(timestamp=1_795_000_000), "expected an ISO 8601 string"),
    (good(timestamp="yesterday"), "bad timestamp"),
    (good(timestamp="2026-11-23T08:15:42"), "no time zone"),
    (good(timestamp="1970-01-01T00:00:00Z"), "absurd timestamp"),
    (good(timestamp="9999-12-31T23:59:59Z"), "absurd timestamp"),
    (good(timestamp="0001-01-01T00:00:00+01:00"), "absurd timestamp"),
    (b"[" * 50_000 + b"]" * 50_000, "too large"),
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    (b" " * (MAX_PAYLOAD + 1), "payload too large"),
    (good(padding="x" * MAX_PAYLOAD), "payload too large"),
])
def test_unusable_messages_are_rejected_with_a_clear_reason(payload, reason):
    result = decode_scanner_message(payload)
    assert isinstance(result, FrameRejected), result
    assert reason in result.reason
    assert len(result.raw) <= 256


def test_the_payload_limit_is_inclusive():
    payload = good(padding="")
    padded = payload[:-1] + b" " * (MAX_PAYLOAD - len(payload)) + b"}"
    assert len(padded) == MAX_PAYLOAD
    assert isinstance(decode_scanner_message(padded), ScanMessage)


def test_the_simulators_garbage_fault_is_refused():
    result = decode_scanner_message(b'{"event": "scan_completed", "verdict": 7}')
    assert isinstance(result, FrameRejected) and "scan_id" in result.reason


def test_the_encoder_refuses_what_the_scanner_would_never_say():
    with pytest.raises(ValueError):
        encode_scanner_message(replace(SCAN_DONE, timestamp=AT_GATE.replace(tzinfo=None)))
    with pytest.raises(ValueError):
        encode_scanner_message(replace(SCAN_BEGUN, verdict=ScanVerdict.CLEAR))


# ------------------------------------------------------------------ round trips and whatever arrives on the topic


@given(MESSAGES)
def test_any_message_the_simulator_publishes_round_trips(msg):
    assert decode_scanner_message(encode_scanner_message(msg)) == msg


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(payload):
    check_result(decode_scanner_message(payload))


@given(JSON_VALUES)
def test_arbitrary_json_documents_never_raise(value):
    check_result(decode_scanner_message(json.dumps(value).encode()))


@given(st.sampled_from(FIELDS), JSON_VALUES)
def test_any_value_in_any_one_field_of_a_good_message_never_raises(field, value):
    check_result(decode_scanner_message(good(**{field: value})))


@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=7))
def test_any_mix_of_fields_never_raises(document):
    check_result(decode_scanner_message(json.dumps(document).encode()))


def test_bytearray_and_memoryview_are_decoded_like_bytes():
    payload = encode_scanner_message(SCAN_DONE)
    assert decode_scanner_message(bytearray(payload)) == SCAN_DONE
    assert decode_scanner_message(memoryview(payload)) == SCAN_DONE
