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

from devices.protocols.identifiers import normalise_gate
from devices.protocols.iso6346 import is_valid_container
from devices.readings import SealStatus
from edge.config import LanePolicy
from edge.declarations import (
    Declaration,
    DeclarationKind,
    DeclarationStatus,
    RiskChannel,
)

RULESET_VERSION = "2026.12.3"  # .2: PLATE_CONFLICT, SCAN_CONFLICT; .3: consolidated loads, seals as declared


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
    """One reason code with the specifics (which seal, which container) and the declaration it belongs to."""

    code: str
    detail: str = ""
    declaration: str | None = None  # the declaration number, when the finding is about one of them

    @property
    def info(self) -> ReasonInfo:
        return REASONS[self.code]

    def to_dict(self) -> dict:
        """JSON-friendly form (the journal, the kiosk, the upload to central)."""
        return {"code": self.code, "detail": self.detail, "text": self.info.text, "declaration": self.declaration}


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

    def seen_containers(self) -> set[str]:
        """Container numbers seen: read by a camera or scanner, or reported by a seal."""
        return set(self.containers) | {s.container for s in self.seals if s.container}

    def seen_seals(self) -> set[str]:
        return {s.seal_id for s in self.seals}


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
    """What the rules decided for one truck.

    `declarations` is every declaration the truck travels under (several for a consolidated load:
    each covers some of its containers and seals), in number order; `declaration` is the first of
    them (None when none matched), kept for readers of the single-declaration form. A release covers
    all of `declarations`: each is used by the truck's passage.
    """

    outcome: Outcome
    findings: tuple[Finding, ...]
    declaration: str | None
    ruleset_version: str = RULESET_VERSION
    awaiting_readings: bool = False
    declarations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.declarations:
            object.__setattr__(self, "declarations", tuple(self.declarations))
            if self.declaration is None:
                object.__setattr__(self, "declaration", self.declarations[0])
        elif self.declaration is not None:
            object.__setattr__(self, "declarations", (self.declaration,))

    @property
    def reasons(self) -> list[str]:
        """Reason codes, without duplicates, in the order found."""
        return list(dict.fromkeys(f.code for f in self.findings))

    def to_dict(self) -> dict:
        """JSON-friendly form for the journal and the API."""
        return {
            "outcome": self.outcome.value,
            "reasons": self.reasons,
            "findings": [f.to_dict() for f in self.findings],
            "declaration": self.declaration,
            "declarations": list(self.declarations),
            "ruleset_version": self.ruleset_version,
            "awaiting_readings": self.awaiting_readings,
        }


def _direction_matches(declaration: Declaration, lane_direction: str) -> bool:
    return declaration.kind == DeclarationKind.TRANSIT or declaration.kind.value == lane_direction


def _gate_matches(declaration: Declaration, gate: str) -> bool:
    return normalise_gate(declaration.gate) == normalise_gate(gate)


def _usable(d: Declaration, context: DecisionContext) -> bool:
    """Cleared, valid now, for this gate and direction, and not used yet: a truck may pass on it."""
    return (
        d.status == DeclarationStatus.CLEARED
        and d.valid_from <= context.now <= d.valid_until
        and _gate_matches(d, context.gate)
        and _direction_matches(d, context.lane_direction)
        and d.number not in context.used_declarations
    )


def _covered(d: Declaration, containers: set[str], seals: set[str]) -> frozenset[tuple[str, str]]:
    """What of the declaration was seen: ("container", number) and ("seal", id) pairs."""
    return frozenset([("container", n) for n in d.containers if n in containers]
                     + [("seal", s) for s in d.seals if s in seals])


def select_declarations(
    facts: TransactionFacts, candidates: Sequence[Declaration], context: DecisionContext
) -> tuple[tuple[Declaration, ...], list[Finding]]:
    """The declarations this truck travels under: one, or several for a consolidated load.

    Several declarations naming the truck's plates are a consolidated load when at least two of
    them each cover something that was seen (a container or a seal) and no container or seal seen
    is covered by two of them: two consignments on one truck. They are returned together (in
    number order) and judged together. Otherwise the usable, best-covered declaration is chosen;
    a tie is AMBIGUOUS_DECLARATION (the officer chooses).
    """
    plates = {plate for plate, _ in facts.plates}
    unique = {d.number: d for d in candidates if plates & set(d.plates)}
    if not unique:
        return (), [Finding("NO_DECLARATION", ", ".join(sorted(plates)))]
    if len(unique) == 1:
        return (next(iter(unique.values())),), []
    containers, seals = facts.seen_containers(), facts.seen_seals()
    covered = {number: _covered(d, containers, seals) for number, d in unique.items()}
    consignments = sorted(number for number, items in covered.items() if items)
    if len(consignments) >= 2:
        parts = [covered[number] for number in consignments]
        if sum(len(part) for part in parts) == len(frozenset().union(*parts)):
            return tuple(unique[number] for number in consignments), []

    def rank(d: Declaration) -> tuple[bool, int]:
        return _usable(d, context), len(covered[d.number])

    ranked = sorted(unique.values(), key=rank, reverse=True)
    if rank(ranked[0]) == rank(ranked[1]):
        return (), [Finding("AMBIGUOUS_DECLARATION", ", ".join(sorted(unique)))]
    return (ranked[0],), []


