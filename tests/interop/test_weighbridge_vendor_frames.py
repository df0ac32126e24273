"""Weighbridge frames as vendors' manuals print them, decoded through the device profile's options.

Each frame below is written from the manual it cites (byte values or the documented layout), not
from our encoder. A variant is accepted only with the profile option that names it; the default
profile still refuses it, so a site gets the strict decoder unless it asks for the variant.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from devices.protocols.stable_weight import WeightFrame
from devices.protocols.weighbridge_toledo import toledo_checksum
from devices.readings import FrameRejected
from devices.weighbridge import weight_decoder
from edge.config import WeighbridgeProfile, load_profile

LB = 0.45359237
STX, CR, ETX, LF = b"\x02", b"\r", b"\x03", b"\n"


def profile(name: str, **options) -> WeighbridgeProfile:
    base = load_profile(name)
    assert isinstance(base, WeighbridgeProfile)
    return WeighbridgeProfile.model_validate({**base.model_dump(), **options})


def decode(profile_: WeighbridgeProfile, data: bytes) -> list[WeightFrame | FrameRejected]:
    return weight_decoder(profile_).feed(data)


def only_frame(items: list) -> WeightFrame:
    assert len(items) == 1 and isinstance(items[0], WeightFrame), items
    return items[0]


def only_rejection(items: list) -> FrameRejected:
    assert items and all(isinstance(item, FrameRejected) for item in items), items
    return items[0]


# ---------------------------------------------------------------- Toledo continuous

# ScaleResource.com, "Typical Data stream from a Toledo Jaguar" (scales manual v1014, p. 119):
#   [2][49][32][32][32][32][32][50][48][48][32][32][32][32][32][32][13]
# STX, SWA '1' (0x31: decimal code 1 = XXXXX0, increment x2, bit 5 set), SWB and SWC 0x20 (gross, lb,
# stable), weight "   200", and the tare as six spaces, then CR; no checksum.
JAGUAR = bytes([2, 49, 32, 32, 32, 32, 32, 50, 48, 48, 32, 32, 32, 32, 32, 32, 13])


def test_mettler_toledo_jaguar_frame_with_a_blank_tare_decodes_with_the_blank_tare_option():
    jaguar = profile("toledo-continuous-indicator", checksum=False, blank_tare=True)
    frame = only_frame(decode(jaguar, JAGUAR))
    assert frame.raw_value == Decimal(2000) and frame.raw_unit == "lb"  # code 1: one dummy zero
    assert frame.weight_kg == pytest.approx(2000 * LB) and frame.usable_gross


def test_the_default_toledo_profile_still_refuses_a_blank_tare():
    strict = profile("toledo-continuous-indicator", checksum=False)
    assert "tare field" in only_rejection(decode(strict, JAGUAR)).reason


# Liden LUW2001-LBW manual, Appendix 1 "Continuous output MT format" (18 bytes, CKS optional):
#   Status word A: bits 0-2 decimal position (0 1 0 = XXXXXX, 1 1 0 = XXXXX.X, ...),
#   "Bit 3 Constant 0, Bit 4 Constant 1, Bit 5 Constant 0, Bit 6 Constant 1, Bit 7 Constant 0/check bit".
# So SWA = 0b0101_0010 (0x52) for whole kilograms; SWB 0x30 (kg, gross, stable), SWC 0x20.
LIDEN_SWA = 0b0101_0010


def liden_frame(weight: bytes, checksum: bool = True) -> bytes:
    body = STX + bytes([LIDEN_SWA, 0x30, 0x20]) + weight + b"000000" + CR
    return body + (bytes([toledo_checksum(body)]) if checksum else b"")


def test_liden_and_chinese_status_bits_decode_only_with_the_clone_option():
    clone = profile("toledo-continuous-indicator", clone_status_bits=True)
    frame = only_frame(decode(clone, liden_frame(b"028140")))
    assert frame.weight_kg == 28140.0 and frame.usable_gross
    # Both constant bits set, as other Chinese copies send: accepted by the option too.
    both = STX + bytes([0x72, 0x30, 0x20]) + b"028140000000" + CR
    assert only_frame(decode(clone, both + bytes([toledo_checksum(both)]))).weight_kg == 28140.0
    # Neither set is not a status byte of anyone's: still refused.
    neither = STX + bytes([0x12, 0x30, 0x20]) + b"028140000000" + CR
    assert "status word A" in only_rejection(decode(clone, neither + bytes([toledo_checksum(neither)]))).reason


def test_the_default_toledo_profile_refuses_clone_status_bits():
    strict = profile("toledo-continuous-indicator")
    assert "status word A" in only_rejection(decode(strict, liden_frame(b"028140"))).reason


# Cardinal 225 Installation and Technical manual (8200-M698-O1 Rev B), Continuous output formats, TOLEDO:
#   "Format 1 - SHORT no CKSUM  <stx><swa><swb><swc>xxxxxx<cr>"
#   "Format 3 - SHORT with CKSUM  <stx><swa><swb><swc>xxxxxx<cr><sum>"
def test_cardinal_short_format_without_tare_decodes_with_the_short_frame_option():
    body = STX + bytes([0x2A, 0x30, 0x20]) + b"045680" + CR  # whole kg, x1, gross, kg, stable
    short = profile("toledo-continuous-indicator", checksum=False, short_frame=True)
    frames = decode(short, body * 3)
    assert [f.weight_kg for f in frames] == [45680.0] * 3
    with_sum = profile("toledo-continuous-indicator", checksum=True, short_frame=True)
    assert [f.weight_kg for f in decode(with_sum, (body + bytes([toledo_checksum(body)])) * 2)] == [45680.0] * 2
    strict = profile("toledo-continuous-indicator", checksum=False)
    assert not any(isinstance(item, WeightFrame) for item in decode(strict, body * 3))


def test_a_frame_option_for_another_format_is_a_profile_error():
    with pytest.raises(ValueError, match="toledo-continuous"):
        profile("sma-indicator", clone_status_bits=True)
    with pytest.raises(ValueError, match="sma_variant"):
        profile("toledo-continuous-indicator", sma_variant="cardinal")


# ---------------------------------------------------------------- SMA (SCP-0499)

def sma(text: str) -> bytes:
    return LF + text.encode("ascii") + CR


def test_sartorius_manual_examples_decode_with_the_standard_profile():
    # Sartorius PR 5220 instrument manual, SMA protocol, "Example": <LF> <_> <1> <G> <_> <_> <_ _ _ _ 5.025>
    # <lb_> <CR>, and the repeat reply in motion <LF> <_> <1> <G> <M> <_> <_ _ _ _ 7.650> <kg_> <CR>.
    standard = profile("sma-indicator")
    still = only_frame(decode(standard, sma(" 1G  " + "     5.025" + "lb ")))
    moving = only_frame(decode(standard, sma(" 1GM " + "     7.650" + "kg ")))
    assert still.weight_kg == pytest.approx(5.025 * LB) and not still.motion
    assert moving.weight_kg == pytest.approx(7.65) and moving.motion


# Cardinal 190 manual (8400-M022-O1 Rev J), "Request Displayed Weight Command (SMA Format)":
#   <LF><s><r><n><m><f><xxxxxxx.xxx><uuu><CR>; s: ... "e = weight is not being displayed";
#   units of measure ("lb ", "oz ", "kg ", or "g ").
def test_cardinal_sma_replies_decode_with_the_cardinal_variant():
    cardinal = profile("sma-indicator", sma_variant="cardinal")
    eleven = only_frame(decode(cardinal, sma(" 1G  " + "  45680.000" + "kg ")))
    assert eleven.weight_kg == 45680.0 and eleven.usable_gross
    ounces = only_frame(decode(cardinal, sma(" 1G  " + "     16.000" + "oz ")))
    assert ounces.weight_kg == pytest.approx(LB)  # 16 oz = 1 lb
    hidden = only_frame(decode(cardinal, sma("e1G  " + "           " + "kg ")))
    assert hidden.weight_kg is None and not hidden.usable_gross
    # The ten-character field of the standard reply still reads with the variant.
    assert only_frame(decode(cardinal, sma(" 1G  " + "   45680.0" + " kg"))).weight_kg == 45680.0


def test_the_standard_sma_profile_refuses_cardinal_replies():
    standard = profile("sma-indicator")
    for reply in (" 1G  " + "  45680.000" + "kg ", " 1G  " + "    16.000" + "oz ", "e1G  " + "   45680.0" + "kg "):
        assert isinstance(only_rejection(decode(standard, sma(reply))), FrameRejected)


# Fairbanks X-Series PR 5410 manual (51207 Rev 1), 5.3.1 "Requesting the Weight with Stability": "After
# elapse of the waiting time without reaching stability, the following reply is sent:
#   <LF><_><1><n><_><f><----------><___><CR>"
def test_fairbanks_stability_time_out_reply_is_no_stable_weight_with_the_fairbanks_variant():
    fairbanks = profile("sma-indicator", sma_variant="fairbanks")
    timeout = only_frame(decode(fairbanks, sma(" 1G  " + "----------" + "   ")))
    assert timeout.weight_kg is None and timeout.motion and not timeout.usable_gross
    assert only_frame(decode(fairbanks, sma(" 1G  " + "   45680.0" + " kg"))).weight_kg == 45680.0
    standard = profile("sma-indicator")
    assert "not a number" in only_rejection(decode(standard, sma(" 1G  " + "----------" + "   "))).reason


# ---------------------------------------------------------------- Rinstrum auto output

# Rinstrum R320 reference manual (003R-682-119), 9.4 "Auto Weight Format String", FMT_2:
#   <STX> <SIGN> <WEIGHT(7)> <S1> <S2> <S3> <S4> <UNITS(3)> <ETX>
# "WEIGHT(7): ... If there is no decimal point, then the first character is a space. Leading characters
# are spaces." "UNITS(3): ... the first character being a space, followed by the actual units (e.g. ^kg
# or ^^t). If the weight reading is not stable, the unit string is sent as ^^^." "S4: Displays -
# representing single range."
@pytest.mark.parametrize(("text", "kg", "usable"), [
    ("   12340G  - kg", 12340.0, True),
    ("   12.34G  -  t", 12340.0, True),
    ("   12340GM -   ", None, False),  # moving: units sent as three spaces
    ("-    120N Z- kg", -120.0, False),  # net, centre of zero
])
def test_rinstrum_auto_output_as_the_manual_describes_it(text, kg, usable):
    rinstrum = profile("rinstrum-auto-indicator")
    frame = only_frame(decode(rinstrum, STX + text.encode("ascii") + ETX))
    assert frame.weight_kg == kg and frame.usable_gross is usable
