"""One matching form for plates, containers and seals, and no hidden characters from devices (issues 24, 28)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.protocols import iso6346, plates
from devices.protocols.eseal_ascii import SealFrame, seal_frame_to_read
from devices.protocols.eseal_binary import EsealBinaryDecoder, encode_binary_seal_frame
from devices.protocols.identifiers import (
    check_device_text,
    device_text_problem,
    fold_identifier,
    normalise_container,
    normalise_plate,
    normalise_seal,
    split_identifier_list,
)
from devices.readings import ContainerRead, PlateRead, SealStatus
from edge.cache import DeclarationCache
from edge.config import LanePolicy
from edge.declarations import declaration_from_mapping
from edge.rules import DecisionContext, Outcome, decide
from edge.transaction import Transaction

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("written", [
    "29C-123.45", "29C12345", "29c 123 45", "２９Ｃ－１２３．４５", "29C\u2013123\u00b745", "29C\u2014123\u30fb45",
    "29C\uff0d123\uff0e45", "29C\u3000123\u00a045", "29C_123/45", "29C\u2212123\u202245",
])
def test_a_vietnamese_plate_written_any_way_has_one_matching_form(written: str) -> None:
    assert normalise_plate(written) == "29C12345"


def test_a_chinese_plate_with_any_middle_dot_has_one_matching_form() -> None:
    written = ("桂F·12345", "桂F・12345", "桂F･12345", "桂Ｆ１２３４５", "桂f 12345")
    assert {normalise_plate(p) for p in written} == {"桂F12345"}


def test_full_width_container_folds_to_ascii_and_is_valid() -> None:
    assert normalise_container("ＣＳＱＵ３０５４３８３") == "CSQU3054383"
    assert iso6346.is_valid_container("ＣＳＱＵ３０５４３８３")


@pytest.mark.parametrize("number", ["CSQU305438\u0663", "CSQU\u0663\u0660\u0665\u0664\u0663\u0668\u0663",
                                    "CSQU305438\u09e9", "CSQU305438\u0969"])
def test_digits_that_are_not_ascii_never_count_for_a_check_digit(number: str) -> None:
    assert not iso6346.is_valid_container(number)
    with pytest.raises(ValueError):
        iso6346.check_digit(number[:9] + "\u0663")


def test_seal_ids_compare_case_insensitively() -> None:
    assert normalise_seal("5e0001ab") == normalise_seal("5E0001AB") == "5E0001AB"


def test_the_old_homes_of_the_normalisers_give_the_same_function() -> None:
    assert plates.normalise_plate is normalise_plate
    assert iso6346.normalise_container is normalise_container


@given(st.text(max_size=40))
def test_folding_is_idempotent(text: str) -> None:
    once = fold_identifier(text)
    assert fold_identifier(once) == once


@pytest.mark.parametrize(("text", "named"), [
    ("29C\x00123.45", "NUL control character U+0000"),
    ("29C-\u202e54.321", "bidirectional control character U+202E"),
    ("\u202a29C", "bidirectional control character U+202A"),
    ("29C\u2066", "bidirectional control character U+2066"),
    ("29C\u2069", "bidirectional control character U+2069"),
    ("29C\u200e", "bidirectional control character U+200E"),
    ("29C\u200f", "bidirectional control character U+200F"),
    ("29C\u200b12345", "format character U+200B"),
    ("\ufeff29C12345", "format character U+FEFF"),
    ("29C\x1b[2J", "control character U+001B"),
    ("29C\x85", "control character U+0085"),
    ("29C\u2028", "line separator U+2028"),
    ("29C\ue000", "private-use character U+E000"),
])
def test_hidden_or_reordering_characters_are_named_by_code_point(text: str, named: str) -> None:
    problem = device_text_problem(text)
    assert problem is not None and named in problem
    assert text not in problem  # the reason never echoes the string


@pytest.mark.parametrize("text", ["29C-123.45", "桂F·12345", "MĐ-123.45", "２９Ｃ－１２３．４５", "IMP-1", "cam 1"])
def test_plain_identifiers_pass(text: str) -> None:
    assert check_device_text("plate", text) is None


def test_a_seal_read_in_upper_hex_matches_a_declaration_written_in_lower_hex() -> None:
    decoder = EsealBinaryDecoder()
    wire = encode_binary_seal_frame(SealFrame("0A1B2C3D", "5E0001AB", SealStatus.INTACT, 80, "CSQU3054383", NOW))
    (frame,) = decoder.feed(wire, NOW)
    read = seal_frame_to_read(frame, "EXP-1-eseal", NOW.timestamp())
    declared = declaration_from_mapping({"number": "1", "kind": "import", "gate": "HUUNGHI", "plates": "29C-123.45",
                                         "seals": "5e0001ab", "channel": "green", "status": "cleared",
                                         "valid_until": "2027-01-01T00:00:00"})
    assert read.seal_id in declared.seals


def test_a_truck_read_full_width_is_released_against_its_ascii_declaration() -> None:
    cache = DeclarationCache.open(":memory:")
    cache.upsert_many([declaration_from_mapping({
        "number": "105000000001", "kind": "import", "gate": "HUUNGHI", "plates": "29C-123.45",
        "containers": "CSQU 305438-3", "seals": "cn-seal-5e0001ab", "channel": "green", "status": "cleared",
        "valid_from": "2026-11-01T00:00:00", "valid_until": "2026-12-01T00:00:00"})])
    tx = Transaction("IMP-1", NOW.timestamp())
    at = NOW.timestamp()
    tx.add(PlateRead("IMP-1-anpr", "２９Ｃ－１２３．４５", 0.95, at, at))
    tx.add(ContainerRead("IMP-1-cam", "ＣＳＱＵ３０５４３８３", 0.95, at, at))
    tx.add(seal_frame_to_read(SealFrame("R1", "CN-SEAL-5E0001AB", SealStatus.INTACT, 90, None, NOW), "IMP-1-eseal", at))
    facts = tx.facts()
    candidates = cache.by_plate(facts.plates[0][0])
    policy = LanePolicy(required_readings=["plate", "seal", "container"], max_cache_age_s=3600)
    context = DecisionContext(gate="HUUNGHI", lane_direction="import", now=NOW + timedelta(seconds=1), cache_age_s=60)

    decision = decide(facts, candidates, policy, context)

    assert decision.outcome is Outcome.RELEASE, decision.reasons
    cache.close()


@pytest.mark.parametrize("text, entries", [
    ("29C-890.12/29R-034.56", ["29C-890.12", "29R-034.56"]),
    ("桂A·12345；桂F·00001", ["桂A·12345", "桂F·00001"]),
    ("CN-SEAL-0001 | CN-SEAL-0002\n5E0001AB,", ["CN-SEAL-0001", "CN-SEAL-0002", "5E0001AB"]),
    ("CSQU3054383、MWCU6059784\r\n", ["CSQU3054383", "MWCU6059784"]),
    ("29C-123.45", ["29C-123.45"]),
    (" ; / ", []),
])
def test_a_written_list_splits_between_identifiers_never_inside_one(text, entries):
    assert split_identifier_list(text) == entries
