"""The rules, as a table: one truck situation per row, with the outcome and reason it must give."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from devices.readings import SealStatus
from edge.config import LanePolicy
from edge.declarations import Declaration, DeclarationKind, DeclarationStatus, RiskChannel
from edge.rules import (
    REASONS,
    DecisionContext,
    Outcome,
    SealSeen,
    TransactionFacts,
    decide,
    decision_for_restart,
)

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
POLICY = LanePolicy(required_readings=["plate", "seal"], weight_tolerance_pct=3.0, max_cache_age_s=3600)

CLEARED = Declaration(
    number="105000000001",
    kind=DeclarationKind.IMPORT,
    gate="HUUNGHI",
    plates=("29C12345",),
    containers=("CSQU3054383",),
    seals=("SEAL-1",),
    gross_weight_kg=28000,
    channel=RiskChannel.GREEN,
    status=DeclarationStatus.CLEARED,
    valid_from=NOW - timedelta(days=1),
    valid_until=NOW + timedelta(days=1),
)
GOOD = TransactionFacts(
    plates=(("29C12345", 0.97),),
    containers=("CSQU3054383",),
    seals=(SealSeen("SEAL-1", SealStatus.INTACT, "CSQU3054383"),),
    weight_kg=28100,
)
CONTEXT = DecisionContext(gate="HUUNGHI", lane_direction="import", now=NOW, cache_age_s=60)

# (name, facts, candidates, context, policy, expected outcome, expected reason)
CASES = [
    ("no declaration for the plate", replace(GOOD, plates=(("51D99999", 0.9),)), [CLEARED], CONTEXT, POLICY,
     Outcome.HOLD, "NO_DECLARATION"),
    ("two declarations equally good", GOOD, [CLEARED, replace(CLEARED, number="105000000002")], CONTEXT, POLICY,
     Outcome.HOLD, "AMBIGUOUS_DECLARATION"),
    ("declaration still held by customs", GOOD, [replace(CLEARED, status=DeclarationStatus.HELD)], CONTEXT, POLICY,
     Outcome.HOLD, "DECLARATION_NOT_CLEARED"),
    ("declaration cancelled", GOOD, [replace(CLEARED, status=DeclarationStatus.CANCELLED)], CONTEXT, POLICY,
     Outcome.REFUSE, "DECLARATION_CANCELLED"),
    ("declaration expired", GOOD, [replace(CLEARED, valid_until=NOW - timedelta(minutes=1))], CONTEXT, POLICY,
     Outcome.HOLD, "DECLARATION_EXPIRED"),
    ("declaration not yet valid", GOOD, [replace(CLEARED, valid_from=NOW + timedelta(hours=1))], CONTEXT, POLICY,
     Outcome.HOLD, "DECLARATION_NOT_YET_VALID"),
    ("declaration already claimed at this gate", GOOD, [CLEARED],
     replace(CONTEXT, used_declarations={CLEARED.number: "claimed by tx t1 at lane IMP-2, passage passed"}), POLICY,
     Outcome.HOLD, "DECLARATION_ALREADY_USED"),
    ("declaration for another gate", GOOD, [replace(CLEARED, gate="LAOBAO")], CONTEXT, POLICY,
     Outcome.HOLD, "WRONG_GATE"),
    ("export declaration at an import lane", GOOD, [replace(CLEARED, kind=DeclarationKind.EXPORT)], CONTEXT, POLICY,
     Outcome.REFUSE, "WRONG_DIRECTION"),
    ("yellow channel", GOOD, [replace(CLEARED, channel=RiskChannel.YELLOW)], CONTEXT, POLICY,
     Outcome.HOLD, "CHANNEL_YELLOW"),
    ("red channel", GOOD, [replace(CLEARED, channel=RiskChannel.RED)], CONTEXT, POLICY,
     Outcome.HOLD, "CHANNEL_RED"),
    ("declared container not seen", GOOD, [replace(CLEARED, containers=("CSQU3054383", "MWCU6059784"))], CONTEXT,
     POLICY, Outcome.HOLD, "CONTAINER_MISSING"),
    ("undeclared container seen", replace(GOOD, containers=("CSQU3054383", "ABCU1234560")), [CLEARED], CONTEXT, POLICY,
     Outcome.HOLD, "CONTAINER_EXTRA"),
    ("container read one check-blind letter from the declared one (C/M)",
     replace(GOOD, containers=("MSQU3054383",), seals=(SealSeen("SEAL-1", SealStatus.INTACT),)), [CLEARED], CONTEXT,
     POLICY, Outcome.HOLD, "CONTAINER_PROBABLE_MISREAD"),
    ("container number fails its check digit", replace(GOOD, containers=("CSQU3054384",)),
     [replace(CLEARED, containers=("CSQU3054384",))], CONTEXT, POLICY, Outcome.HOLD, "CONTAINER_CHECK_DIGIT_INVALID"),
    ("declared seal not read", replace(GOOD, seals=(SealSeen("SEAL-1", SealStatus.INTACT),)),
     [replace(CLEARED, seals=("SEAL-1", "SEAL-2"))], CONTEXT, POLICY, Outcome.HOLD, "SEAL_MISSING"),
    ("seal id differs from the declaration", replace(GOOD, seals=(SealSeen("SEAL-9", SealStatus.INTACT),)),
     [CLEARED], CONTEXT, POLICY, Outcome.HOLD, "SEAL_MISMATCH"),
    ("seal reports opened", replace(GOOD, seals=(SealSeen("SEAL-1", SealStatus.OPENED),)), [CLEARED], CONTEXT, POLICY,
     Outcome.HOLD, "SEAL_OPENED"),
    ("seal reports tampering", replace(GOOD, seals=(SealSeen("SEAL-1", SealStatus.TAMPERED),)), [CLEARED], CONTEXT,
     POLICY, Outcome.HOLD, "SEAL_TAMPERED"),
    ("gross weight 10% over declared", replace(GOOD, weight_kg=30800), [CLEARED], CONTEXT, POLICY,
     Outcome.HOLD, "WEIGHT_OUT_OF_TOLERANCE"),
    ("no seal read where the policy requires one", replace(GOOD, seals=()), [replace(CLEARED, seals=())], CONTEXT,
     POLICY, Outcome.HOLD, "REQUIRED_READING_MISSING"),
    ("plate read with too little confidence", replace(GOOD, plates=(("29C12345", 0.3),)), [CLEARED], CONTEXT, POLICY,
     Outcome.HOLD, "PLATE_LOW_CONFIDENCE"),
    ("container scan looks suspect", replace(GOOD, scan_verdict="suspect"), [CLEARED], CONTEXT, POLICY,
     Outcome.HOLD, "SCANNER_SUSPECT"),
    ("container scan still being analysed", replace(GOOD, scan_verdict="pending"), [CLEARED], CONTEXT, POLICY,
     Outcome.HOLD, "SCANNER_PENDING"),
    ("no weight where the policy requires one", replace(GOOD, weight_kg=None), [CLEARED], CONTEXT,
     POLICY.model_copy(update={"required_readings": ["plate", "seal", "weight"]}), Outcome.HOLD,
     "REQUIRED_READING_MISSING"),
    ("cache older than policy allows", GOOD, [CLEARED], replace(CONTEXT, cache_age_s=7200), POLICY,
     Outcome.HOLD, "CACHE_STALE"),
    ("cache never refreshed", GOOD, [CLEARED], replace(CONTEXT, cache_age_s=None), POLICY,
     Outcome.HOLD, "CACHE_STALE"),
    ("a lane device is faulty", GOOD, [CLEARED], replace(CONTEXT, faulty_devices=("IMP-1-eseal",)), POLICY,
     Outcome.HOLD, "DEVICE_FAULT"),
    ("two different confident plates for one truck", replace(GOOD, plates=(("29C12345", 0.97), ("51D67890", 0.93))),
     [CLEARED], CONTEXT, POLICY, Outcome.HOLD, "PLATE_CONFLICT"),
    ("scanner said clear after suspect", replace(GOOD, scan_verdict="suspect", scan_conflict="clear after suspect"),
     [CLEARED], CONTEXT, POLICY, Outcome.HOLD, "SCAN_CONFLICT"),
]


@pytest.mark.parametrize(
    "facts, candidates, context, policy, outcome, reason",
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_truck_situation_gives_its_reason(facts, candidates, context, policy, outcome, reason):
    decision = decide(facts, candidates, policy, context)
    assert decision.outcome == outcome
    assert reason in decision.reasons


def test_every_reason_code_has_a_case_in_the_table():
    covered = {case[-1] for case in CASES} | {"NODE_RESTARTED"}
    assert covered == set(REASONS)


def test_cleared_green_truck_with_matching_readings_is_released():
    decision = decide(GOOD, [CLEARED], POLICY, CONTEXT)
    assert decision.outcome == Outcome.RELEASE
    assert decision.reasons == []
    assert decision.declaration == CLEARED.number
    assert decision.ruleset_version


def test_a_check_blind_misread_is_named_as_such_not_as_a_missing_and_an_extra_container():
    unsealed = (SealSeen("SEAL-1", SealStatus.INTACT),)
    decision = decide(replace(GOOD, containers=("MSQU3054383",), seals=unsealed), [CLEARED], POLICY, CONTEXT)
    assert decision.outcome == Outcome.HOLD
    assert decision.reasons == ["CONTAINER_PROBABLE_MISREAD"]
    assert "read MSQU3054383, declared CSQU3054383" in [f.detail for f in decision.findings]
    assert not decision.awaiting_readings  # the misread stays among what was seen: an officer must look
    # two characters apart is another container; so is a twin of a declared number that was itself seen
    other = decide(replace(GOOD, containers=("MWCU6059784",), seals=unsealed), [CLEARED], POLICY, CONTEXT)
    assert set(other.reasons) == {"CONTAINER_EXTRA", "CONTAINER_MISSING"}
    both = decide(replace(GOOD, containers=("CSQU3054383", "MSQU3054383")), [CLEARED], POLICY, CONTEXT)
    assert both.reasons == ["CONTAINER_EXTRA"]
    # a reading that fails the check digit is that reason, never a probable misread
    invalid = decide(replace(GOOD, containers=("CSQU3054384",), seals=unsealed), [CLEARED], POLICY, CONTEXT)
    assert "CONTAINER_PROBABLE_MISREAD" not in invalid.reasons


def test_weight_within_tolerance_is_released():
    assert decide(replace(GOOD, weight_kg=28800), [CLEARED], POLICY, CONTEXT).outcome == Outcome.RELEASE


def test_missing_readings_mark_the_decision_as_awaiting_more():
    decision = decide(replace(GOOD, seals=()), [CLEARED], POLICY, CONTEXT)
    assert decision.outcome == Outcome.HOLD
    assert decision.awaiting_readings


def test_definitive_hold_is_not_awaiting_readings():
    decision = decide(GOOD, [replace(CLEARED, channel=RiskChannel.RED)], POLICY, CONTEXT)
    assert decision.outcome == Outcome.HOLD
    assert not decision.awaiting_readings


def test_usable_declaration_is_preferred_over_a_used_one_for_the_same_plate():
    old = replace(CLEARED, number="105000000000")
    context = replace(CONTEXT, used_declarations={old.number: "claimed by tx t0 at lane IMP-1, passage passed"})
    decision = decide(GOOD, [old, CLEARED], POLICY, context)
    assert decision.outcome == Outcome.RELEASE
    assert decision.declaration == CLEARED.number


def test_claimed_declaration_names_who_holds_the_claim():
    claim = "claimed by tx 9f2c at lane EXP-1, passage unknown"
    decision = decide(GOOD, [CLEARED], POLICY, replace(CONTEXT, used_declarations={CLEARED.number: claim}))
    assert decision.outcome == Outcome.HOLD
    details = [f.detail for f in decision.findings if f.code == "DECLARATION_ALREADY_USED"]
    assert details == [f"{CLEARED.number} {claim}"]


def test_trailer_plate_alone_matches_the_declaration():
    declaration = replace(CLEARED, plates=("29C12345", "29R01234"))
    facts = replace(GOOD, plates=(("29R01234", 0.9),))
    assert decide(facts, [declaration], POLICY, CONTEXT).outcome == Outcome.RELEASE


def test_decision_is_the_same_for_the_same_inputs():
    assert decide(GOOD, [CLEARED], POLICY, CONTEXT) == decide(GOOD, [CLEARED], POLICY, CONTEXT)


def test_restart_hold_names_the_restart():
    decision = decision_for_restart("105000000001")
    assert decision.outcome == Outcome.HOLD and decision.reasons == ["NODE_RESTARTED"]


def test_every_reason_has_plain_words_for_the_officer():
    for code, info in REASONS.items():
        assert info.text and code.isupper()


def test_wrong_seal_holds_at_once_without_waiting_for_the_declared_one():
    facts = replace(GOOD, seals=(SealSeen("SEAL-9", SealStatus.INTACT),))
    decision = decide(facts, [CLEARED], POLICY, CONTEXT)
    assert {"SEAL_MISMATCH", "SEAL_MISSING"} <= set(decision.reasons)
    assert not decision.awaiting_readings


def test_held_truck_still_waits_for_a_reading_kind_that_has_not_arrived():
    facts = replace(GOOD, seals=())
    decision = decide(facts, [replace(CLEARED, channel=RiskChannel.RED)], POLICY, CONTEXT)
    assert decision.outcome == Outcome.HOLD and decision.awaiting_readings


def test_clear_scan_releases_and_pending_scan_waits():
    assert decide(replace(GOOD, scan_verdict="clear"), [CLEARED], POLICY, CONTEXT).outcome == Outcome.RELEASE
    assert decide(replace(GOOD, scan_verdict="pending"), [CLEARED], POLICY, CONTEXT).awaiting_readings


def test_suspect_scan_on_a_red_channel_truck_is_never_released():
    decision = decide(replace(GOOD, scan_verdict="suspect"), [replace(CLEARED, channel=RiskChannel.RED)], POLICY,
                      CONTEXT)
    assert decision.outcome == Outcome.HOLD and {"SCANNER_SUSPECT", "CHANNEL_RED"} <= set(decision.reasons)


def test_forged_second_plate_of_a_cleared_declaration_never_matches_an_undeclared_truck():
    undeclared = replace(GOOD, plates=(("51D99999", 0.96), ("29C12345", 0.95)))  # its own, and a forged one
    decision = decide(undeclared, [CLEARED], POLICY, CONTEXT)
    assert decision.outcome == Outcome.HOLD and "PLATE_CONFLICT" in decision.reasons
    assert decision.declaration is None
    assert "51D99999" in next(f.detail for f in decision.findings if f.code == "PLATE_CONFLICT")


def test_a_low_confidence_different_read_is_not_a_plate_conflict():
    facts = replace(GOOD, plates=(("29C12345", 0.97), ("29C12845", 0.4)))
    decision = decide(facts, [CLEARED], POLICY, CONTEXT)
    assert decision.outcome == Outcome.RELEASE and decision.declaration == CLEARED.number


def test_tractor_and_trailer_plates_on_one_declaration_are_not_a_conflict():
    trailer = replace(CLEARED, plates=("29C12345", "29R01234"))
    facts = replace(GOOD, plates=(("29C12345", 0.97), ("29R01234", 0.91)))
    decision = decide(facts, [trailer], POLICY, CONTEXT)
    assert decision.outcome == Outcome.RELEASE and decision.declaration == trailer.number


def test_scan_conflict_holds_even_when_the_worst_verdict_is_clear():
    decision = decide(replace(GOOD, scan_verdict="clear", scan_conflict="scan B clear while scan A in progress"),
                      [CLEARED], POLICY, CONTEXT)
    assert decision.outcome == Outcome.HOLD and decision.reasons == ["SCAN_CONFLICT"]
    assert not decision.awaiting_readings
