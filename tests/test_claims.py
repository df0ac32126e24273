"""Declaration claims in the cache's own SQLite file: one claim per declaration per gate, all or none."""

from __future__ import annotations

import sqlite3
import threading

from edge.cache import DeclarationCache
from edge.claims import ClaimPassage


def _claim(cache: DeclarationCache, numbers: list[str], tx: str, lane: str = "IMP-1", by: str = "auto"):
    return cache.claim(numbers, gate="HUUNGHI", lane=lane, transaction=tx, at=1000.0, released_by=by)


def test_first_claim_wins_and_the_second_names_who_holds_it(tmp_path):
    with DeclarationCache.open(tmp_path / "cache.sqlite") as cache:
        assert _claim(cache, ["105000000001"], "tx-a", lane="IMP-1") == []
        conflicts = _claim(cache, ["105000000001"], "tx-b", lane="EXP-1")
        assert [(c.number, c.transaction, c.lane, c.passage) for c in conflicts] == [
            ("105000000001", "tx-a", "IMP-1", ClaimPassage.COMMANDED)]
        assert conflicts[0].words() == "claimed by tx tx-a at lane IMP-1, passage commanded"
        assert cache.claims(["105000000001"])["105000000001"].transaction == "tx-a"


def test_the_same_transaction_claiming_again_is_no_conflict(tmp_path):
    with DeclarationCache.open(tmp_path / "cache.sqlite") as cache:
        assert _claim(cache, ["105000000001"], "tx-a") == []
        assert _claim(cache, ["105000000001"], "tx-a") == []  # the open command retried
        assert [c.number for c in cache.claims_of("tx-a")] == ["105000000001"]


def test_several_declarations_are_claimed_all_or_none(tmp_path):
    with DeclarationCache.open(tmp_path / "cache.sqlite") as cache:
        assert _claim(cache, ["105000000002"], "tx-a") == []
        conflicts = _claim(cache, ["105000000001", "105000000002", "105000000003"], "tx-b")
        assert [c.number for c in conflicts] == ["105000000002"]
        assert cache.claims(["105000000001", "105000000003"]) == {}  # nothing of tx-b's was kept
        assert _claim(cache, ["105000000001", "105000000003"], "tx-b") == []
        assert sorted(cache.claims_of("tx-b"), key=lambda c: c.number)[0].number == "105000000001"


def test_claims_survive_reopening_and_are_visible_to_another_connection(tmp_path):
    path = tmp_path / "cache.sqlite"
    with DeclarationCache.open(path) as cache:
        _claim(cache, ["105000000001"], "tx-a", by="officer-12")
    with sqlite3.connect(path) as other:  # what a second process (the CLI, a test) reads
        rows = other.execute("SELECT number, transaction_id, released_by, passage FROM declaration_claims").fetchall()
    assert rows == [("105000000001", "tx-a", "officer-12", "commanded")]
    with DeclarationCache.open(path) as cache:
        assert _claim(cache, ["105000000001"], "tx-b") != []


def test_passage_is_recorded_and_a_claim_is_released_only_by_its_holder(tmp_path):
    with DeclarationCache.open(tmp_path / "cache.sqlite") as cache:
        _claim(cache, ["105000000001"], "tx-a")
        assert cache.set_claim_passage("tx-a", ClaimPassage.UNKNOWN) == 1
        assert [c.number for c in cache.claim_list(passage=ClaimPassage.UNKNOWN)] == ["105000000001"]
        assert cache.claim_list(passage=ClaimPassage.PASSED) == []
        assert cache.release_claim("105000000001", "tx-other") is False
        assert cache.release_claim("105000000001", "tx-a") is True
        assert cache.claims(["105000000001"]) == {}
        assert _claim(cache, ["105000000001"], "tx-b") == []


def test_two_connections_racing_for_one_declaration_give_it_to_exactly_one(tmp_path):
    path = tmp_path / "cache.sqlite"
    DeclarationCache.open(path).close()
    caches = [DeclarationCache.open(path) for _ in range(4)]
    start = threading.Barrier(len(caches))
    results: dict[int, list] = {}

    def race(index: int) -> None:
        start.wait()
        results[index] = _claim(caches[index], ["105000000009"], f"tx-{index}", lane=f"L{index}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(caches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for cache in caches:
        cache.close()
    winners = [i for i, conflicts in results.items() if conflicts == []]
    assert len(results) == 4 and len(winners) == 1
    assert all(c[0].transaction == f"tx-{winners[0]}" for i, c in results.items() if i not in winners)


def test_the_holder_claiming_again_marks_its_truck_on_its_way_again(tmp_path):
    with DeclarationCache.open(tmp_path / "cache.sqlite") as cache:
        _claim(cache, ["105000000001"], "tx-a")
        cache.set_claim_passage("tx-a", ClaimPassage.UNKNOWN)  # a restart left it unknown
        assert _claim(cache, ["105000000001"], "tx-b") != []
        assert cache.claims(["105000000001"])["105000000001"].passage == ClaimPassage.UNKNOWN
        assert _claim(cache, ["105000000001"], "tx-a", by="officer-12") == []  # released again after review
        claim = cache.claims(["105000000001"])["105000000001"]
        assert (claim.passage, claim.released_by) == (ClaimPassage.COMMANDED, "auto")
