"""The published device contracts (JSON Schemas) say what the codecs do, judged by `jsonschema`.

Every example the schema accepts the codec accepts, every example the codec refuses the schema
refuses, and what the simulators send fits the schema. Where the codec is more lenient than the
contract (numeric strings, a byte order mark), the example is listed as tolerated, on purpose.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from devices.availability import MqttAvailability
from devices.contracts import CONTRACT_NAMES, load_contract
from devices.health import DeviceHealth
from devices.protocols.anpr_json import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    AnprResult,
    decode_anpr_message,
    encode_anpr_message,
)
from devices.protocols.scanner_json import ScanEvent, ScanMessage, decode_scanner_message, encode_scanner_message
from devices.readings import DeviceFault, FrameRejected, ScanVerdict

VALIDATORS = {name: Draft202012Validator(load_contract(name)) for name in CONTRACT_NAMES}
VISIBLE = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
# A JSON Schema pattern cannot name Unicode categories portably, so the contracts list the control,
# format and bidi characters by range and only describe the unassigned and private-use code points
# the codecs also refuse: generated text stays within assigned, public characters.
ASSIGNED = st.characters(exclude_categories=("Cs", "Co", "Cn"))


def fits(name: str, document: Any) -> bool:
    return VALIDATORS[name].is_valid(document)


def anpr_accepts(document: Any) -> bool:
    return isinstance(decode_anpr_message(json.dumps(document).encode()), AnprResult)


def scanner_accepts(document: Any) -> bool:
    return isinstance(decode_scanner_message(json.dumps(document).encode()), ScanMessage)


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_every_contract_is_a_valid_json_schema_whose_examples_fit(name: str) -> None:
    schema = load_contract(name)
    Draft202012Validator.check_schema(schema)
    assert schema["examples"] and all(fits(name, example) for example in schema["examples"])


# ------------------------------------------------------------------ ANPR plate read

PLATE = {"plate": "29C-123.45", "confidence": 0.93, "timestamp": "2026-11-23T08:15:42Z", "camera_id": "IMP-1-anpr"}
ANPR_ACCEPTED = [
    PLATE,
    {"plate": "桂A·12345", "confidence": 93},
    {"plate": "２９Ｃ－１２３．４５", "confidence": 1, "timestamp": 1795421742},
    {"plate": "29C12345", "confidence": 0, "timestamp": 1795421742250},
    {"plate": "29C12345", "confidence": 0.5, "timestamp": "2026-11-23T15:15:42+07:00", "camera_id": None},
    {"plate": "29C12345", "confidence": 0.5, "timestamp": "2026-11-23T08:15:42.250Z", "extra": {"any": "thing"}},
    {"plate": "29C12345", "confidence": 0.5, "timestamp": None},
]
ANPR_REFUSED = [
    {"confidence": 0.9},
    {"plate": "", "confidence": 0.9},
    {"plate": "   ", "confidence": 0.9},
    {"plate": 29, "confidence": 0.9},
    {"plate": "2" * 33, "confidence": 0.9},
    {"plate": "29C\x0012345", "confidence": 0.9},
    {"plate": "29C-\u202e54.321", "confidence": 0.9},
    {"plate": "29C\u2066123.45\u2069", "confidence": 0.9},
    {"plate": "29C\u200f12345", "confidence": 0.9},
    {"plate": "29C12345\n", "confidence": 0.9},
    {"plate": "29C12345"},
    {"plate": "29C12345", "confidence": True},
    {"plate": "29C12345", "confidence": -0.1},
    {"plate": "29C12345", "confidence": 100.5},
    {"plate": "29C12345", "confidence": 0.9, "timestamp": "2026-11-23T08:15:42"},  # no zone
    {"plate": "29C12345", "confidence": 0.9, "timestamp": "yesterday"},
    {"plate": "29C12345", "confidence": 0.9, "timestamp": 0},
    {"plate": "29C12345", "confidence": 0.9, "timestamp": "1999-12-31T23:59:59Z"},
    {"plate": "29C12345", "confidence": 0.9, "timestamp": 5_000_000_000},  # between seconds and milliseconds
    {"plate": "29C12345", "confidence": 0.9, "camera_id": "cam\u202e1"},
    {"plate": "29C12345", "confidence": 0.9, "camera_id": False},
    {"plate": "29C12345", "confidence": 0.9, "camera_id": "c" * 65},
    ["29C12345", 0.9],
]
ANPR_TOLERATED = [  # the codec takes these; the contract does not promise it will
    {"plate": "29C12345", "confidence": "0.9"},
    {"plate": "29C12345", "confidence": 0.9, "timestamp": "1795421742"},
    {"plate": "29C12345", "confidence": 0.9, "camera_id": 7},
]


@pytest.mark.parametrize("document", ANPR_ACCEPTED)
def test_plate_reads_the_contract_allows_are_decoded(document: dict) -> None:
    assert fits("anpr-plate-read", document)
    assert anpr_accepts(document)


@pytest.mark.parametrize("document", ANPR_REFUSED)
def test_plate_reads_the_codec_refuses_break_the_contract(document: Any) -> None:
    assert not anpr_accepts(document)
    assert not fits("anpr-plate-read", document)


@pytest.mark.parametrize("document", ANPR_TOLERATED)
def test_plate_reads_the_codec_tolerates_are_outside_the_contract(document: dict) -> None:
    assert anpr_accepts(document) and not fits("anpr-plate-read", document)


@given(st.builds(
    AnprResult,
    plate=st.text(VISIBLE, min_size=1, max_size=32).filter(lambda p: p.strip() == p and p),
    confidence=st.floats(0, 1),
    timestamp=st.none() | st.floats(EARLIEST_TIMESTAMP, LATEST_TIMESTAMP - 1),
    camera_id=st.none() | st.text(VISIBLE, min_size=1, max_size=20).filter(str.strip),
))
def test_what_the_camera_simulator_sends_fits_the_contract(result: AnprResult) -> None:
    assert fits("anpr-plate-read", json.loads(encode_anpr_message(result)))


FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**14), st.floats(allow_nan=False),
    st.sampled_from(["", " ", "29C-123.45", "2026-11-23T08:15:42Z", "2026-11-23T08:15:42", "IMP-1", "IMP-1\u202e",
                     "\x00", "\u2066x", "x" * 70, "ＣＳＱＵ３０５４３８３", "clear", "pending", "scan_started"]),
    st.text(ASSIGNED, max_size=12), st.text(ASSIGNED, max_size=12).map(lambda text: text + "\n"),
    st.lists(st.sampled_from(["CSQU3054383", "csqu 305438-3", "CSQU3054383\n", "\u202e", 7]), max_size=9),
)


@given(st.sampled_from(sorted(PLATE)), FIELD_VALUES)
def test_any_plate_read_the_contract_allows_is_decoded(field: str, value: Any) -> None:
    document = {**PLATE, field: value}
    if fits("anpr-plate-read", document):
        assert anpr_accepts(document), document


# ------------------------------------------------------------------ scanner result

SCAN = {"event": "scan_completed", "scan_id": "NII1-20261123-0042", "lane": "IMP-1", "containers": ["CSQU3054383"],
        "verdict": "clear", "image_ref": "nii://lane1/20261123/0042.dcm", "timestamp": "2026-11-23T08:15:42Z"}
SCAN_ACCEPTED = [
    SCAN,
    {"event": "scan_started", "scan_id": "S1", "lane": "IMP-1", "timestamp": "2026-11-23T15:15:42+07:00"},
    {**SCAN, "containers": ["csqu 305438-3", "MWCU6059784"], "image_ref": None},
    {**SCAN, "containers": None, "verdict": "pending", "image_ref": ""},
    {**SCAN, "verdict": "suspect", "operator": "ignored"},
]
SCAN_REFUSED = [
    {**SCAN, "event": "scan_done"},
    {k: v for k, v in SCAN.items() if k != "lane"},
    {**SCAN, "lane": ""},
    {**SCAN, "lane": "IMP-1\u202e"},
    {**SCAN, "lane": "IMP\x001"},
    {**SCAN, "scan_id": "S" * 65},
    {**SCAN, "scan_id": "S\u20661"},
    {**SCAN, "verdict": "CLEAR"},
    {k: v for k, v in SCAN.items() if k != "verdict"},
    {**SCAN, "event": "scan_started", "verdict": "clear"},
    {**SCAN, "containers": "CSQU3054383"},
    {**SCAN, "containers": ["CSQU3054383"] * 9},
    {**SCAN, "containers": ["CSQU*3054383"]},
    {**SCAN, "containers": ["CSQU305438\u202e3"]},
    {**SCAN, "containers": ["CSQU3054383\n"]},
    {**SCAN, "lane": "IMP-1\n"},
    {**SCAN, "image_ref": "nii://\x85"},
    {**SCAN, "image_ref": "x" * 1025},
    {**SCAN, "timestamp": "2026-11-23T08:15:42"},
    {**SCAN, "timestamp": 1795421742},
    {**SCAN, "timestamp": "2100-01-01T00:00:00Z"},
]
SCAN_TOLERATED = [
    {**SCAN, "containers": ["ＣＳＱＵ３０５４３８３"]},  # folded by the codec; the contract asks for ASCII
]


@pytest.mark.parametrize("document", SCAN_ACCEPTED)
def test_scans_the_contract_allows_are_decoded(document: dict) -> None:
    assert fits("scanner-result", document)
    assert scanner_accepts(document)


@pytest.mark.parametrize("document", SCAN_REFUSED)
def test_scans_the_codec_refuses_break_the_contract(document: dict) -> None:
    assert not scanner_accepts(document)
    assert not fits("scanner-result", document)


@pytest.mark.parametrize("document", SCAN_TOLERATED)
def test_scans_the_codec_tolerates_are_outside_the_contract(document: dict) -> None:
    assert scanner_accepts(document) and not fits("scanner-result", document)


@given(st.builds(
    ScanMessage,
    event=st.sampled_from(ScanEvent),
    scan_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,30}[A-Za-z0-9]", fullmatch=True),
    lane=st.sampled_from(["IMP-1", "EXP-1", "lane 2"]),
    containers=st.lists(st.from_regex(r"[A-Z]{3}[UJZ][0-9]{7}", fullmatch=True), max_size=4).map(tuple),
    verdict=st.sampled_from(ScanVerdict),
    image_ref=st.none() | st.text(VISIBLE, min_size=1, max_size=50),
    timestamp=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)),
).filter(lambda msg: msg.event is ScanEvent.COMPLETED or msg.verdict is ScanVerdict.PENDING))
def test_what_the_scanner_simulator_sends_fits_the_contract(message: ScanMessage) -> None:
    assert fits("scanner-result", json.loads(encode_scanner_message(message)))


@given(st.sampled_from(sorted(SCAN)), FIELD_VALUES)
def test_any_scan_the_contract_allows_is_decoded(field: str, value: Any) -> None:
    document = {**SCAN, field: value}
    if fits("scanner-result", document):
        assert scanner_accepts(document), document


# ------------------------------------------------------------------ device status


@pytest.mark.parametrize(("payload", "faulty"), [(b"online", False), (b"offline", True)])
def test_the_status_words_of_the_contract_put_the_device_up_or_down(payload: bytes, faulty: bool) -> None:
    assert fits("device-status", payload.decode())
    events: list = []
    availability = MqttAvailability("IMP-1-xray", DeviceHealth("IMP-1-xray", "scanner"), events.append, "scanner")
    availability.on_broker(True, None)
    availability.on_status("gate/HUUNGHI/IMP-1/scanner/status", payload)
    assert availability.faulty is faulty
    assert any(isinstance(e, DeviceFault) for e in events) is faulty


@pytest.mark.parametrize("payload", ['"online"', "ONLINE ", "up", ""])
def test_other_status_payloads_are_outside_the_contract(payload: str) -> None:
    assert not fits("device-status", payload)


def test_a_rejection_reason_never_echoes_a_hidden_character() -> None:
    result = decode_anpr_message(json.dumps({"plate": "29C-\u202e54.321", "confidence": 0.9}).encode())
    assert isinstance(result, FrameRejected) and "\u202e" not in result.reason


def readme_examples() -> dict[str, Any]:
    """The payloads the README's `mosquitto_pub` examples send, by topic."""
    text = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    return {topic: json.loads(payload) for topic, payload in re.findall(r"-t (\S+) \\\n\s*-m '([^']+)'", text)}


def test_the_readme_examples_fit_the_contracts_and_decode() -> None:
    examples = readme_examples()
    plate, scan = examples["gate/HUUNGHI/IMP-1/anpr/front"], examples["gate/HUUNGHI/IMP-1/scanner"]
    assert fits("anpr-plate-read", plate) and anpr_accepts(plate)
    assert fits("scanner-result", scan) and scanner_accepts(scan)