def select_declaration(
    facts: TransactionFacts, candidates: Sequence[Declaration], context: DecisionContext
) -> tuple[Declaration | None, list[Finding]]:
    """The one declaration this truck travels under (the first of a consolidated load), see select_declarations."""
    chosen, findings = select_declarations(facts, candidates, context)
    return (chosen[0] if chosen else None), findings


def _check_declaration(d: Declaration, context: DecisionContext) -> Iterable[Finding]:
    n = d.number
    if d.status == DeclarationStatus.CANCELLED:
        yield Finding("DECLARATION_CANCELLED", n, n)
    elif d.status != DeclarationStatus.CLEARED:
        yield Finding("DECLARATION_NOT_CLEARED", f"{n} is {d.status.value}", n)
    if context.now > d.valid_until:
        yield Finding("DECLARATION_EXPIRED", f"valid until {d.valid_until.isoformat()}", n)
    if context.now < d.valid_from:
        yield Finding("DECLARATION_NOT_YET_VALID", f"valid from {d.valid_from.isoformat()}", n)
    if n in context.used_declarations:
        yield Finding("DECLARATION_ALREADY_USED", f"{n} {context.used_declarations[n]}".rstrip(), n)
    if not _gate_matches(d, context.gate):
        yield Finding("WRONG_GATE", f"declared for {d.gate}", n)
    if not _direction_matches(d, context.lane_direction):
        yield Finding("WRONG_DIRECTION", f"{d.kind.value} declaration at an {context.lane_direction} lane", n)


_CHANNEL_FINDING = {RiskChannel.YELLOW: "CHANNEL_YELLOW", RiskChannel.RED: "CHANNEL_RED"}
_CHANNEL_SEVERITY = {RiskChannel.GREEN: 0, RiskChannel.YELLOW: 1, RiskChannel.RED: 2}


def _check_channel(chosen: Sequence[Declaration]) -> Iterable[Finding]:
    """The strictest channel of the declarations, once per declaration on it (green needs nothing)."""
    if not chosen:
        return
    strictest = max((d.channel for d in chosen), key=_CHANNEL_SEVERITY.__getitem__)
    if strictest in _CHANNEL_FINDING:
        for d in chosen:
            if d.channel == strictest:
                yield Finding(_CHANNEL_FINDING[strictest], "", d.number)


def _check_containers(
    facts: TransactionFacts, chosen: Sequence[Declaration], policy: LanePolicy
) -> Iterable[Finding]:
    seen = facts.seen_containers()
    for number in sorted(seen):
        if not is_valid_container(number):
            yield Finding("CONTAINER_CHECK_DIGIT_INVALID", number)
    owner: dict[str, str] = {}  # declared container -> the (first) declaration that declares it
    for d in chosen:
        for number in d.containers:
            owner.setdefault(number, d.number)
            if not is_valid_container(number):
                yield Finding("CONTAINER_CHECK_DIGIT_INVALID", f"declared {number}", d.number)
    if not chosen:
        return
    accounted_for: set[str] = set()
    for number in sorted(seen - set(owner)):
        twin = _one_character_from(number, [n for n in owner if n not in seen])
        if twin is None:
            yield Finding("CONTAINER_EXTRA", number)
        else:
            accounted_for.add(twin)
            yield Finding("CONTAINER_PROBABLE_MISREAD", f"read {number}, declared {twin}", owner[twin])
    if "container" in policy.required_readings or seen:
        for number, declaration in owner.items():
            if number not in seen and number not in accounted_for:
                yield Finding("CONTAINER_MISSING", number, declaration)


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
    facts: TransactionFacts, chosen: Sequence[Declaration], policy: LanePolicy
) -> Iterable[Finding]:
    for seal in facts.seals:
        if seal.status == SealStatus.TAMPERED:
            yield Finding("SEAL_TAMPERED", seal.seal_id)
        elif seal.status == SealStatus.OPENED:
            yield Finding("SEAL_OPENED", seal.seal_id)
    if not chosen:
        return
    owner: dict[str, str] = {}
    for d in chosen:
        for seal_id in d.seals:
            owner.setdefault(seal_id, d.number)
    read_ids = facts.seen_seals()
    numbers = ", ".join(d.number for d in chosen)
    for seal_id in sorted(read_ids - set(owner)):
        yield Finding("SEAL_MISMATCH", f"{seal_id} is not on {numbers}")
    if "seal" in policy.required_readings:
        for seal_id, declaration in owner.items():
            if seal_id not in read_ids:
                yield Finding("SEAL_MISSING", seal_id, declaration)


