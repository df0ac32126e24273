"""CTC decoding under a grammar: prefix beam search that keeps only viable readings.

The model gives, per time step, a probability for each character and for the blank. Greedy
decoding takes the likeliest class per step; when that reading is not valid (wrong shape,
failed check digit), the beam search ranks alternatives by their total probability over all
alignments, character by character, and returns the likeliest valid ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

BLANK_SKIP = 0.995  # a step this sure of the blank only rescales the beams
CHAR_FLOOR = 1e-3  # characters below this probability at a step are not tried there
TOP_CHARS = 4  # at most this many characters are tried at a step


class Language(Protocol):
    """What the decoder needs of a grammar."""

    def viable(self, prefix: str) -> bool: ...

    def valid(self, text: str) -> bool: ...


@dataclass(frozen=True)
class Candidate:
    """A decoded reading: its probability (summed over alignments) and whether the grammar accepts it."""

    text: str
    probability: float
    valid: bool


class _Anything:
    """The language with no rules, for measuring how much mass the grammar left out."""

    def viable(self, prefix: str) -> bool:
        return True

    def valid(self, text: str) -> bool:
        return True


ANYTHING = _Anything()


def greedy(probs: np.ndarray, charset: str) -> tuple[str, float]:
    """Best-path reading and the lowest per-character probability along it."""
    best = probs.argmax(-1)
    chars, lowest, last = [], 1.0, 0
    for step, k in enumerate(best):
        if k != last and k != 0:
            chars.append(charset[k - 1])
            lowest = min(lowest, float(probs[step, k]))
        last = int(k)
    return "".join(chars), lowest


def _informative_steps(probs: np.ndarray) -> np.ndarray:
    """Steps that can change a beam: not sure of the blank, or the first sure blank after such a step."""
    sure_blank = probs[:, 0] >= BLANK_SKIP
    after_sure_blank = np.concatenate(([False], sure_blank[:-1]))
    return np.flatnonzero(~sure_blank | ~after_sure_blank)


def beam_search(probs: np.ndarray, charset: str, language: Language, beam: int = 12,
                alias: Mapping[str, str] | None = None) -> list[Candidate]:
    """Likeliest complete readings that `language` accepts, best first (may be empty).

    `alias` (a general recogniser's look-alikes, O→0, 0→O, I→1, 1→I): a character the grammar
    rules out at a place is read as its alias there when that is viable. Where an alias is used,
    the pair is one symbol: the step's mass on either continues the character before.
    """
    index = _char_index(charset)
    into = _alias_into(charset, tuple(sorted(alias.items()))) if alias else {}
    viable: dict[str, bool] = {}  # a prefix is met again at many steps: ask the grammar once
    ruled = language is not ANYTHING
    beams: dict[str, tuple[float, float]] = {"": (1.0, 0.0)}  # prefix → (ends in blank, ends in char)
    log_scale = 0.0
    steps = probs[_informative_steps(probs)]
    # Every step's likeliest characters and its row as Python floats, in one call each: per step,
    # numpy's call overhead cost more than the search's arithmetic.
    likeliest = (np.argpartition(steps[:, 1:], -TOP_CHARS, axis=1)[:, -TOP_CHARS:] + 1).tolist() if len(steps) else []
    for row, likely in zip(steps.tolist(), likeliest, strict=True):
        tried = [(k, row[k], charset[k - 1]) for k in likely if row[k] > CHAR_FLOOR]
        blank = row[0]
        following: dict[str, list[float]] = {}
        for prefix, (p_blank, p_char) in beams.items():
            either = p_blank + p_char
            last = index[prefix[-1]] if prefix else -1
            stay = p_char * row[last] if last > 0 else 0.0
            if into and prefix:
                for source in into.get(prefix[-1], ()):
                    stay += p_char * row[source]
            slot = following.get(prefix)
            if slot is None:
                following[prefix] = [either * blank, stay]
            else:
                slot[0] += either * blank
                slot[1] += stay
            for k, char_p, char in tried:
                extended = prefix + char
                if k == last:
                    gained = p_blank * char_p
                else:
                    if ruled:
                        allowed = viable.get(extended)
                        if allowed is None:
                            allowed = viable[extended] = language.viable(extended)
                        if not allowed:
                            if not alias or char not in alias:
                                continue
                            extended = prefix + alias[char]
                            allowed = viable.get(extended)
                            if allowed is None:
                                allowed = viable[extended] = language.viable(extended)
                            if not allowed:
                                continue
                            if prefix and alias[char] == prefix[-1]:
                                gained = p_blank * char_p  # the same symbol again needs a blank between
                                slot = following.get(extended)
                                if slot is None:
                                    following[extended] = [0.0, gained]
                                else:
                                    slot[1] += gained
                                continue
                    gained = either * char_p
                slot = following.get(extended)
                if slot is None:
                    following[extended] = [0.0, gained]
                else:
                    slot[1] += gained
        ranked = sorted(following.items(), key=lambda item: -(item[1][0] + item[1][1]))[:beam]
        scale = sum(b + c for _, (b, c) in ranked)
        if scale <= 0.0:
            return []
        log_scale += math.log(scale)  # beams are kept normalised; the scale is carried in logs
        beams = {prefix: (b / scale, c / scale) for prefix, (b, c) in ranked}
    out = [Candidate(prefix, math.exp(math.log(max(b + c, 1e-300)) + log_scale), language.valid(prefix))
           for prefix, (b, c) in beams.items()]
    out.sort(key=lambda c: -c.probability)
    return out


@lru_cache(maxsize=8)
def _alias_into(charset: str, pairs: tuple[tuple[str, str], ...]) -> dict[str, tuple[int, ...]]:
    """For each character, the classes of the characters that may be read as it."""
    index = _char_index(charset)
    into: dict[str, list[int]] = {}
    for source, target in pairs:
        if source in index:
            into.setdefault(target, []).append(index[source])
    return {char: tuple(classes) for char, classes in into.items()}


def aliased(text: str, language: Language, alias: Mapping[str, str]) -> str:
    """`text` with each character the grammar rules out at its place replaced by its alias, where that fits."""
    out = ""
    for char in text:
        if not language.viable(out + char) and char in alias and language.viable(out + alias[char]):
            char = alias[char]
        out += char
    return out


@lru_cache(maxsize=8)
def _char_index(charset: str) -> dict[str, int]:
    """Each character's class in the model's output (0 is the blank)."""
    return {char: k + 1 for k, char in enumerate(charset)}


def decode(probs: np.ndarray, charset: str, language: Language, beam: int = 12,
           sure: float = 0.97, alias: Mapping[str, str] | None = None) -> Candidate | None:
    """The likeliest valid reading, or None when no valid reading is in the beam.

    Its probability is its share of all the mass the model put on any reading (valid or not), so
    a valid reading the model itself finds unlikely comes back with a low probability. A greedy
    reading that is valid and sure of every character is returned without a search.
    """
    text, lowest = greedy(probs, charset)
    if alias:
        text = aliased(text, language, alias)
    if lowest >= sure and language.valid(text):
        return Candidate(text, lowest, True)
    best = next((c for c in beam_search(probs, charset, language, beam, alias) if c.valid), None)
    if best is None:
        return None
    everything = reading_mass(probs, charset, beam)
    share = best.probability / max(everything, best.probability, 1e-300)
    return Candidate(best.text, share, True)


def label_probability(probs: np.ndarray, charset: str, text: str,
                      alias: Mapping[str, str] | None = None) -> float:
    """P(text | probs): the CTC forward sum over every alignment of `text` (0.0 for a character not in
    `charset`). With `alias`, a character's look-alikes count as it (O as 0 and 0 as O, say)."""
    index = _char_index(charset)
    if not text:
        return float(np.prod(probs[:, 0]))
    if any(char not in index for char in text):
        return 0.0
    into = _alias_into(charset, tuple(sorted(alias.items()))) if alias else {}
    columns = np.stack([probs[:, index[char]] + sum((probs[:, k] for k in into.get(char, ())), 0.0)
                        for char in text], axis=1)  # (T, L)
    steps, length = probs.shape[0], len(text)
    states = 2 * length + 1
    emit = np.empty((steps, states), np.float64)
    emit[:, 0::2] = probs[:, :1]
    emit[:, 1::2] = columns
    # a state may skip the blank before it when its character differs from the one two states back
    skip = np.zeros(states, bool)
    skip[3::2] = [text[i] != text[i - 1] for i in range(1, length)]
    alpha = np.zeros(states, np.float64)
    alpha[0], alpha[1] = emit[0, 0], emit[0, 1]
    log_scale = 0.0
    for t in range(1, steps):
        following = alpha.copy()
        following[1:] += alpha[:-1]
        following[2:] += np.where(skip[2:], alpha[:-2], 0.0)
        alpha = following * emit[t]
        total = alpha.sum()
        if total <= 0.0:
            return 0.0
        log_scale += math.log(total)
        alpha /= total
    end = alpha[-1] + (alpha[-2] if states > 1 else 0.0)
    return math.exp(log_scale + math.log(max(end, 1e-300))) if end > 0 else 0.0


def reading_mass(probs: np.ndarray, charset: str, beam: int = 12) -> float:
    """The probability mass of the likeliest readings of any kind (grammar or not): a share's denominator."""
    # The cascade's vote asks again for the masses `decode` already searched (the same matrices):
    # remembered by content, they are not searched twice.
    return _reading_mass(probs.tobytes(), probs.shape, probs.dtype.str, charset, beam)


@lru_cache(maxsize=256)
def _reading_mass(data: bytes, shape: tuple[int, ...], dtype: str, charset: str, beam: int) -> float:
    probs = np.frombuffer(data, dtype).reshape(shape)
    return sum(c.probability for c in beam_search(probs, charset, ANYTHING, beam))
