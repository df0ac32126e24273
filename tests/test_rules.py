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
    ("no seal read where the lane checks seals and the declaration declares one", replace(GOOD, seals=()), [CLEARED],
     CONTEXT, POLICY, Outcome.HOLD, "REQUIRED_READING_MISSING"),
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


# -- what a truck must show follows its declaration (issue 26, point 2) ------------------------------

EVERY_KIND = LanePolicy(required_readings=["plate", "seal", "container", "weight"], weight_tolerance_pct=3.0,
                        max_cache_age_s=3600)
EMPTY = replace(CLEARED, number="105000000010", containers=(), seals=(), gross_weight_kg=15000)
PLATE_AND_WEIGHT = TransactionFacts(plates=(("29C12345", 0.97),), weight_kg=15100)


def test_declared_empty_truck_needs_no_seal_and_no_container():
    decision = decide(PLATE_AND_WEIGHT, [EMPTY], EVERY_KIND, CONTEXT)
    assert decision.outcome == Outcome.RELEASE and decision.reasons == []
    assert not decision.awaiting_readings  # the lane decides at once: nothing more to wait for


def test_unsealed_empty_container_going_home_needs_its_container_but_no_seal():
    unsealed = replace(EMPTY, containers=("MWCU6059784",))
    assert decide(replace(PLATE_AND_WEIGHT, containers=("MWCU6059784",)), [unsealed], EVERY_KIND,
                  CONTEXT).outcome == Outcome.RELEASE
    waiting = decide(PLATE_AND_WEIGHT, [unsealed], EVERY_KIND, CONTEXT)
    assert waiting.outcome == Outcome.HOLD and waiting.awaiting_readings
    assert [f.detail for f in waiting.findings if f.code == "REQUIRED_READING_MISSING"] == ["container"]


def test_a_seal_on_a_truck_declared_without_seals_holds_it():
    facts = replace(PLATE_AND_WEIGHT, seals=(SealSeen("SEAL-9", SealStatus.INTACT),))
    decision = decide(facts, [EMPTY], EVERY_KIND, CONTEXT)
    assert decision.outcome == Outcome.HOLD and decision.reasons == ["SEAL_MISMATCH"]


def test_lane_wide_readings_stay_required_for_an_empty_truck():
    decision = decide(replace(PLATE_AND_WEIGHT, weight_kg=None), [EMPTY], EVERY_KIND, CONTEXT)
    assert decision.outcome == Outcome.HOLD
    assert [f.detail for f in decision.findings if f.code == "REQUIRED_READING_MISSING"] == ["weight"]
    scanned = POLICY.model_copy(update={"required_readings": ["plate", "seal", "scan"]})
    assert "REQUIRED_READING_MISSING" in decide(PLATE_AND_WEIGHT, [EMPTY], scanned, CONTEXT).reasons


def test_unknown_plate_is_held_at_once_without_waiting_for_seals():
    decision = decide(TransactionFacts(plates=(("51D99999", 0.95),)), [CLEARED], POLICY, CONTEXT)
    assert decision.reasons == ["NO_DECLARATION"] and not decision.awaiting_readings


def test_open_choice_waits_for_seals_only_when_a_candidate_declares_them():
    plate_only = TransactionFacts(plates=(("29C12345", 0.97),))
    sealed = decide(plate_only, [CLEARED, replace(CLEARED, number="105000000002")], POLICY, CONTEXT)
    assert {"AMBIGUOUS_DECLARATION", "REQUIRED_READING_MISSING"} <= set(sealed.reasons) and sealed.awaiting_readings
    unsealed = decide(plate_only, [EMPTY, replace(EMPTY, number="105000000011")], POLICY, CONTEXT)
    assert unsealed.reasons == ["AMBIGUOUS_DECLARATION"] and not unsealed.awaiting_readings


# -- consolidated loads (issue 26, point 4) ---------------------------------------------------------

FIRST = replace(CLEARED, number="105000000021", containers=("CSQU3054383",), seals=("SEAL-1",),
                gross_weight_kg=14000)
SECOND = replace(CLEARED, number="105000000022", containers=("MWCU6059784",), seals=("SEAL-2",),
                 gross_weight_kg=15000)
BOTH = TransactionFacts(
    plates=(("29C12345", 0.97),),
    containers=("CSQU3054383", "MWCU6059784"),
    seals=(SealSeen("SEAL-1", SealStatus.INTACT, "CSQU3054383"), SealSeen("SEAL-2", SealStatus.INTACT, "MWCU6059784")),
    weight_kg=29100,
)


def test_two_cleared_consignments_on_one_truck_are_released_together():
    decision = decide(BOTH, [SECOND, FIRST], POLICY, CONTEXT)
    assert decision.outcome == Outcome.RELEASE and decision.reasons == []
    assert decision.declarations == (FIRST.number, SECOND.number)
    assert decision.declaration == FIRST.number
    assert decision.to_dict()["declarations"] == [FIRST.number, SECOND.number]


