"""Weighbridge common parts and the stable-weight detector (sans-I/O, no clock: time is passed in).

Three indicator formats (``weighbridge_toledo``, ``weighbridge_sma``, ``weighbridge_rinstrum``)
decode into the one `WeightFrame` defined here: what the indicator shows at one instant, with the
weight converted to kilograms. Conversions are exact decimals until the final float: 1 lb =
0.45359237 kg, 1 t = 1000 kg, 1 g = 0.001 kg.

`weight_kg` is None whenever the indicator shows no usable number: over or under range, an error
state (the display shows dashes), or units left blank. The flags tell why. A frame with a weight
is still only a *frame*: a truck rolling onto the bridge sends many of them. `StableWeightDetector`
turns that stream into the one stable gross weight per truck that the lane wants.

The shared scanner of the fixed-length formats that start with STX (Toledo, Rinstrum) is
`devices.protocols.framing.FixedStxDecoder`, the one stream-decoder loop of every serial codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

KG_PER_UNIT: dict[str, Decimal] = {
    "kg": Decimal(1),
    "lb": Decimal("0.45359237"),
    "t": Decimal(1000),
    "g": Decimal("0.001"),
}
"""Units the indicator codecs accept, and what one of each weighs in kilograms."""
KG_PER_OUNCE = Decimal("0.028349523125")
"""The avoirdupois ounce (1/16 lb): only the SMA `cardinal` variant accepts `oz`."""



@dataclass(frozen=True)
class WeightFrame:
    """One indicator reading as sent on the wire, with the weight in kilograms.

    weight_kg: signed kilograms; None when over/under range, in an error state or units unknown.
    raw_value: the signed number the indicator displays, in `raw_unit` (None when it sent none).
    raw_unit: ``kg``, ``lb``, ``t``, ``g``, or ``""`` when the indicator left the units blank.
    net: the value is net (tare subtracted), not gross. tare: the value is the tare itself (SMA
    reply to the tare-weight command). motion: the indicator says the load is moving.
    overload / underload: outside the weighing range. zero_error: zero not captured (SMA ``E``/``I``,
    Toledo "not zeroed since power-up"). error: any other indicator error (SMA tare error,
    Rinstrum ``E``). format: ``toledo``, ``sma`` or ``rinstrum``.
    """

    format: str
    weight_kg: float | None
    raw_value: Decimal | None
    raw_unit: str
    net: bool = False
    motion: bool = False
    overload: bool = False
    underload: bool = False
    zero_error: bool = False
    error: bool = False
    tare: bool = False

    @property
    def usable_gross(self) -> bool:
        """True when this frame shows a gross weight with no motion, range or error flag."""
        return (self.weight_kg is not None and not (self.net or self.tare or self.motion or self.overload
                                                    or self.underload or self.zero_error or self.error))


def to_kg(value: Decimal | None, unit: str) -> float | None:
    """Return `value` in `unit` as kilograms, or None for no value or unknown/blank units."""
    factor = KG_PER_OUNCE if unit == "oz" else KG_PER_UNIT.get(unit)
    if value is None or factor is None:
        return None
    return float(value * factor)


def as_decimal(weight: Decimal | int | str) -> Decimal:
    """Encoder helper: a finite Decimal from a Decimal, int or numeric string (floats are refused)."""
    if isinstance(weight, bool) or not isinstance(weight, Decimal | int | str):
        raise ValueError(f"weight must be a Decimal, int or numeric string, got {type(weight).__name__}")
    try:
        value = Decimal(weight)
    except ArithmeticError as exc:
        raise ValueError(f"weight {weight!r} is not a number") from exc
    if not value.is_finite():
        raise ValueError(f"weight {weight!r} is not finite")
    return value


class StableWeightDetector:
    """Turns a stream of `WeightFrame` into one stable gross weight per truck. Pure: time is passed in.

    `update(frame, now)` returns the gross kilograms once, when the weight has stayed within
    ±`band_kg` of the first reading of the current window for at least `hold_s` seconds, every
    frame in between a usable gross reading (no motion, no over/under range, no error, not net or
    tare, in known units) at or above `min_kg`. Anything else restarts the window, and so does a
    gap of more than `max_gap_s` between frames (a stalled line is no evidence of a still load) or
    time going backwards. The value returned is the latest reading (on the indicator's own
    graduation), not an average.

    After reporting, the detector stays quiet until the bridge is empty again: any frame with a
    weight below `min_kg` re-arms it, so a truck that stands on the bridge is weighed once, and the
    next truck is weighed again. Only a gross reading re-arms (a net reading near zero may be a tared
    truck still on the bridge). `reset()` re-arms at once (a new lane transaction, a reconnect).
    """

    def __init__(self, band_kg: float, hold_s: float, min_kg: float, *, max_gap_s: float = 2.0):
        if band_kg < 0 or hold_s < 0 or max_gap_s <= 0:
            raise ValueError("band_kg and hold_s must be >= 0 and max_gap_s > 0")
        self.band_kg, self.hold_s, self.min_kg, self.max_gap_s = band_kg, hold_s, min_kg, max_gap_s
        self._armed = True
        self._since: float | None = None  # time of the first reading of the current window
        self._reference = 0.0  # the first reading of the current window
        self._last_at: float | None = None

    @property
    def armed(self) -> bool:
        """True while the detector waits for a weight to report (False after one, until the bridge empties)."""
        return self._armed

    def reset(self) -> None:
        """Forget the current window and re-arm."""
        self._armed = True
        self._since = None
        self._last_at = None

    def update(self, frame: WeightFrame, now: float) -> float | None:
        """Feed one frame received at `now` (seconds); return the stable gross kg once, else None."""
        last_at, self._last_at = self._last_at, now
        weight = frame.weight_kg
        if weight is not None and weight < self.min_kg and not (frame.net or frame.tare):
            self._armed = True  # the bridge is (nearly) empty: the next load is a new truck
            self._since = None
            return None
        if not self._armed or not frame.usable_gross or weight is None:
            self._since = None
            return None
        if (self._since is None or last_at is None or now < last_at or now - last_at > self.max_gap_s
                or abs(weight - self._reference) > self.band_kg):
            self._since, self._reference = now, weight
        if now - self._since >= self.hold_s:
            self._armed = False
            self._since = None
            return weight
        return None

