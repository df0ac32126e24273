"""Decodes SMA SCP-0499 scale replies and encodes its host commands (sans-I/O).

The standard reply (to ``W`` weight, ``H`` high resolution, ``Z`` zero, ``T`` tare, ``M`` tare
weight, and repeated after ``R`` until ``S``)::

    <LF> s r n m f <weight: 10 chars> <units: 3 chars> <CR>          (20 bytes)

s: ``Z`` centre of zero, ``O`` over capacity, ``U`` under capacity, ``E`` zero error, ``I``
initial-zero error, ``T`` tare error, space none. r: range digit. n: ``G`` gross, ``N`` net,
``T`` tare (reply to ``M``), ``g``/``n`` gross/net in high resolution. m: ``M`` motion or space.
f: reserved (any printable). The weight is right-aligned, may carry a ``-`` (before or after the
leading spaces) and a decimal point; in the E, I and T states it is dashes, read as no value
(dashes are also accepted over and under capacity, where the spec sends the weight).
Units: ``kg``, ``lb``, ``t``, ``g``, aligned either way in three characters (`` kg`` and ``kg ``
both seen). Replies carry no checksum, so every field is checked. A ``<LF>?<CR>`` reply (command
not recognised) and the about/diagnostic replies are refused as "not a weight reply".

Vendor variants, accepted only when the device profile names them (`variant=`; the default
``standard`` stays strict):

- ``cardinal`` (Cardinal 190/225 manuals): an 11-character weight field ``xxxxxxx.xxx`` (19
  characters between LF and CR) as well as the 10-character one, status ``e`` "weight is not being
  displayed" (no value), and ``oz`` units.
- ``fairbanks`` (Fairbanks PR 5410 manual): the reply sent when stability was not reached in the
  waiting time, ``<LF> 1<n> <f>----------   <CR>``: a space status, ten dashes and blank units,
  decoded as "no stable weight" (motion, no value).

Lines end at CR; an LF inside a line tears it (the new LF starts the next reply); an empty line
(the LF of a CR LF ending, or LF CR) is idle. Feed any chunking; `feed` never raises.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from devices.protocols.framing import LineDecoder
from devices.protocols.stable_weight import WeightFrame, as_decimal, to_kg
from devices.readings import FrameRejected

FORMAT = "sma"
LF, CR = 0x0A, 0x0D
LINE_LENGTH = 18
"""Characters between LF and CR in a standard reply."""
MAX_LINE = 64
"""Longest line (between LF and CR) the decoder buffers before dropping it."""
COMMANDS = frozenset("WHZTMRS")
"""Host commands `encode_sma_command` sends: weight, high-res weight, zero, tare, tare weight, repeat, stop."""

_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
_NUMBER = re.compile(r" *(-?) *([0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_DASHES = re.compile(r" *-[ -]*")
_STATUS = frozenset(" ZOUEIT")
_UNITS = frozenset({"kg", "lb", "t", "g"})
VARIANTS = ("standard", "cardinal", "fairbanks")
_STABILITY_TIMEOUT = "-" * 10
_MODES = frozenset("GNTgn")


def decode_sma_line(line: bytes, variant: str = "standard") -> WeightFrame | FrameRejected:
    """Decode one reply given without its LF and CR (`variant`: see the module docstring). Never raises."""
    raw = b"\n" + bytes(line) + b"\r"
    if line == b"?":
        return FrameRejected("not a weight reply: the indicator did not recognise the command", raw)
    bad = _NOT_PRINTABLE.search(line)
    if bad is not None:
        return FrameRejected(f"control or non-ASCII byte 0x{line[bad.start()]:02X} at offset {bad.start() + 1}", raw)
    cardinal = variant == "cardinal"
    lengths = (LINE_LENGTH, LINE_LENGTH + 1) if cardinal else (LINE_LENGTH,)
    if len(line) not in lengths:
        expected = " or ".join(str(n) for n in lengths)
        return FrameRejected(f"not a weight reply: {len(line)} characters, expected {expected}", raw)
    text = line.decode("ascii")
    weight_end = len(text) - 3
    status, range_char, mode, motion = text[0], text[1], text[2], text[3]
    weight_text, units = text[5:weight_end], text[weight_end:]
    if status not in _STATUS and not (cardinal and status == "e"):  # Cardinal e: weight not being displayed
        return FrameRejected(f"bad scale status {status!r}: expected Z, O, U, E, I, T or space", raw)
    if not range_char.isdigit():
        return FrameRejected(f"bad range {range_char!r}: expected a digit", raw)
    if mode not in _MODES:
        return FrameRejected(f"bad gross/net status {mode!r}: expected G, N, T, g or n", raw)
    if motion not in " M":
        return FrameRejected(f"bad motion status {motion!r}: expected 'M' or space", raw)
    unit = units.strip()
    known_units = _UNITS | {"oz"} if cardinal else _UNITS
    if unit and (unit not in known_units or units not in (unit.rjust(3), unit.ljust(3))):
        return FrameRejected(f"unsupported units {units!r}", raw)
    value: Decimal | None = None
    stability_timeout = (variant == "fairbanks" and status == " " and weight_text == _STABILITY_TIMEOUT
                         and not unit)
    match = _NUMBER.fullmatch(weight_text)
    if match is not None:
        value = Decimal(match.group(1) + match.group(2))
    elif not ((_DASHES.fullmatch(weight_text) and status in "EITOUe") or stability_timeout
              or (status == "e" and not weight_text.strip())):
        return FrameRejected(f"weight field {weight_text!r} is not a number", raw)
    usable = status in " Z" and not stability_timeout
    return WeightFrame(
        format=FORMAT,
        weight_kg=to_kg(value, unit) if usable else None,
        raw_value=value,
        raw_unit=unit,
        net=mode in "Nn",
        motion=motion == "M" or stability_timeout,
        overload=status == "O",
        underload=status == "U",
        zero_error=status in "EI",
        error=status in "Te",
        tare=mode == "T",
    )


class SmaDecoder(LineDecoder[WeightFrame]):
    """Incremental decoder of SMA replies: `feed(bytes)` returns the replies (and rejections) completed.

    Bytes outside a reply are skipped until the next LF (a CR there is idle); each run of garbage
    is reported once. A line longer than `max_line` is dropped and reported. `frames_ok` and
    `frames_bad` count what `feed` returned. The buffering and resync loop is
    `devices.protocols.framing.LineDecoder`.
    """

    start_byte = LF
    unit, resync_at, line_end_name = "reply", "LF", "CR"

    def __init__(self, max_line: int = MAX_LINE, variant: str = "standard"):
        if variant not in VARIANTS:
            raise ValueError(f"unknown SMA variant {variant!r}: expected one of {', '.join(VARIANTS)}")
        super().__init__(max_line)
        self.variant = variant

    def decode(self, line: bytes, now: datetime | None) -> WeightFrame | FrameRejected | None:
        return decode_sma_line(line, self.variant) if line else None  # LF CR with nothing between is idle

    def torn(self, line: bytes) -> FrameRejected | None:
        return FrameRejected("torn reply: LF before CR", b"\n" + line) if line else None  # an empty line is idle


def encode_sma_command(command: str) -> bytes:
    """Return the host command `<LF><command><CR>`: W weight, H high resolution, Z zero, T tare,
    M tare weight, R repeat continuously, S stop repeating. Raises ValueError for any other."""
    if command not in COMMANDS or len(command) != 1:
        raise ValueError(f"unknown SMA command {command!r}: expected one of {''.join(sorted(COMMANDS))}")
    return b"\n" + command.encode("ascii") + b"\r"


def encode_sma_reply(weight: Decimal | int | str | None, *, unit: str = "kg", status: str = " ",
                     mode: str = "G", motion: bool = False, range_char: str = "1") -> bytes:
    """Return one standard reply (simulators); raises ValueError for what it cannot carry.

    `weight` None sends dashes, which only the E, I, T, O and U states may carry. Units are written
    right-aligned (`` kg``); `unit` ``""`` blanks them.
    """
    if status not in _STATUS or len(status) != 1:
        raise ValueError(f"status must be one of Z, O, U, E, I, T or space, got {status!r}")
    if mode not in _MODES or len(mode) != 1:
        raise ValueError(f"mode must be one of G, N, T, g, n, got {mode!r}")
    if len(range_char) != 1 or not range_char.isdigit() or not range_char.isascii():
        raise ValueError(f"range_char must be one digit, got {range_char!r}")
    if unit and unit not in _UNITS:
        raise ValueError(f"unit must be kg, lb, t, g or empty, got {unit!r}")
    if weight is None:
        if status not in "EITOU":
            raise ValueError("only the E, I, T, O and U states send dashes instead of a weight")
        field = "    --    "
    else:
        value = as_decimal(weight)
        field = ("-" if value.is_signed() else "") + format(abs(value), "f")
        if len(field) > 10:
            raise ValueError(f"weight {weight} does not fit the ten-character field")
        field = field.rjust(10)
    text = status + range_char + mode + ("M" if motion else " ") + " " + field + unit.rjust(3)
    return b"\n" + text.encode("ascii") + b"\r"
