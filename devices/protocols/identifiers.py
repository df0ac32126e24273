"""The one place identifiers are folded for matching and device strings are checked for hidden characters.

Plates, container numbers and seal ids are compared in one *matching form* everywhere (cache,
import, feed, codecs, rules): Unicode NFKC (full-width `２９Ｃ` is `29C`, a CJK compatibility
ideograph is its unified one), separators removed (white space of any kind, `-`, `.`, `/`, `_`,
the middle dots `·` `•` `・` `･`, full-width `．` `－`, hyphens, en and em dashes, the minus sign),
then upper case (so seal ids compare case-insensitively), and the Vietnamese D with stroke folded to
`D`. `29C-123.45`, `29c 123 45` and `２９Ｃ－１２３．４５` all give `29C12345`; `ＣＳＱＵ３０５４３８３` gives
`CSQU3054383`; `29MĐ1-123.45` and `29MD1-123.45` both give `29MD112345`.

Đ and đ (U+0110, U+0111), and the letters that look the same (eth Ð ð U+00D0/U+00F0, African D
Ɖ ɖ U+0189/U+0256, which a keyboard or a PDF can put in their place) are `D` in matching form: a
camera cannot tell Đ from D (no plate reader we run has a Đ class: PP-OCR reads the glyph as D), and
no plate series we know of (the Vietnamese ones in the domain notes included) differs from another by
the stroke alone, so a declaration written `29MĐ1-123.45` must be matched by a camera reading
`29MD112345`. The stroke goes the way the separators go: what is stored in matching form (a cached
declaration's plates, a reading) holds `29MD112345`.

Device strings (a plate, a camera id, a lane, a seal id, a container) are refused when they hold a
character an officer cannot see or that reorders what they see: control characters (C0, C1, NUL,
DEL), format characters (bidi embeddings, overrides and isolates U+202A–202E, U+2066–2069, the
marks U+200E/U+200F, zero-width characters, the BOM), line and paragraph separators, surrogates,
private-use and unassigned code points. `device_text_problem` says why, or None; every codec uses it.

A list of identifiers written as one text (a CSV cell, a customs document's field) is split on the
separators customs documents use between entries (`split_identifier_list`): `;`, `|`, `/`, `,`,
the ideographic comma `、` and line breaks, after NFKC (so full-width `；` `／` `，` split too). No
plate, container number or seal id contains one of them (a `-`, `.` or `·` inside a plate or a seal
id is part of it). Gate codes compare case-insensitively and trimmed (`normalise_gate`).
"""

from __future__ import annotations

import re
import unicodedata

# Separators that NFKC leaves as they are (full-width `．` and `－` become `.` and `-` first).
_SEPARATOR_CHARS = (
    "\\-./_"  # ASCII
    "\u00b7\u0387\u2022\u2027\u2219\u22c5\u30fb\uff65"  # middle dots, bullets: · (Greek ·) • ‧ ∙ ⋅ ・ ･
    "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63"  # hyphens, figure dash, en/em dash, bar, minus
)
_SEPARATORS = re.compile(rf"[\s{_SEPARATOR_CHARS}]+")
_ASCII_SEPARATORS = re.compile(r"[\s\-./_]+")
_LIST_SEPARATORS = re.compile(r"[;|/,\u3001\r\n]")

D_WITH_STROKE = "\u0110\u0111\u00d0\u00f0\u0189\u0256"
"""Đ đ, and the look-alikes Ð ð (eth) and Ɖ ɖ (African D): all `D` in matching form (see the module docstring)."""
_STROKE_TO_D = str.maketrans(dict.fromkeys(D_WITH_STROKE, "D"))

# Unicode general categories refused in device strings (see the module docstring).
_REFUSED_CATEGORIES = {
    "Cc": "control character",
    "Cf": "format character",
    "Cs": "surrogate",
    "Co": "private-use character",
    "Cn": "unassigned code point",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def fold_identifier(text: str) -> str:
    """Return `text` in matching form: NFKC, separators removed, upper case, Đ as D (see the module docstring)."""
    if text.isascii():  # NFKC leaves ASCII as it is: the common case stays cheap
        return _ASCII_SEPARATORS.sub("", text).upper()
    folded = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper().translate(_STROKE_TO_D)
    # Removing a separator, upper-casing or dropping a stroke can leave text that is not NFKC any more (a
    # combining mark that NFKC split off a spacing accent now follows a letter; `Đ` + dot above became
    # `D` + dot above, which composes to `Ḋ`): normalise once more, so folding twice gives what folding
    # once gave. No character composes to one of D_WITH_STROKE (none of them has a decomposition).
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", folded))


def stroke_to_d(text: str) -> str:
    """`text` with every D with stroke (and look-alike, D_WITH_STROKE) replaced by `D`, nothing else changed."""
    return text if text.isascii() else text.translate(_STROKE_TO_D)


def normalise_plate(text: str) -> str:
    """Return the plate in matching form: `29C-123.45`, `29c 123 45` and `２９Ｃ－１２３．４５` give `29C12345`."""
    return fold_identifier(text)


def normalise_container(text: str) -> str:
    """Return the container number in matching form: `CSQU 305438-3` and `ＣＳＱＵ３０５４３８３` give `CSQU3054383`."""
    return fold_identifier(text)


def normalise_seal(text: str) -> str:
    """Return the seal id in matching form (upper case: seal ids compare case-insensitively)."""
    return fold_identifier(text)


def split_identifier_list(text: str) -> list[str]:
    """The entries of a list written as one text, trimmed, empty ones dropped.

    `29C-890.12/29R-034.56` gives `['29C-890.12', '29R-034.56']`; `SEAL-1; SEAL-2` gives
    `['SEAL-1', 'SEAL-2']`; `桂A·12345，桂F·00001` gives `['桂A·12345', '桂F·00001']`.
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    elif _LIST_SEPARATORS.search(text) is None:  # one entry: the common case of a list item stays cheap
        text = text.strip()
        return [text] if text else []
    return [part for part in (piece.strip() for piece in _LIST_SEPARATORS.split(text)) if part]


def normalise_gate(text: str) -> str:
    """Return a border gate code in comparison form: NFKC, trimmed, upper case (`huunghi ` is `HUUNGHI`)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return text.strip().upper()


def device_text_problem(text: str) -> str | None:
    """Why `text` from a device cannot be believed (a hidden or reordering character), or None when it can.

    The reason names the first offending character by code point and kind, never echoes it.
    """
    if text.isascii() and text.isprintable():
        return None
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        kind = _REFUSED_CATEGORIES.get(category)
        if kind is None:
            continue
        if char in _BIDI:
            kind = "bidirectional control character"
        if char == "\x00":
            kind = "NUL control character"
        return f"{kind} U+{ord(char):04X} at position {position}"
    return None


def check_device_text(field: str, text: str) -> str | None:
    """The refusal reason for device string `text` in `field` (e.g. `plate holds NUL U+0000 at position 3`), or None."""
    problem = device_text_problem(text)
    return None if problem is None else f"{field} holds a {problem}"