def test_consolidated_weight_is_compared_with_the_sum_of_the_declared_weights():
    assert decide(replace(BOTH, weight_kg=28800), [FIRST, SECOND], POLICY, CONTEXT).outcome == Outcome.RELEASE
    light = decide(replace(BOTH, weight_kg=15000), [FIRST, SECOND], POLICY, CONTEXT)
    assert light.reasons == ["WEIGHT_OUT_OF_TOLERANCE"]
    assert f"29000 kg declared on {FIRST.number} + {SECOND.number}" in light.findings[0].detail


def test_consolidated_channel_is_the_strictest_and_names_its_declaration():
    decision = decide(BOTH, [replace(FIRST, channel=RiskChannel.YELLOW), replace(SECOND, channel=RiskChannel.RED)],
                      POLICY, CONTEXT)
    assert decision.outcome == Outcome.HOLD and decision.reasons == ["CHANNEL_RED"]
    assert [f.declaration for f in decision.findings] == [SECOND.number]


@pytest.mark.parametrize("change, reason, outcome", [
    ({"status": DeclarationStatus.HELD}, "DECLARATION_NOT_CLEARED", Outcome.HOLD),
    ({"valid_until": NOW - timedelta(hours=1)}, "DECLARATION_EXPIRED", Outcome.HOLD),
    ({"gate": "LAOBAO"}, "WRONG_GATE", Outcome.HOLD),
    ({"kind": DeclarationKind.EXPORT}, "WRONG_DIRECTION", Outcome.REFUSE),
])
def test_one_unusable_declaration_of_a_consolidated_load_stops_the_truck_and_is_named(change, reason, outcome):
    decision = decide(BOTH, [FIRST, replace(SECOND, **change)], POLICY, CONTEXT)
    assert decision.outcome == outcome and decision.reasons == [reason]
    assert decision.findings[0].declaration == SECOND.number
    assert decision.declarations == (FIRST.number, SECOND.number)


def test_consolidated_load_must_cover_exactly_what_was_seen():
    third = "ABCU1234560"
    extra = decide(replace(BOTH, containers=(*BOTH.containers, third)), [FIRST, SECOND], POLICY, CONTEXT)
    assert extra.reasons == ["CONTAINER_EXTRA"] and extra.findings[0].detail == third
    more = replace(SECOND, containers=("MWCU6059784", third))
    missing = decide(BOTH, [FIRST, more], POLICY, CONTEXT)
    assert missing.reasons == ["CONTAINER_MISSING"]
    assert (missing.findings[0].detail, missing.findings[0].declaration) == (third, SECOND.number)
    unread = decide(replace(BOTH, seals=BOTH.seals[:1]), [FIRST, replace(SECOND, containers=())], POLICY, CONTEXT)
    # SECOND covers nothing seen now: it is not part of the load, FIRST alone is judged
    assert unread.declarations == (FIRST.number,)


def test_one_consignment_seen_keeps_the_lane_collecting_for_the_other():
    facts = replace(BOTH, containers=("CSQU3054383",), seals=BOTH.seals[:1], weight_kg=14050)
    decision = decide(facts, [FIRST, SECOND], POLICY, CONTEXT)
    assert decision.declarations == (FIRST.number,)
    assert decision.outcome == Outcome.RELEASE and decision.awaiting_readings  # released only at the timeout
    used = replace(CONTEXT, used_declarations=frozenset({SECOND.number}))
    assert not decide(facts, [FIRST, SECOND], POLICY, used).awaiting_readings


def test_two_declarations_for_the_same_container_stay_ambiguous():
    twin = replace(SECOND, containers=FIRST.containers + SECOND.containers)
    decision = decide(BOTH, [replace(FIRST, number="105000000023", containers=twin.containers, seals=twin.seals),
                             twin], POLICY, CONTEXT)
    assert decision.reasons == ["AMBIGUOUS_DECLARATION"] and decision.declarations == ()


def test_a_declaration_for_another_truck_is_not_part_of_the_load():
    other_truck = replace(SECOND, plates=("51D67890",))
    decision = decide(BOTH, [FIRST, other_truck], POLICY, CONTEXT)
    assert decision.declarations == (FIRST.number,)
    assert {"CONTAINER_EXTRA", "SEAL_MISMATCH"} <= set(decision.reasons)


def test_consolidated_decision_survives_the_journal_and_a_restart():
    from edge.records import decision_from_dict

    held = decide(BOTH, [FIRST, replace(SECOND, channel=RiskChannel.YELLOW)], POLICY, CONTEXT)
    again = decision_from_dict(held.to_dict())
    assert again == held and again.findings[0].declaration == SECOND.number
    assert decision_for_restart(held.declarations).declarations == (FIRST.number, SECOND.number)
    old_row = {"outcome": "release", "findings": [], "declaration": FIRST.number}  # written before this ruleset
    assert decision_from_dict(old_row).declarations == (FIRST.number,)


# -- identifiers compared as identifiers (issue 26, point 7) ---------------------------------------

@pytest.mark.parametrize("gate", ["huunghi", " HuuNghi ", "ＨＵＵＮＧＨＩ"])
def test_gate_code_compares_without_case_or_surrounding_space(gate):
    decision = decide(GOOD, [replace(CLEARED, gate=gate)], POLICY, CONTEXT)
    assert decision.outcome == Outcome.RELEASE
    assert decide(GOOD, [replace(CLEARED, gate="laobao")], POLICY, CONTEXT).reasons == ["WRONG_GATE"]
