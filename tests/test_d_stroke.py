"""Vietnamese `MĐ` plates (issue 29): a camera reads the Đ as D, so matching form folds Đ to D everywhere."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import edge.cache
from devices.protocols.identifiers import D_WITH_STROKE, fold_identifier, normalise_plate
from devices.protocols.plates import plate_country
from devices.readings import PlateRead
from edge.cache import DeclarationCache
from edge.config import LanePolicy
from edge.declarations import Declaration, declaration_from_mapping
from edge.rules import DecisionContext, Outcome, decide
from edge.transaction import Transaction
from models.vision import grammar
from models.vision.formatting import display_plate

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
OLD_FORM = "nfkc-upper-no-separators-1"  # the cache marker before Đ was folded


def declared(number: str, plates: str) -> Declaration:
    return declaration_from_mapping({
        "number": number, "kind": "import", "gate": "HUUNGHI", "plates": plates, "channel": "green",
        "status": "cleared", "valid_from": "2026-11-01T00:00:00", "valid_until": "2026-12-01T00:00:00"})


def released(cache: DeclarationCache, camera_reads: str) -> tuple[Outcome, str | None]:
    """What the lane decides for a truck whose camera read `camera_reads`, with the cache's candidates."""
    at = NOW.timestamp()
    tx = Transaction("IMP-1", at)
    tx.add(PlateRead("IMP-1-anpr", camera_reads, 0.97, at, at))
    facts = tx.facts()
    candidates = [d for plate, _ in facts.plates for d in cache.by_plate(plate)]
    decision = decide(facts, candidates, LanePolicy(required_readings=["plate"], max_cache_age_s=3600),
                      DecisionContext(gate="HUUNGHI", lane_direction="import", now=NOW + timedelta(seconds=1),
                                      cache_age_s=60))
    return decision.outcome, decision.declaration


# -- matching form ------------------------------------------------------------------------------


@pytest.mark.parametrize("written", [
    "29MĐ1-123.45", "29mđ1 123.45", "29MÐ1-123.45", "29Mð1-123.45", "29MƉ1-123.45", "２９ＭĐ１－１２３．４５",
    "29MD1-123.45", "29MD112345",
])
def test_a_plate_with_d_or_d_with_stroke_has_one_matching_form(written: str) -> None:
    assert normalise_plate(written) == "29MD112345"


_STROKY = st.text(alphabet=st.sampled_from(
    [*D_WITH_STROKE, "D", "d", "M", "2", "9", "-", ".", " ", "\u0307", "\u0323", "\u0301", "\u0331", "\u0338",
     "\u00b4", "\uff0d"]), max_size=24)


@given(_STROKY)
def test_folding_text_with_strokes_twice_gives_what_folding_once_gave(text: str) -> None:
    once = fold_identifier(text)
    assert fold_identifier(once) == once
    assert not set(D_WITH_STROKE) & set(once)


# -- grammar and display ------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["29MD112345", "29MD1-123.45", "29MĐ1-123.45"])
def test_an_md_plate_is_a_vietnamese_plate(written: str) -> None:
    assert plate_country(written) == "VN"


def test_the_readers_grammar_accepts_an_md_plate_in_matching_form() -> None:
    assert grammar.VN_PLATE.valid("29MD112345") and grammar.PLATES.kind_of("29MD112345") == "VN"


def test_a_reading_of_an_md_plate_is_shown_with_d() -> None:
    assert display_plate("29MD112345", "VN") == "29MD1-123.45"


# -- the cache and the lane ---------------------------------------------------------------------


def test_a_declaration_written_with_d_stroke_is_released_for_a_camera_reading_d(tmp_path: Path) -> None:
    with DeclarationCache.open(tmp_path / "cache.sqlite") as cache:
        cache.upsert_many([declared("105000000001", "29MĐ1-123.45")])

        assert [d.number for d in cache.by_plate("29MD112345")] == ["105000000001"]
        assert released(cache, "29MD112345") == (Outcome.RELEASE, "105000000001")


def test_a_declaration_built_with_d_stroke_is_stored_and_indexed_with_d(tmp_path: Path) -> None:
    # A Declaration built in code (not through declaration_from_mapping) is folded by the cache itself.
    written = declared("105000000001", "29C-123.45")
    with DeclarationCache.open(tmp_path / "cache.sqlite") as cache:
        cache.upsert_many([replace(written, plates=("29MĐ112345",))])

        stored = cache.get("105000000001")
        assert stored is not None and stored.plates == ("29MD112345",)
        assert [d.number for d in cache.by_plate("29MD1-123.45")] == ["105000000001"]
        assert [d.number for d in cache.by_plate_end("Đ1-123.45")] == ["105000000001"]


def test_a_plain_md_declaration_is_still_released(tmp_path: Path) -> None:
    with DeclarationCache.open(tmp_path / "cache.sqlite") as cache:
        cache.upsert_many([declared("105000000002", "29MD1-123.45"), declared("105000000003", "51D-678.90")])

        assert released(cache, "29MD112345") == (Outcome.RELEASE, "105000000002")
        assert released(cache, "29MĐ1-123.45") == (Outcome.RELEASE, "105000000002")
        assert released(cache, "51D67890") == (Outcome.RELEASE, "105000000003")


def test_a_cache_that_stored_d_stroke_is_migrated_on_open_and_then_matches(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with DeclarationCache.open(path) as old:
        old.upsert_many([declared("105000000001", "29MD1-123.45"), declared("105000000002", "29C-123.45")])
    # What a node running the previous matching form left behind: Đ kept, and the cache marked as folded.
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE declarations SET plates = ? WHERE number = ?", ('["29MĐ112345"]', "105000000001"))
        raw.execute("UPDATE declaration_plates SET plate = ? WHERE number = ?", ("29MĐ112345", "105000000001"))
        raw.execute("UPDATE cache_meta SET value = ? WHERE key = 'identifier_form'", (OLD_FORM,))
    raw.close()

    with DeclarationCache.open(path) as upgraded:
        stored = upgraded.get("105000000001")
        assert stored is not None and stored.plates == ("29MD112345",)
        assert [d.number for d in upgraded.by_plate("29MĐ1-123.45")] == ["105000000001"]
        assert released(upgraded, "29MD112345") == (Outcome.RELEASE, "105000000001")
        assert released(upgraded, "29C12345") == (Outcome.RELEASE, "105000000002")
        assert upgraded.meta("identifier_form") == {"identifier_form": edge.cache.IDENTIFIER_FORM}
