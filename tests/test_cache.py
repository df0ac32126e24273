"""The declaration cache: lookups by plate and container, version handling, stats and staleness."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edge.cache
from edge.cache import DeclarationCache
from edge.declarations import (
    Declaration,
    DeclarationKind,
    DeclarationStatus,
    RiskChannel,
)

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def declaration(number: str = "103456789012", **changes: object) -> Declaration:
    base = Declaration(
        number=number, kind=DeclarationKind.IMPORT, gate="HUU_NGHI", plates=("29C12345",),
        containers=("CSQU3054383",), seals=("SEAL00000001",), gross_weight_kg=24_500.0,
        channel=RiskChannel.GREEN, status=DeclarationStatus.CLEARED,
        valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=6), version=1,
    )
    return replace(base, **changes)


@pytest.fixture
def cache() -> Iterator[DeclarationCache]:
    opened = DeclarationCache.open(":memory:")
    yield opened
    opened.close()


# -- lookups ------------------------------------------------------------------------------------


def test_plate_written_three_ways_finds_one_declaration(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration()])

    for written in ("29C-123.45", "29C12345", "29c 123 45"):
        found = cache.by_plate(written)
        assert [d.number for d in found] == ["103456789012"], written


def test_full_width_plate_and_container_find_their_declaration(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration()])

    assert [d.number for d in cache.by_plate("２９Ｃ－１２３．４５")] == ["103456789012"]
    assert [d.number for d in cache.by_plate("29C\u2013123\u30fb45")] == ["103456789012"]  # en dash, katakana dot
    assert [d.number for d in cache.by_container("ＣＳＱＵ３０５４３８３")] == ["103456789012"]


def test_a_declaration_written_full_width_is_stored_in_matching_form(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(plates=("２９Ｃ－１２３．４５", "29C-123.45"),
                                   containers=("ｃｓｑｕ　３０５４３８３",), seals=("cn-seal-5e0001ab",))])

    stored = cache.get("103456789012")
    assert stored is not None
    assert (stored.plates, stored.containers, stored.seals) == (("29C12345",), ("CSQU3054383",), ("CNSEAL5E0001AB",))
    assert [d.number for d in cache.by_plate("29C-123.45")] == ["103456789012"]
    assert [d.number for d in cache.by_container("CSQU3054383")] == ["103456789012"]


def test_a_new_version_with_a_full_width_plate_replaces_the_old_index_rows(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(plates=("２９Ｃ－１２３．４５",))])
    cache.upsert_many([declaration(plates=("51D-678.90",), version=2)])

    assert cache.by_plate("29C12345") == []
    assert [d.number for d in cache.by_plate("51D67890")] == ["103456789012"]


def test_a_cache_written_before_folding_is_brought_to_matching_form_on_open(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with DeclarationCache.open(path) as old:
        old.upsert_many([declaration()])
    # What an older node left behind: identifiers as the declaration wrote them, keyed the old way.
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE declarations SET plates = ?, seals = ?", ('["２９Ｃ－１２３．４５"]', '["cn-seal-0001"]'))
        raw.execute("UPDATE declaration_plates SET plate = ?", ("２９Ｃ－１２３．４５",))
        raw.execute("DELETE FROM cache_meta WHERE key = 'identifier_form'")
    raw.close()

    with DeclarationCache.open(path) as upgraded:
        assert [d.number for d in upgraded.by_plate("29C-123.45")] == ["103456789012"]
        stored = upgraded.get("103456789012")
        assert stored is not None and (stored.plates, stored.seals) == (("29C12345",), ("CNSEAL0001",))
        assert upgraded.meta("identifier_form") == {"identifier_form": edge.cache.IDENTIFIER_FORM}


def test_chinese_plate_with_middle_dot_is_found(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(plates=("桂F12345",))])

    assert [d.number for d in cache.by_plate("桂F·12345")] == ["103456789012"]


def test_trailer_plate_finds_the_same_declaration_as_the_tractor(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(plates=("29C12345", "29R00123"))])

    assert cache.by_plate("29R-001.23") == cache.by_plate("29C-123.45")
    assert len(cache.by_plate("29R00123")) == 1


def test_unknown_plate_finds_nothing(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration()])

    assert cache.by_plate("51D-999.99") == []
    assert cache.by_container("MWCU6059784") == []


def test_truck_on_its_third_trip_finds_all_its_declarations_in_number_order(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration("3"), declaration("1"), declaration("2", plates=("51D12345",)),
                       declaration("4")])

    assert [d.number for d in cache.by_plate("29C-123.45")] == ["1", "3", "4"]


def test_container_read_with_spaces_and_dash_finds_its_declaration(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(containers=("CSQU3054383", "MWCU6059784"))])

    assert [d.number for d in cache.by_container("csqu 305438-3")] == ["103456789012"]
    assert [d.number for d in cache.by_container("MWCU 605978 4")] == ["103456789012"]


def test_container_with_bad_check_digit_is_still_cached_for_the_rules_to_report(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(containers=("CSQU3054384",))])

    assert len(cache.by_container("CSQU3054384")) == 1


def test_declaration_built_by_hand_with_unnormalised_plate_is_still_found(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(plates=("29c-123.45",), containers=("csqu 3054383",))])

    assert len(cache.by_plate("29C12345")) == 1
    assert len(cache.by_container("CSQU3054383")) == 1


def test_get_gives_back_every_field(cache: DeclarationCache) -> None:
    stored = declaration(
        kind=DeclarationKind.TRANSIT, plates=("29C12345", "桂F12345"), containers=(), seals=(),
        gross_weight_kg=None, channel=RiskChannel.YELLOW, status=DeclarationStatus.HELD,
        valid_from=datetime(2025, 1, 1, 1, 2, 3, 456789, tzinfo=UTC), version=7,
    )
    cache.upsert_many([stored])

    assert cache.get(stored.number) == stored
    assert cache.get("no such number") is None


def test_times_in_another_zone_come_back_as_utc(cache: DeclarationCache) -> None:
    hanoi = timezone(timedelta(hours=7))
    cache.upsert_many([declaration(valid_from=datetime(2025, 3, 1, 7, 0, tzinfo=hanoi))])

    got = cache.get("103456789012")
    assert got is not None
    assert got.valid_from == datetime(2025, 3, 1, 0, 0, tzinfo=UTC)
    assert got.valid_from.utcoffset() == timedelta(0)


# -- versions -----------------------------------------------------------------------------------


def test_older_version_from_the_feed_is_ignored(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(version=3, status=DeclarationStatus.HELD)])

    applied = cache.upsert_many([declaration(version=2, status=DeclarationStatus.CLEARED)])

    assert applied == 0
    got = cache.get("103456789012")
    assert got is not None and got.version == 3 and got.status is DeclarationStatus.HELD


def test_newer_version_replaces_and_moves_the_plate_index(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(version=1, plates=("29C12345",), containers=("CSQU3054383",))])

    applied = cache.upsert_many([declaration(version=2, plates=("51D67890",), containers=("MWCU6059784",))])

    assert applied == 1
    assert cache.by_plate("29C12345") == []
    assert cache.by_container("CSQU3054383") == []
    assert [d.version for d in cache.by_plate("51D-678.90")] == [2]
    assert [d.version for d in cache.by_container("MWCU6059784")] == [2]
    assert cache.count() == 1


def test_same_version_delivered_twice_is_applied_again_harmlessly(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(version=2)])

    assert cache.upsert_many([declaration(version=2, gross_weight_kg=25_000.0)]) == 1
    assert [d.gross_weight_kg for d in cache.by_plate("29C12345")] == [25_000.0]


def test_versions_of_one_declaration_in_one_delivery_apply_in_order(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(version=2)])

    # 1 is older than the stored 2 (ignored); 3 applies; 2 is then older (ignored); 4 applies.
    applied = cache.upsert_many([declaration(version=v, plates=(f"29C0000{v}",)) for v in (1, 3, 2, 4)])

    assert applied == 2
    assert [d.version for d in cache.by_plate("29C00004")] == [4]
    assert cache.by_plate("29C12345") == [] and cache.by_plate("29C00003") == []


def test_upsert_counts_each_declaration_applied(cache: DeclarationCache) -> None:
    assert cache.upsert_many(declaration(str(n)) for n in range(25)) == 25
    assert cache.count() == 25


def test_delivery_that_breaks_half_way_stores_nothing(cache: DeclarationCache) -> None:
    def broken_feed() -> Iterator[Declaration]:
        yield declaration("1")
        yield declaration("2")
        raise ConnectionError("link dropped")

    with pytest.raises(ConnectionError):
        cache.upsert_many(broken_feed())

    assert cache.count() == 0
    assert cache.by_plate("29C12345") == []


def test_delivery_larger_than_one_batch_applies_versions_across_batches(
    cache: DeclarationCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge.cache, "BATCH_SIZE", 3)
    feed = [declaration(str(n % 4), version=n, plates=(f"29C{n:05d}",)) for n in range(10)]

    assert cache.upsert_many(feed) == 10
    assert cache.count() == 4
    assert [d.number for d in cache.by_plate("29C00009")] == ["1"]
    assert cache.by_plate("29C00005") == []


def test_hand_built_declaration_moving_plates_leaves_no_stale_index_rows(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration(plates=("29c-123.45",), containers=("csqu 3054383",), version=1)])

    cache.upsert_many([declaration(plates=("51D67890",), containers=("MWCU6059784",), version=2)])

    assert cache.by_plate("29C12345") == []
    assert cache.by_container("CSQU3054383") == []


# -- stats and staleness ------------------------------------------------------------------------


def test_stats_count_by_status_channel_and_kind(cache: DeclarationCache) -> None:
    cache.upsert_many([
        declaration("1"),
        declaration("2", channel=RiskChannel.RED, status=DeclarationStatus.HELD),
        declaration("3", kind=DeclarationKind.EXPORT, channel=RiskChannel.YELLOW),
    ])

    stats = cache.stats()

    assert stats == {
        "total": 3,
        "by_status": {"cleared": 2, "held": 1, "cancelled": 0},
        "by_channel": {"green": 1, "yellow": 1, "red": 1},
        "by_kind": {"import": 2, "export": 1, "transit": 0},
        "refreshed_at": None,
    }


def test_stats_follow_new_declarations_and_refreshes(cache: DeclarationCache) -> None:
    assert cache.stats()["total"] == 0

    cache.upsert_many([declaration("1")])
    cache.mark_refreshed(NOW)

    assert cache.stats()["total"] == 1
    assert cache.stats()["refreshed_at"] == "2025-03-01T08:00:00+00:00"


def test_stats_see_an_import_made_by_another_process(tmp_path: Path) -> None:
    node = DeclarationCache.open(tmp_path / "declarations.sqlite")
    cli = DeclarationCache.open(tmp_path / "declarations.sqlite")
    try:
        assert node.stats()["total"] == 0
        cli.upsert_many([declaration("1"), declaration("2")])
        assert node.stats()["total"] == 2
    finally:
        cli.close()
        node.close()


def test_cache_never_refreshed_has_no_age(cache: DeclarationCache) -> None:
    assert cache.refreshed_at() is None
    assert cache.age_seconds(NOW) is None


def test_age_counts_from_the_last_refresh(cache: DeclarationCache) -> None:
    cache.mark_refreshed(NOW - timedelta(hours=2))
    cache.mark_refreshed(NOW - timedelta(minutes=5))

    assert cache.refreshed_at() == NOW - timedelta(minutes=5)
    assert cache.age_seconds(NOW) == 300.0


def test_naive_times_are_taken_as_utc_for_refresh_and_age(cache: DeclarationCache) -> None:
    cache.mark_refreshed(datetime(2025, 3, 1, 7, 0))

    assert cache.refreshed_at() == datetime(2025, 3, 1, 7, 0, tzinfo=UTC)
    assert cache.age_seconds(datetime(2025, 3, 1, 8, 0)) == 3600.0


# -- the file -----------------------------------------------------------------------------------


def test_cache_file_keeps_declarations_and_refresh_time_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "declarations.sqlite"
    first = DeclarationCache.open(path)
    first.upsert_many([declaration()])
    first.mark_refreshed(NOW)
    first.close()

    again = DeclarationCache.open(path)
    try:
        assert [d.number for d in again.by_plate("29C-123.45")] == ["103456789012"]
        assert again.refreshed_at() == NOW
    finally:
        again.close()


def test_cache_file_is_in_wal_mode_with_plate_and_container_indexes(tmp_path: Path) -> None:
    cache = DeclarationCache.open(tmp_path / "declarations.sqlite")
    cache.close()

    conn = sqlite3.connect(tmp_path / "declarations.sqlite")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        plan = " ".join(row[3] for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT number FROM declaration_plates WHERE plate = ?", ("29C12345",)))
        assert "USING PRIMARY KEY (plate=?)" in plan
        plan = " ".join(row[3] for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT number FROM declaration_containers WHERE container = ?", ("X",)))
        assert "USING PRIMARY KEY (container=?)" in plan
    finally:
        conn.close()


def test_lane_thread_can_look_up_in_a_cache_opened_elsewhere(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration()])
    found: list[list[Declaration]] = []

    worker = threading.Thread(target=lambda: found.append(cache.by_plate("29C12345")))
    worker.start()
    worker.join(timeout=10)

    assert [[d.number for d in result] for result in found] == [["103456789012"]]


# -- the cache agrees with a simple model under any sequence of deliveries -----------------------

_numbers = st.sampled_from(["1", "2", "3"])
_plates = st.lists(st.sampled_from(["29C12345", "51D67890", "29R00123"]), max_size=2, unique=True)
_deliveries = st.lists(
    st.lists(st.tuples(_numbers, st.integers(0, 4), _plates), max_size=6),
    min_size=1, max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(_deliveries)
def test_cache_matches_a_model_of_versioned_replacement(deliveries: list[list[tuple[str, int, list[str]]]]) -> None:
    cache = DeclarationCache.open(":memory:")
    model: dict[str, Declaration] = {}
    try:
        for delivery in deliveries:
            incoming = [declaration(number, version=version, plates=tuple(plates))
                        for number, version, plates in delivery]
            expected_applied = 0
            for item in incoming:
                held = model.get(item.number)
                if held is None or item.version >= held.version:
                    model[item.number] = item
                    expected_applied += 1
            assert cache.upsert_many(incoming) == expected_applied
        for number, expected in model.items():
            assert cache.get(number) == expected
        for plate in ["29C12345", "51D67890", "29R00123"]:
            expected_numbers = sorted(n for n, d in model.items() if plate in d.plates)
            assert [d.number for d in cache.by_plate(plate)] == expected_numbers
        assert cache.count() == len(model)
    finally:
        cache.close()



# -- the declaration feed's batch -----------------------------------------------------------------


def test_a_feed_batch_applies_amendments_revocations_and_its_cursor_together(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration("D1"), declaration("D2")])
    applied = cache.apply_feed([declaration("D2", version=2, gross_weight_kg=30_000.0), declaration("D3")],
                               [("D1", 3), ("NEVER-HELD", 1)], {"feed_cursor": "7"}, NOW)
    assert applied == 3  # D2 amended, D3 new, D1 revoked; a never-held number is skipped
    assert cache.get("D1").status == DeclarationStatus.CANCELLED and cache.get("D1").version == 3
    assert cache.get("D2").gross_weight_kg == 30_000.0 and cache.get("D3") is not None
    assert cache.get("NEVER-HELD") is None
    assert cache.meta("feed_cursor", "absent") == {"feed_cursor": "7"} and cache.refreshed_at() == NOW


def test_a_feed_batch_that_fails_half_way_leaves_nothing_behind(cache: DeclarationCache) -> None:
    cache.upsert_many([declaration("D1")])
    # D2 is written, then the revocation fails (a version that is not a number): all of it is undone
    with pytest.raises(TypeError):
        cache.apply_feed([declaration("D2")], [("D1", "two")], {"feed_cursor": "9"}, NOW)  # type: ignore[list-item]
    assert cache.get("D2") is None and cache.get("D1").status == DeclarationStatus.CLEARED
    assert cache.meta("feed_cursor") == {} and cache.refreshed_at() is None
