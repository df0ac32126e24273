"""Release / hold / refuse: a pure function of a transaction, candidate declarations, policy and now.

No I/O and no clock: the caller looks the declarations up and passes the time in. Every decision
carries machine-readable reason codes and the rule-set version, so a decision can be explained and
replayed later. Reason codes, their severity and their plain-language text live in REASONS, here
and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from devices.protocols.iso6346 import is_valid_container
from devices.readings import SealStatus
from edge.config import LanePolicy
from edge.declarations import (
    Declaration,
    DeclarationKind,
    DeclarationStatus,
    RiskChannel,
)

RULESET_VERSION = "2026.12.2"  # .2: PLATE_CONFLICT, SCAN_CONFLICT


class Outcome(StrEnum):
    RELEASE = "release"
    HOLD = "hold"
    REFUSE = "refuse"


@dataclass(frozen=True)
class ReasonInfo:
    """What a reason code means: its outcome, whether more readings may clear it, and its text."""

    outcome: Outcome
    awaits_readings: bool
    text: str


REASONS: dict[str, ReasonInfo] = {
    "NO_DECLARATION": ReasonInfo(Outcome.HOLD, False, "No declaration in the cache for this plate"),
    "AMBIGUOUS_DECLARATION": ReasonInfo(
        Outcome.HOLD, False, "Several declarations match this truck; the officer must choose"),
    "DECLARATION_NOT_CLEARED": ReasonInfo(Outcome.HOLD, False, "Declaration is not cleared yet"),
    "DECLARATION_CANCELLED": ReasonInfo(Outcome.REFUSE, False, "Declaration was cancelled"),
    "DECLARATION_EXPIRED": ReasonInfo(Outcome.HOLD, False, "Declaration validity has expired"),
    "DECLARATION_NOT_YET_VALID": ReasonInfo(Outcome.HOLD, False, "Declaration is not valid yet"),
    "DECLARATION_ALREADY_USED": ReasonInfo(
        Outcome.HOLD, False,
        "Declaration is already claimed at this gate: the barrier was opened for another truck on it"),
    "WRONG_GATE": ReasonInfo(Outcome.HOLD, False, "Declaration names another border gate"),
    "WRONG_DIRECTION": ReasonInfo(
        Outcome.REFUSE, False, "Declaration is for the other direction (import/export)"),
    "CHANNEL_YELLOW": ReasonInfo(Outcome.HOLD, False, "Yellow channel: documents must be checked"),
    "CHANNEL_RED": ReasonInfo(Outcome.HOLD, False, "Red channel: physical inspection required"),
    "CONTAINER_MISSING": ReasonInfo(Outcome.HOLD, True, "A declared container was not seen"),
    "CONTAINER_EXTRA": ReasonInfo(Outcome.HOLD, False, "A container not on the declaration was seen"),
    "CONTAINER_CHECK_DIGIT_INVALID": ReasonInfo(
        Outcome.HOLD, False, "A container number fails its ISO 6346 check digit"),
    "CONTAINER_PROBABLE_MISREAD": ReasonInfo(
        Outcome.HOLD, False,
        "A container number one character from a declared one was seen: the check digit cannot tell which "
        "is on the door"),
    "SEAL_MISSING": ReasonInfo(Outcome.HOLD, True, "A declared seal was not read"),
    "SEAL_MISMATCH": ReasonInfo(Outcome.HOLD, False, "A seal that is not on the declaration was read"),
    "SEAL_OPENED": ReasonInfo(Outcome.HOLD, False, "A seal reports it was opened"),
    "SEAL_TAMPERED": ReasonInfo(Outcome.HOLD, False, "A seal reports tampering"),
    "WEIGHT_OUT_OF_TOLERANCE": ReasonInfo(
        Outcome.HOLD, False, "Gross weight differs from the declared weight beyond tolerance"),
    "REQUIRED_READING_MISSING": ReasonInfo(
        Outcome.HOLD, True, "A reading the lane policy requires has not arrived"),
    "PLATE_LOW_CONFIDENCE": ReasonInfo(
        Outcome.HOLD, True, "The plate was read with too little confidence"),
    "PLATE_CONFLICT": ReasonInfo(
        Outcome.HOLD, False,
        "Two different plates were read with confidence for one truck and no declaration names both: "
        "a misread or a forged reading; the officer must look at the truck"),
    "SCANNER_SUSPECT": ReasonInfo(Outcome.HOLD, False, "The container scan looks suspect: inspection needed"),
    "SCANNER_PENDING": ReasonInfo(Outcome.HOLD, True, "The container scan is still being analysed"),
    "SCAN_CONFLICT": ReasonInfo(
        Outcome.HOLD, False,
        "The scanner reported contradicting verdicts for this truck (a clear after a suspect, or a verdict for a "
        "scan that was not the one in progress): the worst verdict stands"),
    "CACHE_STALE": ReasonInfo(
        Outcome.HOLD, False, "Declaration cache is older than policy allows for auto-release"),
    "DEVICE_FAULT": ReasonInfo(Outcome.HOLD, False, "A lane device is faulty: no auto-release"),
    "NODE_RESTARTED": ReasonInfo(
        Outcome.HOLD, False, "The node restarted during this transaction: officer must review"),
}


@dataclass(frozen=True)
class Finding:
    """One reason code with the specifics (which seal, which container)."""

    code: str
    detail: str = ""

    @property
    def info(self) -> ReasonInfo:
        return REASONS[self.code]


@dataclass(frozen=True)
class SealSeen:
    seal_id: str
    status: SealStatus
    container: str | None = None


@dataclass(frozen=True)
class TransactionFacts:
    """What the lane observed about one truck, as the rules need it."""

    plates: tuple[tuple[str, float], ...] = ()  # (normalised plate, confidence)
    containers: tuple[str, ...] = ()
    seals: tuple[SealSeen, ...] = ()
    weight_kg: float | None = None
    scan_verdict: str | None = None  # clear / suspect / pending: the worst verdict seen
    scan_conflict: str | None = None  # what contradicted what, when the scanner's verdicts disagree


@dataclass(frozen=True)
class DecisionContext:
    """Everything about the gate the rules need, passed in (no clock, no database)."""

    gate: str
    lane_direction: str
    now: datetime
    cache_age_s: float | None
    faulty_devices: tuple[str, ...] = ()
    # Declarations claimed at this gate by another transaction (edge/claims.py): number -> the claim in words.
    used_declarations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    findings: tuple[Finding, ...]
    declaration: str | None
    ruleset_version: str = RULESET_VERSION
    awaiting_readings: bool = False

    @property
    def reasons(self) -> list[str]:
        """Reason codes, without duplicates, in the order found."""
        return list(dict.fromkeys(f.code for f in self.findings))

    def to_dict(self) -> dict:
        """JSON-friendly form for the journal and the API."""
        return {
            "outcome": self.outcome.value,
            "reasons": self.reasons,
            "findings": [
                {"code": f.code, "detail": f.detail, "text": f.info.text} for f in self.findings
            ],
            "declaration": self.declaration,
            "ruleset_version": self.ruleset_version,
            "awaiting_readings": self.awaiting_readings,
        }


def _direction_matches(declaration: Declaration, lane_direction: str) -> bool:
    return declaration.kind == DeclarationKind.TRANSIT or declaration.kind.value == lane_direction


def select_declaration(
    facts: TransactionFacts, candidates: Sequence[Declaration], context: DecisionContext
) -> tuple[Declaration | None, list[Finding]]:
    """Pick the declaration this truck travels under, preferring usable, best-matching ones."""
    plates = {plate for plate, _ in facts.plates}
    matching = [d for d in candidates if plates & set(d.plates)]
    unique = {d.number: d for d in matching}
    if not unique:
        return None, [Finding("NO_DECLARATION", ", ".join(sorted(plates)))]
    if len(unique) == 1:
        return next(iter(unique.values())), []

    def usable(d: Declaration) -> bool:
        return (
            d.status == DeclarationStatus.CLEARED
            and d.valid_from <= context.now <= d.valid_until
            and d.gate == context.gate
            and _direction_matches(d, context.lane_direction)
            and d.number not in context.used_declarations
        )

    def overlap(d: Declaration) -> int:
        return len(set(d.containers) & set(facts.containers)) + len(
            set(d.seals) & {s.seal_id for s in facts.seals}
        )

    ranked = sorted(unique.values(), key=lambda d: (usable(d), overlap(d)), reverse=True)
    best, runner_up = ranked[0], ranked[1]
    if (usable(best), overlap(best)) == (usable(runner_up), overlap(runner_up)):
        return None, [Finding("AMBIGUOUS_DECLARATION", ", ".join(sorted(unique)))]
    return best, []


def _check_declaration(d: Declaration, context: DecisionContext) -> Iterable[Finding]:
    if d.status == DeclarationStatus.CANCELLED:
        yield Finding("DECLARATION_CANCELLED", d.number)
    elif d.status != DeclarationStatus.CLEARED:
        yield Finding("DECLARATION_NOT_CLEARED", f"{d.number} is {d.status.value}")
    if context.now > d.valid_until:
        yield Finding("DECLARATION_EXPIRED", f"valid until {d.valid_until.isoformat()}")
    if context.now < d.valid_from:
        yield Finding("DECLARATION_NOT_YET_VALID", f"valid from {d.valid_from.isoformat()}")
    if d.number in context.used_declarations:
        yield Finding("DECLARATION_ALREADY_USED", f"{d.number} {context.used_declarations[d.number]}".rstrip())
    if d.gate != context.gate:
        yield Finding("WRONG_GATE", f"declared for {d.gate}")
    if not _direction_matches(d, context.lane_direction):
        yield Finding("WRONG_DIRECTION", f"{d.kind.value} declaration at an {context.lane_direction} lane")
    if d.channel == RiskChannel.YELLOW:
        yield Finding("CHANNEL_YELLOW")
    elif d.channel == RiskChannel.RED:
        yield Finding("CHANNEL_RED")


def _check_containers(
    facts: TransactionFacts, d: Declaration | None, policy: LanePolicy
) -> Iterable[Finding]:
    seen = set(facts.containers) | {s.container for s in facts.seals if s.container}
    for number in sorted(seen):
        if not is_valid_container(number):
            yield Finding("CONTAINER_CHECK_DIGIT_INVALID", number)
    if d is None:
        return
    for number in d.containers:
        if not is_valid_container(number):
            yield Finding("CONTAINER_CHECK_DIGIT_INVALID", f"declared {number}")
    accounted_for: set[str] = set()
    for number in sorted(seen - set(d.containers)):
        twin = _one_character_from(number, [n for n in d.containers if n not in seen])
        if twin is None:
            yield Finding("CONTAINER_EXTRA", number)
        else:
            accounted_for.add(twin)
            yield Finding("CONTAINER_PROBABLE_MISREAD", f"read {number}, declared {twin}")
    if "container" in policy.required_readings or seen:
        for number in d.containers:
            if number not in seen and number not in accounted_for:
                yield Finding("CONTAINER_MISSING", number)


def _one_character_from(read: str, declared: Iterable[str]) -> str | None:
    """The declared number that `read` differs from in exactly one character, both passing the check digit.

    A check digit catches every one-character change except a letter for one whose ISO 6346 value
    is 11 apart (M/W, G/Q, H/R, B/L, ...) or a change between sums whose residues are 0 and 10:
    the swaps a camera makes of a blurred door and the check cannot flag. Such a reading is far
    more likely the declared container misread than another container, so the officer is told to
    look at the door, not that a container is missing and another one extra. It is still a hold.
    """
    if not is_valid_container(read):
        return None
    for number in declared:
        if (len(number) == len(read) and is_valid_container(number)
                and sum(a != b for a, b in zip(number, read, strict=True)) == 1):
            return number
    return None


def _check_seals(
    facts: TransactionFacts, d: Declaration | None, policy: LanePolicy
) -> Iterable[Finding]:
    for seal in facts.seals:
        if seal.status == SealStatus.TAMPERED:
            yield Finding("SEAL_TAMPERED", seal.seal_id)
        elif seal.status == SealStatus.OPENED:
            yield Finding("SEAL_OPENED", seal.seal_id)
    if d is None:
        return
    read_ids = {s.seal_id for s in facts.seals}
    for seal_id in sorted(read_ids - set(d.seals)):
        yield Finding("SEAL_MISMATCH", f"{seal_id} is not on {d.number}")
    if "seal" in policy.required_readings:
        for seal_id in d.seals:
            if seal_id not in read_ids:
                yield Finding("SEAL_MISSING", seal_id)


def _check_weight(
    facts: TransactionFacts, d: Declaration | None, policy: LanePolicy
) -> Iterable[Finding]:
    if d is None or facts.weight_kg is None or not d.gross_weight_kg:
        return
    deviation = abs(facts.weight_kg - d.gross_weight_kg) / d.gross_weight_kg * 100
    if deviation > policy.weight_tolerance_pct:
        yield Finding(
            "WEIGHT_OUT_OF_TOLERANCE",
            f"{facts.weight_kg:.0f} kg against {d.gross_weight_kg:.0f} kg declared "
            f"({deviation:.1f}% > {policy.weight_tolerance_pct}%)",
        )


def _check_required(facts: TransactionFacts, policy: LanePolicy) -> Iterable[Finding]:
    present = {
        "plate": bool(facts.plates),
        "seal": bool(facts.seals),
        "container": bool(facts.containers) or any(s.container for s in facts.seals),
        "weight": facts.weight_kg is not None,
        "scan": facts.scan_verdict is not None,
    }
    for reading in policy.required_readings:
        if not present[reading]:
            yield Finding("REQUIRED_READING_MISSING", reading)


def decide(
    facts: TransactionFacts,
    candidates: Sequence[Declaration],
    policy: LanePolicy,
    context: DecisionContext,
) -> Decision:
    """Decide release, hold or refuse for one truck, with every reason that applies."""
    findings: list[Finding] = list(_check_required(facts, policy))
    confident = tuple(p for p in facts.plates if p[1] >= policy.min_plate_confidence)
    if facts.plates and not confident:
        findings.append(Finding("PLATE_LOW_CONFIDENCE", ", ".join(p for p, _ in facts.plates)))
    declaration: Declaration | None = None
    conflict = _plate_conflict(confident, candidates)
    if conflict:
        # Never match a declaration on one of two plates: a forged second read would pick it.
        findings.append(Finding("PLATE_CONFLICT", conflict))
    elif confident:
        plates = {plate for plate, _ in confident}
        naming_all = [d for d in candidates if plates <= set(d.plates)]
        declaration, selection = select_declaration(replace(facts, plates=confident), naming_all, context)
        findings.extend(selection)
    if declaration is not None:
        findings.extend(_check_declaration(declaration, context))
    findings.extend(_check_containers(facts, declaration, policy))
    findings.extend(_check_seals(facts, declaration, policy))
    findings.extend(_check_weight(facts, declaration, policy))
    if facts.scan_verdict == "suspect":
        findings.append(Finding("SCANNER_SUSPECT"))
    elif facts.scan_verdict == "pending":
        findings.append(Finding("SCANNER_PENDING"))
    if facts.scan_conflict:
        findings.append(Finding("SCAN_CONFLICT", facts.scan_conflict))
    if context.cache_age_s is None or context.cache_age_s > policy.max_cache_age_s:
        age = "never refreshed" if context.cache_age_s is None else f"{context.cache_age_s:.0f} s old"
        findings.append(Finding("CACHE_STALE", f"{age}, limit {policy.max_cache_age_s:.0f} s"))
    for device in context.faulty_devices:
        findings.append(Finding("DEVICE_FAULT", device))

    if any(f.info.outcome == Outcome.REFUSE for f in findings):
        outcome = Outcome.REFUSE
    elif findings:
        outcome = Outcome.HOLD
    else:
        outcome = Outcome.RELEASE
    return Decision(
        outcome=outcome,
        findings=tuple(findings),
        declaration=declaration.number if declaration else None,
        awaiting_readings=_awaits_readings(findings),
    )


def _plate_conflict(confident: Sequence[tuple[str, float]], candidates: Sequence[Declaration]) -> str | None:
    """Words for two or more different confident plates that no one declaration names together, else None.

    A tractor and its trailer carry different plates, and a declaration that lists both explains
    them; any other pair is one truck read as two: a misread, or a forged reading naming someone
    else's cleared plate. Low-confidence reads never count (they hold the truck on their own).
    """
    plates = {plate for plate, _ in confident}
    if len(plates) < 2 or any(plates <= set(d.plates) for d in candidates):
        return None
    return " / ".join(f"{plate} ({confidence:.2f})" for plate, confidence in sorted(confident))


# Reasons that mean a whole kind of reading is absent: worth waiting for even when the truck is
# already held for something else, so the officer sees the full picture.
_KIND_MISSING = {"REQUIRED_READING_MISSING", "PLATE_LOW_CONFIDENCE"}


def _awaits_readings(findings: list[Finding]) -> bool:
    """True while more readings could still change the decision or complete its reasons."""
    provisional = [f for f in findings if f.info.awaits_readings]
    if not provisional:
        return False
    definitive = len(provisional) < len(findings)
    return not definitive or any(f.code in _KIND_MISSING for f in provisional)


def decision_for_restart(declaration: str | None) -> Decision:
    """The hold a transaction gets when the node restarted in the middle of it."""
    return Decision(Outcome.HOLD, (Finding("NODE_RESTARTED"),), declaration)


@dataclass(frozen=True)
class OfficerDecision:
    """An officer's release or refusal of a held truck."""

    outcome: Outcome
    officer: str
    reason: str
    extra: dict = field(default_factory=dict)