def _check_weight(
    facts: TransactionFacts, chosen: Sequence[Declaration], policy: LanePolicy
) -> Iterable[Finding]:
    """Gross weight against the declared gross weight, or the sum of them for a consolidated load."""
    if not chosen or facts.weight_kg is None or not all(d.gross_weight_kg for d in chosen):
        return
    declared = sum(d.gross_weight_kg or 0.0 for d in chosen)
    deviation = abs(facts.weight_kg - declared) / declared * 100
    if deviation > policy.weight_tolerance_pct:
        on = "" if len(chosen) == 1 else " on " + " + ".join(d.number for d in chosen)
        yield Finding(
            "WEIGHT_OUT_OF_TOLERANCE",
            f"{facts.weight_kg:.0f} kg against {declared:.0f} kg declared{on} "
            f"({deviation:.1f}% > {policy.weight_tolerance_pct}%)",
            chosen[0].number if len(chosen) == 1 else None,
        )


# Readings whose need follows the declaration(s): a truck declared with no seal needs no seal read
# (an empty truck, bulk cargo, an unsealed empty container); the others are the lane's own.
_DECLARED_KINDS = ("seal", "container")


def _check_required(
    facts: TransactionFacts, policy: LanePolicy, in_play: Sequence[Declaration]
) -> Iterable[Finding]:
    """REQUIRED_READING_MISSING for each reading the lane requires that has not arrived.

    Plate, weight and scan are required as the lane says. Seal and container are required only when
    a declaration in play (those chosen, or the candidates while the choice is open) declares one:
    with no declaration matched there is nothing they could be checked against.
    """
    present = {
        "plate": bool(facts.plates),
        "seal": bool(facts.seals),
        "container": bool(facts.seen_containers()),
        "weight": facts.weight_kg is not None,
        "scan": facts.scan_verdict is not None,
    }
    declared = {
        "seal": any(d.seals for d in in_play),
        "container": any(d.containers for d in in_play),
    }
    for reading in policy.required_readings:
        if reading in _DECLARED_KINDS and not declared[reading]:
            continue
        if not present[reading]:
            yield Finding("REQUIRED_READING_MISSING", reading)


def _more_consignments_possible(
    facts: TransactionFacts,
    candidates: Sequence[Declaration],
    chosen: Sequence[Declaration],
    policy: LanePolicy,
    context: DecisionContext,
) -> bool:
    """True while another usable declaration for the truck's plates declares a seal or container the lane
    checks and has not seen yet: it may still show up and make the load a consolidated one (or
    an ambiguous one), so the lane keeps collecting until its collect timeout."""
    if not chosen:
        return False
    numbers = {d.number for d in chosen}
    containers, seals = facts.seen_containers(), facts.seen_seals()
    for d in candidates:
        if d.number in numbers or not _usable(d, context):
            continue
        if "seal" in policy.required_readings and any(s not in seals for s in d.seals):
            return True
        if "container" in policy.required_readings and any(c not in containers for c in d.containers):
            return True
    return False


def decide(
    facts: TransactionFacts,
    candidates: Sequence[Declaration],
    policy: LanePolicy,
    context: DecisionContext,
) -> Decision:
    """Decide release, hold or refuse for one truck, with every reason that applies."""
    confident = tuple(p for p in facts.plates if p[1] >= policy.min_plate_confidence)
    plate_findings: list[Finding] = []
    if facts.plates and not confident:
        plate_findings.append(Finding("PLATE_LOW_CONFIDENCE", ", ".join(p for p, _ in facts.plates)))
    chosen: tuple[Declaration, ...] = ()
    naming_all: list[Declaration] = []
    conflict = _plate_conflict(confident, candidates)
    if conflict:
        # Never match a declaration on one of two plates: a forged second read would pick it.
        plate_findings.append(Finding("PLATE_CONFLICT", conflict))
    elif confident:
        plates = {plate for plate, _ in confident}
        naming_all = [d for d in candidates if plates <= set(d.plates)]
        chosen, selection = select_declarations(replace(facts, plates=confident), naming_all, context)
        plate_findings.extend(selection)
    in_play = chosen or naming_all
    findings: list[Finding] = [*_check_required(facts, policy, in_play), *plate_findings]
    for declaration in chosen:
        findings.extend(_check_declaration(declaration, context))
    findings.extend(_check_channel(chosen))
    findings.extend(_check_containers(facts, chosen, policy))
    findings.extend(_check_seals(facts, chosen, policy))
    findings.extend(_check_weight(facts, chosen, policy))
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
        declaration=chosen[0].number if chosen else None,
        declarations=tuple(d.number for d in chosen),
        awaiting_readings=(_awaits_readings(findings)
                           or _more_consignments_possible(facts, naming_all, chosen, policy, context)),
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


def decision_for_restart(declaration: str | Sequence[str] | None) -> Decision:
    """The hold a transaction gets when the node restarted in the middle of it (keeping its declarations)."""
    numbers = (declaration,) if isinstance(declaration, str) else tuple(declaration or ())
    return Decision(Outcome.HOLD, (Finding("NODE_RESTARTED"),), numbers[0] if numbers else None,
                    declarations=numbers)


@dataclass(frozen=True)
class OfficerDecision:
    """An officer's release or refusal of a held truck."""

    outcome: Outcome
    officer: str
    reason: str
    extra: dict = field(default_factory=dict)
