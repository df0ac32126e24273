"""Plate results from the lane's ANPR cameras, as each vendor words them on MQTT."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.protocols.anpr_json import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_PAYLOAD,
    AnprFields,
    AnprResult,
    decode_anpr_message,
    encode_anpr_message,
)
from devices.protocols.identifiers import device_text_problem
from devices.readings import FrameRejected

TRUCK_AT_GATE = datetime(2026, 11, 23, 8, 15, 42, tzinfo=UTC).timestamp()
VN_TRUCK = AnprResult(plate="29C-123.45", confidence=0.93, timestamp=TRUCK_AT_GATE, camera_id="anpr-lane1-front")
# A vendor that nests its result (the field names come from the device profile's YAML).
NESTED = AnprFields(plate="result.plate.text", confidence="result.plate.score", timestamp="meta.time",
                    camera="meta.device")
# An OpenALPR-style vendor: a list of candidates, epoch milliseconds, numeric camera ids.
LISTED = AnprFields(plate="results.0.plate", confidence="results.0.confidence", timestamp="epoch_time",
                    camera="camera_id")

VISIBLE = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
PLATES = st.text(VISIBLE, min_size=1, max_size=32).filter(lambda plate: plate.strip() == plate and plate)
RESULTS = st.builds(
    AnprResult,
    plate=PLATES,
    confidence=st.floats(0, 1),
    timestamp=st.none() | st.integers(int(EARLIEST_TIMESTAMP * 1e6), int(LATEST_TIMESTAMP * 1e6) - 1).map(
        lambda micros: micros / 1e6),
    camera_id=st.none() | st.text(VISIBLE, max_size=20),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=15,
)
PATHS = st.sampled_from(["plate", "confidence", "timestamp", "camera_id", "a.b", "a.0", "results.0.plate", "x"])


def message(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def check_result(result: AnprResult | FrameRejected) -> None:
    """What the lane may rely on, whatever the camera sent."""
    assert isinstance(result, AnprResult | FrameRejected)
    if isinstance(result, FrameRejected):
        assert result.reason and not result.reason.startswith("internal")
        return
    assert isinstance(result.plate, str) and result.plate and result.plate == result.plate.strip()
    assert 0.0 <= result.confidence <= 1.0
    assert result.timestamp is None or EARLIEST_TIMESTAMP <= result.timestamp < LATEST_TIMESTAMP
    assert result.camera_id is None or isinstance(result.camera_id, str)
    assert device_text_problem(result.plate) is None  # no hidden or reordering character reaches the lane
    assert result.camera_id is None or device_text_problem(result.camera_id) is None


# ------------------------------------------------------------------ round trips


def test_a_vietnamese_truck_plate_reaches_the_node_as_sent():
    payload = encode_anpr_message(VN_TRUCK)
    assert json.loads(payload) == {"plate": "29C-123.45", "confidence": 0.93, "timestamp": "2026-11-23T08:15:42Z",
                                   "camera_id": "anpr-lane1-front"}
    assert decode_anpr_message(payload) == VN_TRUCK


@given(RESULTS, st.sampled_from([AnprFields(), NESTED, LISTED]))
def test_any_result_the_simulator_publishes_round_trips(result, fields):
    decoded = decode_anpr_message(encode_anpr_message(result, fields), fields)
    assert isinstance(decoded, AnprResult), decoded
    assert (decoded.plate, decoded.confidence, decoded.camera_id) == (result.plate, result.confidence,
                                                                      result.camera_id)
    if result.timestamp is None:
        assert decoded.timestamp is None
    else:
        assert decoded.timestamp == pytest.approx(result.timestamp, abs=1e-6)


def test_nested_fields_are_written_as_nested_objects():
    payload = json.loads(encode_anpr_message(VN_TRUCK, NESTED))
    assert payload == {"result": {"plate": {"text": "29C-123.45", "score": 0.93}},
                       "meta": {"time": "2026-11-23T08:15:42Z", "device": "anpr-lane1-front"}}


def test_missing_timestamp_and_camera_are_left_out_and_read_back_as_none():
    result = AnprResult(plate="桂A·12345", confidence=0.8)
    payload = encode_anpr_message(result)
    assert json.loads(payload) == {"plate": "桂A·12345", "confidence": 0.8}
    assert decode_anpr_message(payload) == result


@pytest.mark.parametrize("fields", [AnprFields(plate="a.b", confidence="a"), AnprFields(camera="plate")])
def test_profiles_whose_paths_collide_cannot_encode(fields):
    with pytest.raises(ValueError):
        encode_anpr_message(VN_TRUCK, fields)


def test_encoder_refuses_a_nan_confidence():
    with pytest.raises(ValueError):
        encode_anpr_message(AnprResult(plate="29C12345", confidence=math.nan))


# ------------------------------------------------------------------ vendor profiles


def test_chinese_camera_with_nested_fields_and_local_time():
    payload = json.dumps({"result": {"plate": {"text": " 桂A·12345 ", "score": 0.91}},
                          "meta": {"time": "2026-11-23T15:15:42+07:00", "device": "cn-side"}},
                         ensure_ascii=False).encode()
    assert decode_anpr_message(payload, NESTED) == AnprResult("桂A·12345", 0.91, TRUCK_AT_GATE, "cn-side")


def test_listed_candidates_in_percent_with_epoch_milliseconds_and_numeric_camera():
    payload = message(results=[{"plate": "51D-12345", "confidence": 93.5}, {"plate": "51D-12845", "confidence": 4}],
                      epoch_time=int(TRUCK_AT_GATE * 1000) + 250, camera_id=7)
    assert decode_anpr_message(payload, LISTED) == AnprResult("51D-12345", 0.935, TRUCK_AT_GATE + 0.25, "7")


def test_a_literal_key_with_dots_is_found_before_the_nested_walk():
    fields = AnprFields(plate="plate.text")
    payload = message(**{"plate.text": "29C12345", "plate": {"text": "WRONG"}, "confidence": 0.9})
    assert decode_anpr_message(payload, fields).plate == "29C12345"


def test_the_default_profile_reads_the_generic_camera():
    payload = message(plate="29C-123.45", confidence=0.93, timestamp="2026-11-23T08:15:42Z",
                      camera_id="anpr-lane1-front")
    assert decode_anpr_message(payload) == VN_TRUCK


@pytest.mark.parametrize(("sent", "fraction"), [(0.93, 0.93), (0, 0.0), (1, 1.0), (93, 0.93), (100, 1.0),
                                                (87.5, 0.875), ("0.75", 0.75), ("87.5", 0.875)])
def test_percent_confidence_is_scaled_to_a_fraction(sent, fraction):
    result = decode_anpr_message(message(plate="29C12345", confidence=sent))
    assert result.confidence == pytest.approx(fraction)


@pytest.mark.parametrize(("sent", "epoch"), [
    (TRUCK_AT_GATE, TRUCK_AT_GATE),
    (int(TRUCK_AT_GATE), TRUCK_AT_GATE),
    (int(TRUCK_AT_GATE * 1000), TRUCK_AT_GATE),
    (str(int(TRUCK_AT_GATE)), TRUCK_AT_GATE),
    ("2026-11-23T08:15:42Z", TRUCK_AT_GATE),
    ("2026-11-23T08:15:42+00:00", TRUCK_AT_GATE),
    ("2026-11-23T16:15:42.5+08:00", TRUCK_AT_GATE + 0.5),
    (None, None),
])
def test_timestamps_in_the_shapes_cameras_send(sent, epoch):
    result = decode_anpr_message(message(plate="29C12345", confidence=0.9, timestamp=sent))
    assert isinstance(result, AnprResult), result
    assert result.timestamp == (None if epoch is None else pytest.approx(epoch))


def test_a_time_without_zone_is_read_in_the_zone_the_profile_names():
    payload = message(plate="29C12345", confidence=0.9, timestamp="2026-11-23T15:15:42")
    refused = decode_anpr_message(payload)
    assert isinstance(refused, FrameRejected) and "has no time zone (and the profile names none)" in refused.reason
    read = decode_anpr_message(payload, AnprFields(), ZoneInfo("Asia/Ho_Chi_Minh"))
    assert isinstance(read, AnprResult) and read.timestamp == TRUCK_AT_GATE  # 15:15:42 at UTC+7 is 08:15:42Z


# ------------------------------------------------------------------ messages the node refuses


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"plate": "29C12345", "confidence": 0.9', "invalid JSON"),
    (b"", "invalid JSON"),
    (b"plate=29C12345", "invalid JSON"),
    (b"[]", "not a JSON object"),
    (b'"29C12345"', "not a JSON object"),
    (b"null", "not a JSON object"),
    (b"42", "not a JSON object"),
    (message(confidence=0.9), "missing plate"),
    (message(plate=None, confidence=0.9), "missing plate"),
    (message(plate="", confidence=0.9), "empty plate"),
    (message(plate="   ", confidence=0.9), "empty plate"),
    (message(plate=29, confidence=0.9), "not a string"),
    (message(plate=["29C12345"], confidence=0.9), "not a string"),
    (message(plate="2" * 33, confidence=0.9), "plate too long"),
    (message(plate="29C12345"), "missing confidence"),
    (message(plate="29C12345", confidence="high"), "non-numeric confidence"),
    (message(plate="29C12345", confidence=True), "non-numeric confidence"),
    (message(plate="29C12345", confidence=[0.9]), "non-numeric confidence"),
    (message(plate="29C12345", confidence="1_0"), "non-numeric confidence"),
    (b'{"plate": "29C12345", "confidence": NaN}', "non-numeric confidence"),
    (b'{"plate": "29C12345", "confidence": Infinity}', "out of range"),
    (b'{"plate": "29C12345", "confidence": ' + b"9" * 400 + b"}", "out of range"),
    (b'{"plate": "29C12345", "confidence": ' + b"9" * 5000 + b"}", "invalid JSON"),
    (message(plate="29C12345", confidence=-0.1), "out of range"),
    (message(plate="29C12345", confidence=100.5), "out of range"),
    (message(plate="29C12345", confidence=0.9, timestamp=1e20), "absurd timestamp"),
    (message(plate="29C12345", confidence=0.9, timestamp=-5), "absurd timestamp"),
    (message(plate="29C12345", confidence=0.9, timestamp=0), "absurd timestamp"),
    (message(plate="29C12345", confidence=0.9, timestamp="1970-01-01T00:00:00Z"), "absurd timestamp"),
    (message(plate="29C12345", confidence=0.9, timestamp="9999-12-31T23:59:59Z"), "absurd timestamp"),
    (b'{"plate": "29C12345", "confidence": 0.9, "timestamp": NaN}', "bad timestamp"),
    (message(plate="29C12345", confidence=0.9, timestamp="yesterday"), "bad timestamp"),
    (message(plate="29C12345", confidence=0.9, timestamp="2026-11-23T08:15:42"), "no time zone"),
    (message(plate="29C12345", confidence=0.9, timestamp=True), "bad timestamp"),
    (message(plate="29C12345", confidence=0.9, timestamp={"s": 1}), "bad timestamp"),
    (message(plate="29C12345", confidence=0.9, camera_id={"id": 1}), "camera id"),
    (message(plate="29C12345", confidence=0.9, camera_id=False), "camera id"),
    (message(plate="29C\x0012345", confidence=0.9), "plate field 'plate' holds a NUL control character U+0000"),
    (message(plate="29C-\u202e54.321", confidence=0.9), "holds a bidirectional control character U+202E"),
    (message(plate="\u2067桂A12345\u2069", confidence=0.9), "bidirectional control character U+2067"),
    (message(plate="29C\u200f12345", confidence=0.9), "bidirectional control character U+200F"),
    (message(plate="29C\u200b12345", confidence=0.9), "format character U+200B"),
    (message(plate="29C12345\n", confidence=0.9), "control character U+000A"),
    (message(plate="29C\x9b12345", confidence=0.9), "control character U+009B"),
    (message(plate="29C12345", confidence=0.9, camera_id="cam\u202e1"), "camera id field 'camera_id' holds"),
    (message(plate="29C12345", confidence=0.9, camera_id="c" * 65), "camera id too long"),
    (b"[" * 50_000 + b"]" * 10_000, "nested too deeply"),
    (b" " * (MAX_PAYLOAD + 1), "payload too large"),
    (message(plate="29C12345", confidence=0.9, padding="x" * MAX_PAYLOAD), "payload too large"),
])
def test_unusable_messages_are_rejected_with_a_clear_reason(payload, reason):
    result = decode_anpr_message(payload)
    assert isinstance(result, FrameRejected)
    assert reason in result.reason
    assert len(result.raw) <= 256


def test_the_payload_limit_is_inclusive():
    payload = message(plate="29C12345", confidence=0.9, padding="")
    padded = payload[:-1] + b" " * (MAX_PAYLOAD - len(payload)) + b"}"
    assert len(padded) == MAX_PAYLOAD
    assert isinstance(decode_anpr_message(padded), AnprResult)


def test_a_utf8_byte_order_mark_is_tolerated():
    assert decode_anpr_message(b"\xef\xbb\xbf" + encode_anpr_message(VN_TRUCK)) == VN_TRUCK


# ------------------------------------------------------------------ whatever arrives on the topic


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(payload):
    check_result(decode_anpr_message(payload))


@given(JSON_VALUES)
def test_arbitrary_json_documents_never_raise(value):
    check_result(decode_anpr_message(json.dumps(value).encode()))


@given(st.dictionaries(PATHS, JSON_VALUES, max_size=5), st.builds(AnprFields, PATHS, PATHS, PATHS, PATHS))
def test_arbitrary_values_in_the_expected_fields_never_raise(document, fields):
    check_result(decode_anpr_message(json.dumps(document).encode(), fields))
    check_result(decode_anpr_message(json.dumps({"a": document, "results": [document]}).encode(), fields))


@given(st.sampled_from(["plate", "confidence", "timestamp", "camera_id"]), JSON_VALUES)
def test_any_value_in_any_one_field_of_a_good_message_never_raises(field, value):
    document = json.loads(encode_anpr_message(VN_TRUCK))
    document[field] = value
    check_result(decode_anpr_message(json.dumps(document).encode()))
