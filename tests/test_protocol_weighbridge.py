"""Weighbridge indicators on the gate's serial line (Toledo, SMA, Rinstrum) and the stable weight of a truck."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.protocols.stable_weight import KG_PER_UNIT, StableWeightDetector, WeightFrame
from devices.protocols.weighbridge_rinstrum import RinstrumDecoder, decode_rinstrum_frame, encode_rinstrum_frame
from devices.protocols.weighbridge_sma import (
    SmaDecoder,
    decode_sma_line,
    encode_sma_command,
    encode_sma_reply,
)
from devices.protocols.weighbridge_toledo import (
    ToledoDecoder,
    decode_toledo_frame,
    encode_toledo_frame,
    toledo_checksum,
)
from devices.readings import FrameRejected

STX, ETX, CR = b"\x02", b"\x03", b"\r"


def frames_of(items: list) -> list[WeightFrame]:
    return [item for item in items if isinstance(item, WeightFrame)]


def rejections_of(items: list) -> list[FrameRejected]:
    return [item for item in items if isinstance(item, FrameRejected)]


def feed_in_chunks(data: bytes, cuts: list[int], decoder) -> list:
    items, start = [], 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}) + [len(data)]:
        items += decoder.feed(data[start:cut])
        start = cut
    return items


def check_output(items: list, decoder, vouched: list[WeightFrame]) -> None:
    """What the lane may rely on, whatever came down the line."""
    assert all(isinstance(item, WeightFrame | FrameRejected) for item in items)
    assert decoder.frames_ok + decoder.frames_bad == len(items)
    assert not [item for item in rejections_of(items) if item.reason.startswith("internal")]
    for frame in frames_of(items):
        assert frame in vouched, f"{frame} decoded from bytes that are not one whole valid frame"


# ====================================================================== Toledo continuous

TRUCK_KG = WeightFrame("toledo", 45680.0, Decimal(45680), "kg")


def toledo_vouched(data: bytes, checksum: bool) -> list[WeightFrame]:
    """Every frame some STX-started span of the wire carries whole and valid (the oracle)."""
    length = 17 + checksum
    spans = (decode_toledo_frame(data[at:at + length], checksum) for at in range(len(data)) if data[at] == 2)
    return [span for span in spans if isinstance(span, WeightFrame)]


def test_a_45680_kg_truck_in_the_domain_example_frame():
    # SWA: decimal code 2 (XXXXXX), increment x1, bit 5; SWB: kg, bit 5; SWC: bit 5.
    frame = STX + bytes([0b0010_1010, 0b0011_0000, 0b0010_0000]) + b"045680" + b"000000" + CR
    assert encode_toledo_frame(45680, checksum=False) == frame
    assert ToledoDecoder(checksum=False).feed(frame) == [TRUCK_KG]


def test_the_checksum_byte_makes_the_low_seven_bits_of_the_frame_sum_zero():
    frame = encode_toledo_frame(45680, checksum=True)
    assert len(frame) == 18
    assert sum(frame) & 0x7F == 0
    assert frame[17] == toledo_checksum(frame[:17])
    assert ToledoDecoder(checksum=True).feed(frame) == [TRUCK_KG]


@pytest.mark.parametrize(("code", "digits", "value"), [
    (0, b"000457", Decimal(45700)),  # XXXX00: dummy zeros are not sent
    (1, b"004568", Decimal(45680)),  # XXXXX0
    (2, b"045680", Decimal(45680)),  # XXXXXX
    (3, b"456800", Decimal("45680.0")),  # XXXXX.X
    (4, b"045680", Decimal("456.80")),
    (5, b"045680", Decimal("45.680")),
    (7, b"045680", Decimal("0.45680")),
])
def test_decimal_code_places_the_point_or_the_dummy_zeros(code, digits, value):
    frame = STX + bytes([0x28 | code, 0x30, 0x20]) + digits + b"000000" + CR
    (decoded,) = ToledoDecoder(checksum=False).feed(frame)
    assert decoded.raw_value == value
    assert decoded.weight_kg == pytest.approx(float(value))


def test_status_word_b_flags_reach_the_frame():
    decoder = ToledoDecoder(checksum=True)
    (moving,) = decoder.feed(encode_toledo_frame(45680, motion=True))
    (net,) = decoder.feed(encode_toledo_frame(30680, net=True, tare=15000))
    (negative,) = decoder.feed(encode_toledo_frame(-20))
    (over,) = decoder.feed(encode_toledo_frame(999999, out_of_range=True))
    (under,) = decoder.feed(encode_toledo_frame(-999, out_of_range=True))
    (not_zeroed,) = decoder.feed(encode_toledo_frame(45680, not_zeroed=True))
    assert moving.motion and not moving.net
    assert net.net and net.weight_kg == 30680.0
    assert negative.weight_kg == -20.0 and negative.raw_value == -20
    assert over.overload and not over.underload and over.weight_kg is None and over.raw_value == 999999
    assert under.underload and not under.overload and under.weight_kg is None
    assert not_zeroed.zero_error and not not_zeroed.usable_gross


@pytest.mark.parametrize(("unit", "weight", "kg"), [
    ("lb", 100000, 45359.237), ("kg", 45680, 45680.0), ("t", "45.68", 45680.0), ("g", "45680", 45.68),
])
def test_units_are_converted_to_kilograms(unit, weight, kg):
    (frame,) = ToledoDecoder(checksum=True).feed(encode_toledo_frame(weight, unit=unit,
                                                                     decimal_code=2 if unit != "t" else 4))
    assert frame.raw_unit == unit
    assert frame.weight_kg == pytest.approx(kg)


def test_parity_in_bit_7_of_the_status_bytes_and_checksum_is_ignored():
    plain = encode_toledo_frame(45680, motion=True, checksum=True)
    with_parity = encode_toledo_frame(45680, motion=True, checksum=True, parity=True)
    assert plain != with_parity
    decoder = ToledoDecoder(checksum=True)
    assert decoder.feed(with_parity) == decoder.feed(plain)
    assert decoder.frames_bad == 0


def test_leading_zeros_blanked_to_spaces_still_read():
    frame = STX + bytes([0x2A, 0x30, 0x20]) + b" 45680" + b"     0" + CR
    assert ToledoDecoder(checksum=False).feed(frame) == [TRUCK_KG]


@pytest.mark.parametrize(("swa", "swb", "swc", "weight", "tare", "reason"), [
    (0x0A, 0x30, 0x20, b"045680", b"000000", "status word A"),  # bit 5 clear
    (0x6A, 0x30, 0x20, b"045680", b"000000", "status word A"),  # bit 6 set
    (0x22, 0x30, 0x20, b"045680", b"000000", "increment code 00"),
    (0x2A, 0x30, 0x00, b"045680", b"000000", "status word C"),  # bit 5 clear
    (0x2A, 0x30, 0x30, b"045680", b"000000", "expanded display"),
    (0x2A, 0x30, 0x23, b"045680", b"000000", "unsupported unit code 3"),
    (0x2A, 0x30, 0x20, b"0456B0", b"000000", "weight field"),
    (0x2A, 0x30, 0x20, b"-45680", b"000000", "weight field"),
    (0x2A, 0x30, 0x20, b"      ", b"000000", "weight field"),
    (0x2A, 0x30, 0x20, b"045680", b"00 000", "tare field"),
    (0x2A, 0x30, 0x20, b"45 680", b"000000", "weight field"),
])
def test_frames_that_break_the_spec_are_refused_with_a_reason(swa, swb, swc, weight, tare, reason):
    frame = STX + bytes([swa, swb, swc]) + weight + tare + CR
    for checksum in (False, True):
        decoder = ToledoDecoder(checksum=checksum)
        (rejected,) = decoder.feed(frame + (bytes([toledo_checksum(frame)]) if checksum else b""))
        assert reason in rejected.reason
        assert decoder.frames_bad == 1


def test_a_wrong_checksum_is_refused_with_both_values():
    frame = encode_toledo_frame(45680)
    damaged = frame[:-1] + bytes([(frame[-1] + 1) & 0x7F])
    (rejected,) = ToledoDecoder(checksum=True).feed(damaged)
    assert rejected.reason == f"checksum mismatch: got {damaged[-1]:02X}, computed {frame[-1]:02X}"


def test_out_of_range_blanks_may_carry_no_digits():
    frame = STX + bytes([0x2A, 0x34, 0x20]) + b"------" + b"000000" + CR
    (over,) = ToledoDecoder(checksum=False).feed(frame)
    assert over.overload and over.raw_value is None and over.weight_kg is None


def test_bit_7_on_a_digit_is_refused_though_the_seven_bit_checksum_cannot_see_it():
    frame = encode_toledo_frame(500100, out_of_range=True)
    damaged = frame[:6] + bytes([frame[6] | 0x80]) + frame[7:]
    assert sum(damaged) & 0x7F == 0  # the checksum still holds
    (rejected,) = ToledoDecoder(checksum=True).feed(damaged)
    assert "non-ASCII" in rejected.reason


def test_an_indicator_sending_checksums_to_a_profile_without_them_is_noticed_not_misread():
    decoder = ToledoDecoder(checksum=False)
    items = decoder.feed(b"".join(encode_toledo_frame(45680 + step) for step in range(10)))
    assert [frame.weight_kg for frame in frames_of(items)] == [45680.0 + step for step in range(10)]
    assert rejections_of(items)


def test_a_profile_with_checksums_never_accepts_frames_without_a_holding_one():
    data = b"".join(encode_toledo_frame(45680 + step, checksum=False) for step in range(50))
    items = ToledoDecoder(checksum=True).feed(data)
    for frame in frames_of(items):
        assert frame in toledo_vouched(data, checksum=True)


TOLEDO_FIELDS = st.fixed_dictionaries({
    "digits": st.integers(0, 999_999),
    "negative": st.booleans(),
    "decimal_code": st.integers(0, 7),
    "increment": st.sampled_from([1, 2, 5]),
    "unit": st.sampled_from(sorted(KG_PER_UNIT)),
    "tare_digits": st.integers(0, 999_999),
    "net": st.booleans(),
    "motion": st.booleans(),
    "out_of_range": st.booleans(),
    "not_zeroed": st.booleans(),
    "parity": st.booleans(),
})


def toledo_frame(fields: dict, checksum: bool = True) -> tuple[bytes, WeightFrame]:
    """A frame for `fields` and the WeightFrame the node must read from it."""
    shift = 2 - fields["decimal_code"]
    value = Decimal(fields["digits"]).scaleb(shift) * (-1 if fields["negative"] else 1)
    tare = Decimal(fields["tare_digits"]).scaleb(shift)
    wire = encode_toledo_frame(value, unit=fields["unit"], decimal_code=fields["decimal_code"],
                               increment=fields["increment"], tare=tare, net=fields["net"], motion=fields["motion"],
                               out_of_range=fields["out_of_range"], not_zeroed=fields["not_zeroed"],
                               checksum=checksum, parity=fields["parity"])
    over = fields["out_of_range"]
    expected = WeightFrame("toledo", None if over else float(value * KG_PER_UNIT[fields["unit"]]), value,
                           fields["unit"], net=fields["net"], motion=fields["motion"],
                           overload=over and not fields["negative"], underload=over and fields["negative"],
                           zero_error=fields["not_zeroed"])
    return wire, expected


@given(TOLEDO_FIELDS, st.booleans())
def test_any_frame_the_simulator_sends_reaches_the_node_unchanged_toledo(fields, checksum):
    wire, expected = toledo_frame(fields, checksum)
    decoder = ToledoDecoder(checksum=checksum)
    assert decoder.feed(wire) == [expected]
    assert (decoder.frames_ok, decoder.frames_bad) == (1, 0)


@given(st.lists(TOLEDO_FIELDS, min_size=1, max_size=6), st.booleans(), st.lists(st.integers(0, 120), max_size=20))
def test_toledo_frames_split_anywhere_across_serial_reads_still_decode(fields, checksum, cuts):
    pairs = [toledo_frame(each, checksum) for each in fields]
    data = b"".join(wire for wire, _ in pairs)
    assert feed_in_chunks(data, cuts, ToledoDecoder(checksum=checksum)) == [frame for _, frame in pairs]


def test_a_toledo_frame_trickling_in_one_byte_at_a_time_decodes_once_complete():
    decoder = ToledoDecoder(checksum=True)
    wire = encode_toledo_frame(45680)
    items = []
    for index in range(len(wire)):
        got = decoder.feed(wire[index:index + 1])
        assert got == [] or index == len(wire) - 1
        items += got
    assert items == [TRUCK_KG]


def test_garbage_between_toledo_frames_costs_one_rejection_and_neither_frame():
    decoder = ToledoDecoder(checksum=True)
    noise = b"\x00\xff+++ATZ\r\nNO CARRIER\x02\x02\x13\x11" * 20
    items = decoder.feed(encode_toledo_frame(45680) + noise + encode_toledo_frame(45700))
    assert [frame.weight_kg for frame in frames_of(items)] == [45680.0, 45700.0]
    (rejected,) = rejections_of(items)
    assert rejected.reason.startswith("garbage")


@given(st.binary(min_size=1).filter(lambda data: b"\x02" not in data and data.strip(b"\r\n")),
       st.lists(st.integers(0, 200), max_size=30))
def test_a_run_of_garbage_on_the_toledo_line_is_reported_once_however_chunked(noise, cuts):
    items = feed_in_chunks(noise, cuts, ToledoDecoder(checksum=True))
    assert len(items) == 1
    assert items[0].reason.startswith("garbage")


@given(TOLEDO_FIELDS, st.data())
def test_a_flipped_byte_in_a_toledo_frame_is_a_rejection_never_a_wrong_weight(fields, data):
    wire, expected = toledo_frame(fields, checksum=True)
    following, after = toledo_frame({**fields, "digits": (fields["digits"] + 1) % 1_000_000}, checksum=True)
    position = data.draw(st.integers(0, len(wire) - 1), label="position")
    replacement = data.draw(st.integers(0, 255).filter(lambda byte: byte != wire[position]), label="byte")
    damaged = wire[:position] + bytes([replacement]) + wire[position + 1:]

    decoder = ToledoDecoder(checksum=True)
    items = decoder.feed(damaged + following)

    parity_only = position in (1, 2, 3, 17) and replacement ^ wire[position] == 0x80
    if parity_only:  # bit 7 of a status byte or CHK is parity: same frame
        assert items == [expected, after]
    else:
        assert frames_of(items) == [after]
        assert rejections_of(items), "the damage went unnoticed"


@given(st.binary(max_size=1000), st.booleans(), st.lists(st.integers(0, 1000), max_size=10))
def test_arbitrary_bytes_never_raise_and_never_invent_a_toledo_weight(data, checksum, cuts):
    decoder = ToledoDecoder(checksum=checksum)
    items = feed_in_chunks(data, cuts, decoder)
    check_output(items, decoder, toledo_vouched(data, checksum))
    assert len(decoder._pending) < decoder.frame_length


TOLEDO_PIECES = st.one_of(
    st.binary(max_size=30),
    TOLEDO_FIELDS.map(lambda fields: toledo_frame(fields)[0]),
    st.tuples(TOLEDO_FIELDS, st.integers(0, 18)).map(lambda pair: toledo_frame(pair[0])[0][:pair[1]]),
    st.sampled_from([STX, CR, b"\x02*0 ", b"000000\r"]),
)


@given(st.lists(TOLEDO_PIECES, max_size=12), st.lists(st.integers(0, 400), max_size=10))
def test_a_noisy_toledo_line_only_yields_frames_that_were_sent(pieces, cuts):
    data = b"".join(pieces)
    decoder = ToledoDecoder(checksum=True)
    check_output(feed_in_chunks(data, cuts, decoder), decoder, toledo_vouched(data, True))


@given(st.lists(TOLEDO_PIECES, max_size=12), st.lists(st.integers(0, 400), max_size=10))
def test_how_the_serial_port_splits_the_reads_never_changes_the_weights(pieces, cuts):
    data = b"".join(pieces)
    for make in (lambda: ToledoDecoder(checksum=True), lambda: ToledoDecoder(checksum=False), RinstrumDecoder,
                 SmaDecoder):
        assert frames_of(feed_in_chunks(data, cuts, make())) == frames_of(make().feed(data))


@given(st.lists(TOLEDO_FIELDS, min_size=1, max_size=4),
       st.lists(st.binary(max_size=30).filter(lambda noise: b"\x02" not in noise), min_size=1, max_size=4))
def test_every_complete_toledo_frame_after_noise_survives(fields, noises):
    pairs = [toledo_frame(each) for each in fields]
    data = b"".join(noise + wire for noise, (wire, _) in zip(noises * 4, pairs, strict=False))
    assert frames_of(ToledoDecoder(checksum=True).feed(data)) == [frame for _, frame in pairs]


def test_toledo_buffer_stays_bounded_on_an_endless_line_of_stray_stx():
    decoder = ToledoDecoder(checksum=True)
    for _ in range(200):
        decoder.feed(b"\x02\x2a\x30\x20" * 25)
        assert len(decoder._pending) < 18
    assert decoder.feed(b"\r\r" + encode_toledo_frame(45680))[-1] == TRUCK_KG


@pytest.mark.parametrize("kwargs", [
    {"weight": "45680.5"},  # more decimals than code 2 shows
    {"weight": 1_000_000},
    {"weight": 45680, "decimal_code": 8},
    {"weight": 45680, "increment": 3},
    {"weight": 45680, "unit": "oz"},
    {"weight": 45680, "tare": -1},
    {"weight": 45680.0},  # floats are refused: they cannot say how many decimals the display has
    {"weight": "NaN"},
])
def test_the_toledo_encoder_refuses_what_the_frame_cannot_carry(kwargs):
    with pytest.raises(ValueError):
        encode_toledo_frame(**kwargs)


# ====================================================================== SMA SCP-0499


def sma_vouched(data: bytes) -> list[WeightFrame]:
    spans = (decode_sma_line(match.group(1)) for match in re.finditer(rb"\n([^\r\n]*)\r", data))
    return [span for span in spans if isinstance(span, WeightFrame)]


def test_a_45680_kg_truck_in_an_sma_reply():
    reply = b"\n 1G     45680.0 kg\r"
    assert len(reply) == 20
    (frame,) = SmaDecoder().feed(reply)
    assert frame == WeightFrame("sma", 45680.0, Decimal("45680.0"), "kg")


def test_the_sartorius_manual_example_with_left_aligned_units():
    # <LF> <_> <1> <G> <_> <_> <_ _ _ _ _ 5.025> <lb_> <CR>
    (frame,) = SmaDecoder().feed(b"\n" + b" 1G" + b"  " + b"     5.025" + b"lb " + b"\r")
    assert frame.raw_value == Decimal("5.025") and frame.raw_unit == "lb"
    assert frame.weight_kg == pytest.approx(5.025 * 0.45359237)


@pytest.mark.parametrize(("status", "flag"), [("O", "overload"), ("U", "underload")])
def test_sma_over_and_under_capacity_keep_the_value_but_give_no_weight(status, flag):
    (frame,) = SmaDecoder().feed(encode_sma_reply(99999 if status == "O" else -500, status=status))
    assert getattr(frame, flag)
    assert frame.weight_kg is None and frame.raw_value is not None


@pytest.mark.parametrize(("status", "flag"), [("E", "zero_error"), ("I", "zero_error"), ("T", "error")])
def test_sma_error_states_send_dashes_and_no_weight(status, flag):
    reply = b"\n" + status.encode() + b"1G" + b"  " + b"   ----   " + b" kg" + b"\r"
    (frame,) = SmaDecoder().feed(reply)
    assert getattr(frame, flag)
    assert frame.weight_kg is None and frame.raw_value is None


@pytest.mark.parametrize(("mode", "net", "tare"), [("G", False, False), ("g", False, False), ("N", True, False),
                                                  ("n", True, False), ("T", False, True)])
def test_sma_gross_net_and_tare_replies(mode, net, tare):
    (frame,) = SmaDecoder().feed(encode_sma_reply(15000, mode=mode))
    assert (frame.net, frame.tare) == (net, tare)
    assert frame.usable_gross == (mode in "Gg")


@pytest.mark.parametrize("weight", [b"-   12.345", b"   -12.345", b"-12.345000", b"      -0.5"])
def test_sma_minus_sign_before_or_after_the_padding(weight):
    (frame,) = SmaDecoder().feed(b"\n 1G  " + weight + b"  t\r")
    assert frame.raw_value < 0
    assert frame.weight_kg == pytest.approx(float(frame.raw_value) * 1000)


def test_sma_centre_of_zero_and_motion():
    decoder = SmaDecoder()
    (zero,) = decoder.feed(encode_sma_reply("0.0", status="Z"))
    (moving,) = decoder.feed(encode_sma_reply(45120, motion=True))
    assert zero.weight_kg == 0.0 and zero.usable_gross
    assert moving.motion and not moving.usable_gross


def test_sma_host_commands():
    assert [encode_sma_command(command) for command in "WZTRS"] == [b"\nW\r", b"\nZ\r", b"\nT\r", b"\nR\r",
                                                                     b"\nS\r"]
    for bad in ("X", "", "WW", "w"):
        with pytest.raises(ValueError):
            encode_sma_command(bad)


@pytest.mark.parametrize(("reply", "reason"), [
    (b"\n?\r", "did not recognise the command"),
    (b"\nSMA:2/1.0\r", "not a weight reply"),
    (b"\n 1G     45680.0 kg \r", "not a weight reply"),
    (b"\nX1G     45680.0 kg\r", "bad scale status"),
    (b"\n G     45680.0 kg\r", "not a weight reply"),
    (b"\n AG     45680.0 kg\r", "bad range"),
    (b"\n 1X     45680.0 kg\r", "bad gross/net"),
    (b"\n 1GX    45680.0 kg\r", "bad motion"),
    (b"\n 1G     45680.0 oz\r", "unsupported units"),
    (b"\n 1G     45680.0k g\r", "unsupported units"),
    (b"\n 1G     4568O.0 kg\r", "not a number"),
    (b"\n 1G     45 80.0 kg\r", "not a number"),
    (b"\n 1G      ----   kg\r", "not a number"),  # dashes without an error status
    (b"\n 1G   \x0045680.0 kg\r", "control"),
    (b"\n 1G   \xc345680.0 kg\r", "non-ASCII"),
])
def test_sma_replies_that_break_the_spec_are_refused_with_a_reason(reply, reason):
    decoder = SmaDecoder()
    (rejected,) = decoder.feed(reply)
    assert isinstance(rejected, FrameRejected)
    assert reason in rejected.reason
    assert decoder.frames_bad == 1


def test_sma_crlf_endings_and_blank_lines_are_idle():
    reply = encode_sma_reply(45680)
    decoder = SmaDecoder()
    items = decoder.feed(reply + b"\n" + reply + b"\n\n\r\r" + reply)
    assert len(frames_of(items)) == 3 and not rejections_of(items)


def test_an_sma_reply_torn_by_a_new_lf_is_rejected_and_the_new_reply_kept():
    items = SmaDecoder().feed(encode_sma_reply(45680)[:9] + encode_sma_reply(45700))
    assert [frame.weight_kg for frame in frames_of(items)] == [45700.0]
    (rejected,) = rejections_of(items)
    assert rejected.reason.startswith("torn reply")


def test_an_sma_line_without_end_is_dropped_at_the_bound_and_the_line_recovers():
    decoder = SmaDecoder()
    items = decoder.feed(b"\n 1G")
    for _ in range(50):
        items += decoder.feed(b"9" * 100)
        assert len(decoder._line) <= decoder.max_line + 1
    items += decoder.feed(b"\r" + encode_sma_reply(45680))
    assert [frame.weight_kg for frame in frames_of(items)] == [45680.0]
    assert [item.reason[:13] for item in rejections_of(items)] == ["line too long"]


SMA_FIELDS = st.fixed_dictionaries({
    "weight": st.decimals(min_value=-99999, max_value=999999, places=3, allow_nan=False, allow_infinity=False),
    "unit": st.sampled_from(sorted(KG_PER_UNIT)),
    "status": st.sampled_from(list(" ZOUEIT")),
    "mode": st.sampled_from(list("GNTgn")),
    "motion": st.booleans(),
    "range_char": st.sampled_from(list("0123456789")),
    "dashes": st.booleans(),
})


def sma_reply(fields: dict) -> tuple[bytes, WeightFrame]:
    status = fields["status"]
    dashes = fields["dashes"] and status in "EITOU"
    value = None if dashes else fields["weight"]
    wire = encode_sma_reply(value, unit=fields["unit"], status=status, mode=fields["mode"], motion=fields["motion"],
                            range_char=fields["range_char"])
    usable = status in " Z"
    expected = WeightFrame("sma", float(value * KG_PER_UNIT[fields["unit"]]) if usable else None, value,
                           fields["unit"], net=fields["mode"] in "Nn", motion=fields["motion"], overload=status == "O",
                           underload=status == "U", zero_error=status in "EI", error=status == "T",
                           tare=fields["mode"] == "T")
    return wire, expected


@given(SMA_FIELDS)
def test_any_reply_the_simulator_sends_reaches_the_node_unchanged_sma(fields):
    wire, expected = sma_reply(fields)
    decoder = SmaDecoder()
    assert decoder.feed(wire) == [expected]
    assert (decoder.frames_ok, decoder.frames_bad) == (1, 0)


@given(st.lists(SMA_FIELDS, min_size=1, max_size=6), st.lists(st.integers(0, 130), max_size=20))
def test_sma_replies_split_anywhere_across_serial_reads_still_decode(fields, cuts):
    pairs = [sma_reply(each) for each in fields]
    data = b"".join(wire for wire, _ in pairs)
    assert feed_in_chunks(data, cuts, SmaDecoder()) == [frame for _, frame in pairs]


def test_garbage_between_sma_replies_costs_one_rejection_and_neither_reply():
    noise = b"\x00\xff+++ATZ\rNO CARRIER\x13\x11" * 20
    items = SmaDecoder().feed(encode_sma_reply(45680) + noise + encode_sma_reply(45700))
    assert [frame.weight_kg for frame in frames_of(items)] == [45680.0, 45700.0]
    (rejected,) = rejections_of(items)
    assert rejected.reason.startswith("garbage")


@given(st.binary(min_size=1).filter(lambda data: b"\n" not in data and data.strip(b"\r")),
       st.lists(st.integers(0, 200), max_size=30))
def test_a_run_of_garbage_on_the_sma_line_is_reported_once_however_chunked(noise, cuts):
    items = feed_in_chunks(noise, cuts, SmaDecoder())
    assert len(items) == 1
    assert items[0].reason.startswith("garbage")


@given(st.binary(max_size=1000), st.lists(st.integers(0, 1000), max_size=10))
def test_arbitrary_bytes_never_raise_and_never_invent_an_sma_weight(data, cuts):
    decoder = SmaDecoder()
    check_output(feed_in_chunks(data, cuts, decoder), decoder, sma_vouched(data))


SMA_PIECES = st.one_of(
    st.binary(max_size=30),
    SMA_FIELDS.map(lambda fields: sma_reply(fields)[0]),
    st.tuples(SMA_FIELDS, st.integers(0, 20)).map(lambda pair: sma_reply(pair[0])[0][:pair[1]]),
    st.sampled_from([b"\n", b"\r", b"\n?\r", b" 1G  "]),
)


@given(st.lists(SMA_PIECES, max_size=12), st.lists(st.integers(0, 400), max_size=10))
def test_a_noisy_sma_line_only_yields_replies_that_were_sent(pieces, cuts):
    data = b"".join(pieces)
    decoder = SmaDecoder()
    check_output(feed_in_chunks(data, cuts, decoder), decoder, sma_vouched(data))


@pytest.mark.parametrize("kwargs", [
    {"weight": "123456789.0"}, {"weight": 45680, "unit": "oz"}, {"weight": 45680, "status": "X"},
    {"weight": 45680, "mode": "X"}, {"weight": 45680, "range_char": "A"}, {"weight": None},
    {"weight": 45680.0},
])
def test_the_sma_encoder_refuses_what_the_reply_cannot_carry(kwargs):
    with pytest.raises(ValueError):
        encode_sma_reply(**kwargs)


# ====================================================================== Rinstrum automatic output


def rinstrum_vouched(data: bytes) -> list[WeightFrame]:
    spans = (decode_rinstrum_frame(data[at:at + 17]) for at in range(len(data)) if data[at] == 2)
    return [span for span in spans if isinstance(span, WeightFrame)]


def test_a_45680_kg_truck_in_a_rinstrum_frame():
    frame = STX + b" " + b"  45680" + b"G" + b" " + b" " + b"-" + b" kg" + ETX
    assert encode_rinstrum_frame(45680) == frame
    assert RinstrumDecoder().feed(frame) == [WeightFrame("rinstrum", 45680.0, Decimal(45680), "kg")]


def test_rinstrum_tonnes_with_a_decimal_point_and_negative_kilograms():
    decoder = RinstrumDecoder()
    (tonnes,) = decoder.feed(STX + b" " + b" 45.680" + b"G  -" + b"  t" + ETX)
    (negative,) = decoder.feed(STX + b"-" + b"     20" + b"GMZ1" + b" kg" + ETX)
    assert tonnes.weight_kg == pytest.approx(45680.0) and tonnes.raw_unit == "t"
    assert negative.weight_kg == -20.0 and negative.motion


@pytest.mark.parametrize(("state", "flag"), [("U", "underload"), ("O", "overload"), ("E", "error")])
def test_rinstrum_out_of_range_and_error_states_give_no_weight(state, flag):
    decoder = RinstrumDecoder()
    (with_digits,) = decoder.feed(encode_rinstrum_frame(99999, state=state))
    (with_dashes,) = decoder.feed(encode_rinstrum_frame(None, state=state))
    for frame in (with_digits, with_dashes):
        assert getattr(frame, flag) and frame.weight_kg is None and not frame.usable_gross
    assert with_digits.raw_value == 99999 and with_dashes.raw_value is None


def test_rinstrum_blank_units_while_moving_give_no_weight_but_keep_the_value():
    (frame,) = RinstrumDecoder().feed(encode_rinstrum_frame(41230, motion=True, unit=""))
    assert frame.motion and frame.raw_unit == "" and frame.raw_value == 41230 and frame.weight_kg is None


def test_rinstrum_net_frames_are_not_gross():
    (frame,) = RinstrumDecoder().feed(encode_rinstrum_frame(30680, state="N"))
    assert frame.net and frame.weight_kg == 30680.0 and not frame.usable_gross


@pytest.mark.parametrize(("body", "reason"), [
    (b"*  45680G  - kg", "bad sign"),
    (b"   45680X  - kg", "bad status S1"),
    (b"   45680Gx - kg", "bad status S2"),
    (b"   45680G x- kg", "bad status S3"),
    (b"   45680G  x kg", "bad status S4"),
    (b"   45680G  - oz", "unsupported units"),
    (b"   45680G  -k g", "unsupported units"),
    (b"   4568OG  - kg", "not a number"),
    (b" -------G  - kg", "not a number"),
    (b"   45\x0080G  - kg", "control"),
])
def test_rinstrum_frames_that_break_the_spec_are_refused_with_a_reason(body, reason):
    decoder = RinstrumDecoder()
    (rejected,) = decoder.feed(STX + body + ETX)
    assert reason in rejected.reason
    assert decoder.frames_bad == 1


RINSTRUM_FIELDS = st.fixed_dictionaries({
    "weight": st.one_of(st.integers(-999_999, 999_999).map(Decimal),
                        st.decimals(min_value=-99999, max_value=99999, places=1, allow_nan=False,
                                    allow_infinity=False),
                        st.decimals(min_value=-99, max_value=99, places=3, allow_nan=False, allow_infinity=False)),
    "unit": st.sampled_from([*sorted(KG_PER_UNIT), ""]),
    "state": st.sampled_from(list("GNUOE")),
    "motion": st.booleans(),
    "centre_of_zero": st.booleans(),
    "range_char": st.sampled_from(list("-12")),
    "dashes": st.booleans(),
})


def rinstrum_frame(fields: dict) -> tuple[bytes, WeightFrame]:
    state = fields["state"]
    value = None if fields["dashes"] and state in "UOE" else fields["weight"]
    wire = encode_rinstrum_frame(value, unit=fields["unit"], state=state, motion=fields["motion"],
                                 centre_of_zero=fields["centre_of_zero"], range_char=fields["range_char"])
    factor = KG_PER_UNIT.get(fields["unit"])
    kg = float(value * factor) if state in "GN" and factor is not None else None
    expected = WeightFrame("rinstrum", kg, value, fields["unit"], net=state == "N", motion=fields["motion"],
                           overload=state == "O", underload=state == "U", error=state == "E")
    return wire, expected


@given(RINSTRUM_FIELDS)
def test_any_frame_the_simulator_sends_reaches_the_node_unchanged_rinstrum(fields):
    wire, expected = rinstrum_frame(fields)
    decoder = RinstrumDecoder()
    assert decoder.feed(wire) == [expected]
    assert (decoder.frames_ok, decoder.frames_bad) == (1, 0)


@given(st.lists(RINSTRUM_FIELDS, min_size=1, max_size=6), st.lists(st.integers(0, 110), max_size=20))
def test_rinstrum_frames_split_anywhere_across_serial_reads_still_decode(fields, cuts):
    pairs = [rinstrum_frame(each) for each in fields]
    data = b"".join(wire for wire, _ in pairs)
    assert feed_in_chunks(data, cuts, RinstrumDecoder()) == [frame for _, frame in pairs]


def test_garbage_between_rinstrum_frames_costs_one_rejection_and_neither_frame():
    noise = b"\x00\xff+++ATZ\r\nNO CARRIER\x02\x03\x02" * 20
    items = RinstrumDecoder().feed(encode_rinstrum_frame(45680) + noise + encode_rinstrum_frame(45700))
    assert [frame.weight_kg for frame in frames_of(items)] == [45680.0, 45700.0]
    (rejected,) = rejections_of(items)
    assert rejected.reason.startswith("garbage")


@given(st.binary(max_size=1000), st.lists(st.integers(0, 1000), max_size=10))
def test_arbitrary_bytes_never_raise_and_never_invent_a_rinstrum_weight(data, cuts):
    decoder = RinstrumDecoder()
    check_output(feed_in_chunks(data, cuts, decoder), decoder, rinstrum_vouched(data))
    assert len(decoder._pending) < 17


RINSTRUM_PIECES = st.one_of(
    st.binary(max_size=30),
    RINSTRUM_FIELDS.map(lambda fields: rinstrum_frame(fields)[0]),
    st.tuples(RINSTRUM_FIELDS, st.integers(0, 17)).map(lambda pair: rinstrum_frame(pair[0])[0][:pair[1]]),
    st.sampled_from([STX, ETX, b"G  - kg\x03"]),
)


@given(st.lists(RINSTRUM_PIECES, max_size=12), st.lists(st.integers(0, 400), max_size=10))
def test_a_noisy_rinstrum_line_only_yields_frames_that_were_sent(pieces, cuts):
    data = b"".join(pieces)
    decoder = RinstrumDecoder()
    check_output(feed_in_chunks(data, cuts, decoder), decoder, rinstrum_vouched(data))


@given(st.lists(RINSTRUM_FIELDS, min_size=1, max_size=4),
       st.lists(st.binary(max_size=30).filter(lambda noise: b"\x02" not in noise), min_size=1, max_size=4))
def test_every_complete_rinstrum_frame_after_noise_survives(fields, noises):
    pairs = [rinstrum_frame(each) for each in fields]
    data = b"".join(noise + wire for noise, (wire, _) in zip(noises * 4, pairs, strict=False))
    assert frames_of(RinstrumDecoder().feed(data)) == [frame for _, frame in pairs]


@pytest.mark.parametrize("kwargs", [
    {"weight": 1_000_000}, {"weight": "12345.678"}, {"weight": None}, {"weight": None, "state": "N"},
    {"weight": 45680, "state": "X"}, {"weight": 45680, "unit": "oz"}, {"weight": 45680, "range_char": "x"},
])
def test_the_rinstrum_encoder_refuses_what_the_frame_cannot_carry(kwargs):
    with pytest.raises(ValueError):
        encode_rinstrum_frame(**kwargs)


def test_bytearray_and_memoryview_are_fed_like_bytes_on_every_indicator():
    for decoder, wire in ((ToledoDecoder(checksum=True), encode_toledo_frame(45680)),
                          (SmaDecoder(), encode_sma_reply(45680)), (RinstrumDecoder(), encode_rinstrum_frame(45680))):
        items = decoder.feed(bytearray(wire[:7])) + decoder.feed(memoryview(wire)[7:])
        assert [frame.weight_kg for frame in items] == [45680.0]


# ====================================================================== the stable weight of a truck

HZ = 10  # indicators send about ten frames a second


def gross(kg: float, **flags) -> WeightFrame:
    return WeightFrame("toledo", kg, Decimal(str(kg)), "kg", **flags)


def drive(detector: StableWeightDetector, samples: list[tuple[float, WeightFrame]]) -> list[tuple[float, float]]:
    """Feed (time, frame) pairs; return (time, weight) of every report."""
    reports = []
    for at, frame in samples:
        weight = detector.update(frame, at)
        if weight is not None:
            reports.append((at, weight))
    return reports


def truck_visit(start: float, load_kg: float, stand_s: float = 10.0) -> list[tuple[float, WeightFrame]]:
    """Empty bridge, a truck rolling on (moving), bouncing to rest, standing, then driving off."""
    samples, at = [], start
    for _ in range(10):  # empty bridge
        samples.append((at, gross(0.0)))
        at += 1 / HZ
    for step in range(1, 21):  # rolling on: the indicator flags motion
        samples.append((at, gross(load_kg * step / 20, motion=True)))
        at += 1 / HZ
    for wobble in (120, -80, 40, -20):  # settling: no motion flag yet outside the band
        samples.append((at, gross(load_kg + wobble)))
        at += 1 / HZ
    for index in range(int(stand_s * HZ)):  # standing: ±10 kg of wind and graduation flicker
        samples.append((at, gross(load_kg + (10 if index % 3 == 0 else 0))))
        at += 1 / HZ
    for step in range(20, -1, -1):  # driving off
        samples.append((at, gross(load_kg * step / 20, motion=step > 0)))
        at += 1 / HZ
    return samples


def test_truck_settling_on_the_bridge_gives_one_stable_weight():
    detector = StableWeightDetector(band_kg=20, hold_s=2.0, min_kg=500)
    reports = drive(detector, truck_visit(1000.0, 45680))
    assert len(reports) == 1
    at, weight = reports[0]
    assert weight in (45680, 45690)
    settled_at = 1000.0 + (10 + 20 + 4) / HZ
    assert at == pytest.approx(settled_at + 2.0, abs=0.15)


def test_the_next_truck_is_weighed_after_the_bridge_empties():
    detector = StableWeightDetector(band_kg=20, hold_s=2.0, min_kg=500)
    first = truck_visit(1000.0, 45680)
    second = truck_visit(first[-1][0] + 5, 31240)
    reports = drive(detector, first + second)
    assert [round(weight, -2) for _, weight in reports] == [45700, 31200]


def test_a_truck_standing_for_an_hour_is_weighed_once():
    detector = StableWeightDetector(band_kg=20, hold_s=2.0, min_kg=500)
    samples = [(index / HZ, gross(45680)) for index in range(3600 * HZ)]
    assert len(drive(detector, samples)) == 1


def test_motion_blocks_a_stable_weight():
    detector = StableWeightDetector(band_kg=20, hold_s=2.0, min_kg=500)
    samples = [(index / HZ, gross(45680, motion=True)) for index in range(100)]
    assert drive(detector, samples) == []


def test_a_motion_flag_in_the_hold_restarts_it():
    detector = StableWeightDetector(band_kg=20, hold_s=2.0, min_kg=500)
    samples = [(index / HZ, gross(45680, motion=index % 15 == 14)) for index in range(90)]
    assert drive(detector, samples) == []  # never 2 s without motion
    later = [(10 + index / HZ, gross(45680)) for index in range(30)]
    assert drive(detector, later) == [(pytest.approx(12.0), 45680)]


@pytest.mark.parametrize("flags", [{"overload": True}, {"underload": True}, {"zero_error": True}, {"error": True},
                                   {"net": True}, {"tare": True}])
def test_overload_errors_and_non_gross_readings_block_a_stable_weight(flags):
    detector = StableWeightDetector(band_kg=20, hold_s=2.0, min_kg=500)
    samples = [(index / HZ, gross(45680, **flags)) for index in range(100)]
    assert drive(detector, samples) == []


def test_an_overloaded_bridge_gives_no_weight_even_when_still():
    detector = StableWeightDetector(band_kg=20, hold_s=2.0, min_kg=500)
    over = WeightFrame("sma", None, Decimal(99999), "kg", overload=True)
    assert drive(detector, [(index / HZ, over) for index in range(100)]) == []


def test_a_weight_wandering_beyond_the_band_does_not_settle():
    detector = StableWeightDetector(band_kg=20, hold_s=2.0, min_kg=500)
    samples = [(index / HZ, gross(45000 + 25 * (index % 2))) for index in range(100)]
    assert drive(detector, samples) == []


def test_a_stalled_line_is_no_evidence_of_a_still_truck():
    detector = StableWeightDetector(band_kg=20, hold_s=2.0, min_kg=500, max_gap_s=1.0)
    assert detector.update(gross(45680), 0.0) is None
    assert detector.update(gross(45680), 5.0) is None  # 5 s without a frame: the window restarts here
    assert detector.update(gross(45680), 5.5) is None
    assert detector.update(gross(45680), 7.0) is None  # 1.5 s gap again
    assert [detector.update(gross(45680), 7.0 + step) for step in (0.5, 1.0, 1.5, 2.0)] == [None, None, None, 45680]


def test_time_going_backwards_restarts_the_hold():
    detector = StableWeightDetector(band_kg=20, hold_s=2.0, min_kg=500)
    assert detector.update(gross(45680), 100.0) is None
    assert detector.update(gross(45680), 101.0) is None
    assert detector.update(gross(45680), 50.0) is None
    assert detector.update(gross(45680), 51.9) is None
    assert detector.update(gross(45680), 52.0) == 45680


def test_a_net_reading_near_zero_does_not_re_arm_for_the_same_truck():
    detector = StableWeightDetector(band_kg=20, hold_s=1.0, min_kg=500)
    assert drive(detector, [(index / HZ, gross(45680)) for index in range(20)]) == [(1.0, 45680)]
    tared = [(2 + index / HZ, gross(0.0, net=True)) for index in range(20)]
    back = [(4 + index / HZ, gross(45680)) for index in range(20)]
    assert drive(detector, tared + back) == []


def test_reset_re_arms_at_once():
    detector = StableWeightDetector(band_kg=20, hold_s=1.0, min_kg=500)
    assert len(drive(detector, [(index / HZ, gross(45680)) for index in range(20)])) == 1
    assert not detector.armed
    detector.reset()
    assert detector.armed
    assert len(drive(detector, [(5 + index / HZ, gross(45680)) for index in range(20)])) == 1


def test_lb_indicators_report_kilograms():
    detector = StableWeightDetector(band_kg=20, hold_s=1.0, min_kg=500)
    frame = WeightFrame("sma", 45359.237, Decimal(100000), "lb")
    assert drive(detector, [(index / HZ, frame) for index in range(11)]) == [(1.0, 45359.237)]


def test_detector_refuses_nonsense_settings():
    with pytest.raises(ValueError):
        StableWeightDetector(band_kg=-1, hold_s=2, min_kg=500)
    with pytest.raises(ValueError):
        StableWeightDetector(band_kg=20, hold_s=2, min_kg=500, max_gap_s=0)


DETECTOR_FRAMES = st.builds(
    WeightFrame, format=st.just("toledo"),
    weight_kg=st.none() | st.sampled_from([0.0, 100.0, 499.0, 500.0, 45670.0, 45680.0, 45700.0, 46000.0]),
    raw_value=st.none(), raw_unit=st.just("kg"), net=st.booleans(), motion=st.booleans(), overload=st.booleans(),
    underload=st.just(False), zero_error=st.just(False), error=st.just(False), tare=st.just(False),
)


@given(st.lists(st.tuples(st.floats(0, 1.5), DETECTOR_FRAMES), max_size=80))
def test_at_most_one_weight_per_visit_and_only_from_still_gross_readings(steps):
    detector = StableWeightDetector(band_kg=20, hold_s=1.0, min_kg=500)
    at, reported_this_visit = 0.0, False
    for delta, frame in steps:
        at += delta
        weight = detector.update(frame, at)
        if frame.weight_kg is not None and frame.weight_kg < 500 and not frame.net:
            reported_this_visit = False
        if weight is not None:
            assert not reported_this_visit, "a second weight for the same truck"
            assert frame.usable_gross and weight == frame.weight_kg and weight >= 500
            reported_this_visit = True
