"""What a reading may be: the VN and CN plate grammars and ISO 6346, as per-position templates.

A template is a tuple of allowed-character strings, one per position. A text is valid when it
fills a template exactly; a prefix is viable while some template still admits it. The CTC
decoder uses viability to keep only readings that can still become valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product

from devices.protocols.iso6346 import check_digit
from devices.protocols.plates import CN_PROVINCES

DIGITS = "0123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
VN_SERIES = "ABCDEFGHKLMNPRSTUVXYZ"  # no I, J, O, Q, W
CN_SERIAL = "ABCDEFGHJKLMNPQRSTUVWXYZ" + DIGITS  # no I or O
CN_LAST = CN_SERIAL + "挂学警"

Template = tuple[str, ...]


VN_SPECIAL_SERIES = ("QT",)  # diplomatic series outside the ordinary letters (Q is not one)


def _vn_templates() -> list[Template]:
    series: list[Template] = [(VN_SERIES,), (VN_SERIES, VN_SERIES)]
    series += [tuple(letter) for letter in VN_SPECIAL_SERIES]
    templates = []
    for letters, extra_digit, serial in product(series, (0, 1), (4, 5)):
        templates.append((DIGITS, DIGITS) + letters + (DIGITS,) * extra_digit + (DIGITS,) * serial)
    return templates


def _cn_templates() -> list[Template]:
    return [(CN_PROVINCES, LETTERS) + (CN_SERIAL,) * middle + (CN_LAST,) for middle in (4, 5)]


@dataclass(frozen=True)
class Grammar:
    """Alternative templates and an optional whole-text check (the ISO 6346 check digit)."""

    name: str
    templates: tuple[Template, ...]
    needs_check_digit: bool = False

    @lru_cache(maxsize=65536)  # noqa: B019 - grammars are module-level constants, never freed
    def viable(self, prefix: str) -> bool:
        """True while some template admits `prefix` as its beginning."""
        # The decoder asks about many prefixes met once (each plate's own), so a miss must be cheap:
        # one bit per template, and-ed over the positions (a tenth of testing each template in turn).
        positions, long_enough = _template_masks(self.templates)
        if len(prefix) >= len(long_enough):
            return False
        alive = long_enough[len(prefix)]
        for place, char in zip(positions, prefix, strict=False):
            alive &= place.get(char, 0)
            if not alive:
                return False
        return True

    def valid(self, text: str) -> bool:
        """True when `text` fills a template exactly (and its check digit holds, for ISO 6346)."""
        n = len(text)
        if not any(n == len(t) and all(c in allowed for c, allowed in zip(text, t, strict=True))
                   for t in self.templates):
            return False
        return not self.needs_check_digit or check_digit(text[:10]) == int(text[10])

    def kind_of(self, text: str) -> str | None:
        """The sub-grammar a valid text belongs to ("VN" or "CN" for plates), else None."""
        return self.name if self.valid(text) else None


@lru_cache(maxsize=16)
def _template_masks(templates: tuple[Template, ...]) -> tuple[tuple[dict[str, int], ...], tuple[int, ...]]:
    """Per position, each character's bit mask of the templates that allow it there; per length n,
    the mask of the templates at least n long."""
    longest = max(len(t) for t in templates)
    positions: list[dict[str, int]] = [{} for _ in range(longest)]
    for bit, template in enumerate(templates):
        for place, allowed in zip(positions, template, strict=False):
            for char in allowed:
                place[char] = place.get(char, 0) | (1 << bit)
    long_enough = tuple(sum(1 << bit for bit, t in enumerate(templates) if len(t) >= n) for n in range(longest + 1))
    return tuple(positions), long_enough


VN_PLATE = Grammar("VN", tuple(_vn_templates()))
CN_PLATE = Grammar("CN", tuple(_cn_templates()))
ISO6346 = Grammar("ISO6346", ((LETTERS, LETTERS, LETTERS, "UJZ") + (DIGITS,) * 7,), needs_check_digit=True)


@dataclass(frozen=True)
class AnyOf:
    """Several grammars at once (plates: VN or CN)."""

    grammars: tuple[Grammar, ...]

    @lru_cache(maxsize=65536)  # noqa: B019 - grammars are module-level constants, never freed
    def viable(self, prefix: str) -> bool:
        """True while any grammar admits the prefix."""
        return any(g.viable(prefix) for g in self.grammars)

    def valid(self, text: str) -> bool:
        """True when any grammar accepts the whole text."""
        return any(g.valid(text) for g in self.grammars)

    def kind_of(self, text: str) -> str | None:
        """The name of the first grammar that accepts the text."""
        for grammar in self.grammars:
            if grammar.valid(text):
                return grammar.name
        return None


PLATES = AnyOf((VN_PLATE, CN_PLATE))
