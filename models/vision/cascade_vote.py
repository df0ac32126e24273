"""The cascade's vote between the fast models and the strong recogniser on one crop (pure logic).

Each model scores both candidates: its own reading at its chance of being right, the other's at
its share of the model's probability mass (CTC-summed over alignments). The two chances of a
candidate are combined as independent evidence, odds multiplied (a product of experts), neither
model trusted beyond TRUST against the other; the candidate with the higher chance wins, and a
reading both models give is at least as sure as the surer of them. Where
the readings differ in one or two look-alike glyphs (G/6, D/0...) and the vote is not sure, or
where a sure reading is disputed and the winner is no more likely right than wrong (a sure model
against a sure model), there is no reading: a wrong plate can match another vehicle's
declaration, a missing one goes to an officer.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.protocols.plates import CN_PROVINCES

TRUST = 0.98  # in a vote, no model's chance of being right is taken above this or below 1 - this
EVEN = 0.5 + 1e-9  # a disputed sure reading won at no better than even odds is no reading
# Glyphs that print alike at 10 px (classic OCR confusions; the grammar allows both of each pair where
# both are letters or digits of a serial). Two readings, each more likely right than wrong to the model
# that read it, apart only in such glyphs are one plate whose doubtful glyphs neither model resolves:
# the vote between them must be SETTLED sure, or there is no reading.
LOOK_ALIKES = ("0ODQCU", "G6C", "1IJLT7", "2Z", "5S", "8B3E", "MNHW", "UV", "KX", "A4", "EF")
SETTLED = 0.9  # as the reader's SURE: a reading this sure is not looked at again


@dataclass(frozen=True)
class Ballot:
    """What the two sides of the cascade said about one crop.

    `fast_text` / `fast`: the fast models' reading and its calibrated chance (None / 0.0: none);
    `strong_text` / `strong`: the strong recogniser's grammar-valid reading and its share;
    `strong_for_fast`: the strong model's share of the fast reading;
    `fast_for_strong`: the fast models' calibrated chance of the strong reading.
    """

    fast_text: str | None
    fast: float
    strong_text: str | None
    strong: float
    strong_for_fast: float = 0.0
    fast_for_strong: float = 0.0


def trusted(probability: float) -> float:
    """A model's chance kept within TRUST of certainty, so one model alone never settles a vote."""
    return min(TRUST, max(1.0 - TRUST, probability))


def combined(first: float, second: float) -> float:
    """Two independent chances of one candidate as one: odds multiplied, each within TRUST."""
    first, second = trusted(first), trusted(second)
    return first * second / (first * second + (1.0 - first) * (1.0 - second))


def settle(ballot: Ballot, tie_is_none: bool = False, look_alikes_doubtful: bool = True) -> tuple[str, float] | None:
    """The winning reading and its chance, or None: when neither model read anything valid; when
    (`look_alikes_doubtful`: a plate, which has no check digit) both models read the plate at better
    than even chances but apart in look-alike glyphs alone and the vote is not SETTLED; or when
    (`tie_is_none`: a sure reading the other model disputes) the winner is no more likely right than
    wrong. ISO 6346's check digit already tells a single look-alike swap apart, so container codes
    are voted without the look-alike rule."""
    if ballot.strong_text is None:
        return (ballot.fast_text, ballot.fast) if ballot.fast_text is not None else None
    if ballot.fast_text == ballot.strong_text:
        # Models trained apart on other data reading the same string out of millions: that is evidence
        # for it, never against it, so the reading is at least as sure as the surer model alone.
        return ballot.strong_text, max(combined(ballot.fast, ballot.strong), ballot.fast, ballot.strong)
    if ballot.fast_text is None:
        return ballot.strong_text, combined(ballot.fast_for_strong, ballot.strong)
    scored = [(combined(ballot.fast, ballot.strong_for_fast), ballot.fast_text),
              (combined(ballot.fast_for_strong, ballot.strong), ballot.strong_text)]
    confidence, text = max(scored)
    # Both models reading the plate (each its own reading more likely right than wrong) yet apart in
    # look-alike glyphs is a doubt neither resolves; a model that hardly reads the plate is no such doubt.
    doubtful = (look_alikes_doubtful and confidence < SETTLED and min(ballot.fast, ballot.strong) >= EVEN
                and look_alikes(ballot.fast_text, ballot.strong_text))
    if doubtful or (tie_is_none and confidence < EVEN):
        return None
    return text, confidence


def look_alikes(first: str, second: str) -> bool:
    """True when two readings of one length differ in one or two characters, each a look-alike pair."""
    if len(first) != len(second):
        return False
    apart = [(a, b) for a, b in zip(first, second, strict=True) if a != b]
    return 1 <= len(apart) <= 2 and all(any(a in group and b in group for group in LOOK_ALIKES) for a, b in apart)


def province_only(first: str, second: str) -> bool:
    """True when two plate readings differ in their first character alone and it is a CN province."""
    return (len(first) == len(second) and first[1:] == second[1:] and first[0] != second[0]
            and first[0] in CN_PROVINCES and second[0] in CN_PROVINCES)
