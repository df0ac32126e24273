"""The e-seal reader's ASCII line format, as the gate's serial cable delivers it: torn, noisy, chunked."""

from __future__ import annotations

import functools
import operator
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.protocols.eseal_ascii import (
    EsealAsciiDecoder,
    SealFrame,
    decode_line,
    encode_raw_line,
    encode_seal_frame,
    seal_frame_to_read,
    xor_checksum,
)
from devices.readings import FrameRejected, SealRead, SealStatus

AT_GATE = datetime(2026, 11, 23, 8, 15, 42, tzinfo=UTC)
SEAL_ON_TRUCK = SealFrame("RDR01", "HGT00012345", SealStatus.INTACT, 87, "CSQU3054383", AT_GATE)
NEXT_SEAL = SealFrame("RDR01", "HGT00067890", SealStatus.OPENED, None, None, AT_GATE + timedelta(seconds=9))

# Characters a reader may put in a text field: printable ASCII without the frame's delimiters.
FIELD_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters=",*$"),
                     min_size=1, max_size=16)
CONTAINERS = st.one_of(st.none(), st.from_regex(r"[A-Z]{3}[UJZ][0-9]{7}", fullmatch=True),
                       st.from_regex(r"[A-Z0-9]{1,12}", fullmatch=True))
TIMESTAMPS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                          timezones=st.just(UTC)).map(lambda when: when.replace(microsecond=0))
FRAMES = st.builds(SealFrame, reader_id=FIELD_TEXT, seal_id=FIELD_TEXT, status=st.sampled_from(SealStatus),
                   battery_pct=st.none() | st.integers(0, 100), container=CONTAINERS, timestamp=TIMESTAMPS)
LINE = re.compile(rb"\$([^$\r\n]*)")


def frames_of(items: list) -> list[SealFrame]:
    return [item for item in items if isinstance(item, SealFrame)]


def rejections_of(items: list) -> list[FrameRejected]:
    return [item for item in items if isinstance(item, FrameRejected)]


def feed_in_chunks(data: bytes, cuts: list[int], decoder: EsealAsciiDecoder | None = None) -> list:
    decoder = decoder or EsealAsciiDecoder()
    items, start = [], 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}) + [len(data)]:
        items += decoder.feed(data[start:cut])
        start = cut
    return items


def frames_the_wire_vouches_for(data: bytes) -> list[SealFrame]:
    """Every frame some `$...` line in `data` carries with a checksum that holds (the oracle)."""
    vouched = []
    for match in LINE.finditer(data):
        decoded = decode_line(match.group(1))
        if isinstance(decoded, SealFrame):
            vouched.append(decoded)
    return vouched


# ------------------------------------------------------------------ the line as documented


def test_domain_example_line_decodes_to_the_seal_on_the_truck():
    body = b"ESEAL,RDR01,HGT00012345,S,87,CSQU3054383,20261123081542"
    checksum = functools.reduce(operator.xor, body, 0)
    line = b"$" + body + b"*" + f"{checksum:02X}".encode() + b"\r\n"

    assert encode_seal_frame(SEAL_ON_TRUCK) == line
    assert EsealAsciiDecoder().feed(line) == [SEAL_ON_TRUCK]


@pytest.mark.parametrize(("letter", "status"), [("S", SealStatus.INTACT), ("O", SealStatus.OPENED),
                                                ("T", SealStatus.TAMPERED)])
def test_each_status_letter_means_what_domain_md_says(letter, status):
    line = encode_raw_line(f"ESEAL,RDR01,HGT1,{letter},50,,20261123081542")
    (frame,) = EsealAsciiDecoder().feed(line)
    assert frame.status is status


def test_empty_battery_and_container_are_unknown_not_zero():
    (frame,) = EsealAsciiDecoder().feed(encode_raw_line("ESEAL,RDR01,HGT1,O,,,20261123081542"))
    assert frame.battery_pct is None
    assert frame.container is None


def test_container_is_normalised_but_a_bad_check_digit_is_left_for_the_rules():
    decoder = EsealAsciiDecoder()
    (spaced,) = decoder.feed(encode_raw_line("ESEAL,RDR01,HGT1,S,50,csqu 305438-3,20261123081542"))
    (wrong_digit,) = decoder.feed(encode_raw_line("ESEAL,RDR01,HGT1,S,50,CSQU3054384,20261123081542"))
    assert spaced.container == "CSQU3054383"
    assert wrong_digit.container == "CSQU3054384"


def test_timestamp_is_utc_and_tz_aware():
    (frame,) = EsealAsciiDecoder().feed(encode_seal_frame(SEAL_ON_TRUCK))
    assert frame.timestamp.tzinfo is not None
    assert frame.timestamp.utcoffset() == timedelta(0)
    assert frame.timestamp == AT_GATE


def test_lower_case_checksum_is_accepted_and_upper_case_is_emitted():
    line = encode_seal_frame(SEAL_ON_TRUCK)
    assert re.search(rb"\*[0-9A-F]{2}\r\n$", line)
    lower = line[:-4] + line[-4:-2].lower() + b"\r\n"
    assert EsealAsciiDecoder().feed(lower) == [SEAL_ON_TRUCK]


@pytest.mark.parametrize("ending", [b"\r\n", b"\n", b"\r"])
def test_reader_line_endings_crlf_lf_or_cr_all_end_a_frame(ending):
    line = encode_seal_frame(SEAL_ON_TRUCK)[:-2] + ending
    assert EsealAsciiDecoder().feed(line) == [SEAL_ON_TRUCK]


def test_sealread_for_the_lane_carries_the_readers_own_time():
    read = seal_frame_to_read(SEAL_ON_TRUCK, "eseal-lane1", received_at=1_795_000_000.5)
    assert read == SealRead(device_id="eseal-lane1", seal_id="HGT00012345", status=SealStatus.INTACT,
                            battery_pct=87, container="CSQU3054383", observed_at=AT_GATE.timestamp(),
                            received_at=1_795_000_000.5, reader_id="RDR01")


# ------------------------------------------------------------------ round trips and chunking


@given(FRAMES)
def test_any_frame_the_simulator_sends_reaches_the_node_unchanged(frame):
    decoder = EsealAsciiDecoder()
    assert decoder.feed(encode_seal_frame(frame)) == [frame]
    assert (decoder.frames_ok, decoder.frames_bad) == (1, 0)


@given(st.lists(FRAMES, min_size=1, max_size=6), st.lists(st.integers(0, 600), max_size=20))
def test_frames_split_anywhere_across_serial_reads_still_decode(frames, cuts):
    data = b"".join(encode_seal_frame(frame) for frame in frames)
    assert feed_in_chunks(data, cuts) == frames


def test_a_frame_trickling_in_one_byte_at_a_time_decodes_once_complete():
    decoder = EsealAsciiDecoder()
    line = encode_seal_frame(SEAL_ON_TRUCK)
    items = []
    for index in range(len(line)):
        got = decoder.feed(line[index:index + 1])
        if index < len(line) - 2:  # nothing before the line end arrives
            assert got == []
        items += got
    assert items == [SEAL_ON_TRUCK]


def test_several_frames_in_one_read_come_out_in_order():
    data = encode_seal_frame(SEAL_ON_TRUCK) + encode_seal_frame(NEXT_SEAL) + encode_seal_frame(SEAL_ON_TRUCK)
    assert EsealAsciiDecoder().feed(data) == [SEAL_ON_TRUCK, NEXT_SEAL, SEAL_ON_TRUCK]


def test_blank_lines_between_frames_are_idle_not_garbage():
    data = b"\r\n\r\n" + encode_seal_frame(SEAL_ON_TRUCK) + b"\n\n\r" + encode_seal_frame(NEXT_SEAL)
    assert EsealAsciiDecoder().feed(data) == [SEAL_ON_TRUCK, NEXT_SEAL]


# ------------------------------------------------------------------ noise on the line


def test_garbage_between_two_frames_costs_one_rejection_and_neither_frame():
    decoder = EsealAsciiDecoder()
    noise = b"\x00\xff+++ATZ\r\nNO CARRIER\r\n\x13\x11" * 20
    items = decoder.feed(encode_seal_frame(SEAL_ON_TRUCK) + noise + encode_seal_frame(NEXT_SEAL))
    assert frames_of(items) == [SEAL_ON_TRUCK, NEXT_SEAL]
    (rejected,) = rejections_of(items)
    assert rejected.reason.startswith("garbage")
    assert (decoder.frames_ok, decoder.frames_bad) == (2, 1)


@given(st.binary(min_size=1).filter(lambda data: b"$" not in data and data.strip(b"\r\n")),
       st.lists(st.integers(0, 200), max_size=30))
def test_a_run_of_garbage_is_reported_once_however_it_is_chunked(noise, cuts):
    items = feed_in_chunks(noise, cuts)
    assert len(items) == 1
    assert items[0].reason.startswith("garbage")


def test_garbage_before_the_first_frame_is_skipped_until_the_dollar():
    items = EsealAsciiDecoder().feed(b"ESEAL,half a frame from before power-up*1F\r\n" + encode_seal_frame(NEXT_SEAL))
    assert frames_of(items) == [NEXT_SEAL]
    assert len(rejections_of(items)) == 1


def test_a_frame_torn_by_a_new_dollar_is_rejected_and_the_new_frame_kept():
    torn = encode_seal_frame(SEAL_ON_TRUCK)[:25]
    items = EsealAsciiDecoder().feed(torn + encode_seal_frame(NEXT_SEAL))
    assert frames_of(items) == [NEXT_SEAL]
    (rejected,) = rejections_of(items)
    assert rejected.reason.startswith("torn frame")


def test_a_line_without_end_is_dropped_at_the_bound_and_the_reader_recovers():
    decoder = EsealAsciiDecoder()
    items = []
    items = decoder.feed(b"$ESEAL,")
    for _ in range(50):  # 5 KB with no line end and no new `$`: a reader stuck mid-frame
        items += decoder.feed(b"9" * 100)
        assert len(decoder._line) <= decoder.max_line + 1
    items += decoder.feed(b"\r\n" + encode_seal_frame(NEXT_SEAL))
    assert frames_of(items) == [NEXT_SEAL]
    assert [item.reason[:13] for item in rejections_of(items)] == ["line too long"]


def test_one_overlong_line_is_one_rejection():
    decoder = EsealAsciiDecoder(max_line=64)
    items = decoder.feed(b"$" + b"A" * 1000 + b"\r\n" + encode_seal_frame(SEAL_ON_TRUCK))
    assert frames_of(items) == [SEAL_ON_TRUCK]
    assert [item.reason[:13] for item in rejections_of(items)] == ["line too long"]


# ------------------------------------------------------------------ frames the node must refuse


def test_wrong_checksum_is_rejected_with_both_values():
    line = encode_raw_line("ESEAL,RDR01,HGT1,S,87,CSQU3054383,20261123081542", checksum="00")
    computed = xor_checksum(b"ESEAL,RDR01,HGT1,S,87,CSQU3054383,20261123081542")
    decoder = EsealAsciiDecoder()
    (rejected,) = decoder.feed(line)
    assert rejected.reason == f"checksum mismatch: got 00, computed {computed:02X}"
    assert rejected.raw.startswith(b"$ESEAL")
    assert (decoder.frames_ok, decoder.frames_bad) == (0, 1)


@pytest.mark.parametrize(("body", "checksum", "reason"), [
    ("ESEAL,RDR01,HGT1,S,87,,20261123081542", "G1", "bad checksum field"),
    ("ESEAL,RDR01,HGT1,S,87,,20261123081542", "+1", "bad checksum field"),
    ("ESEAL,RDR01,HGT1,S,87,,20261123081542", "ABC", "bad checksum field"),
    ("ESEAL,RDR01,HGT1,S,87,20261123081542", None, "wrong field count: expected 7, got 6"),
    ("ESEAL,RDR01,HGT1,S,87,,,20261123081542", None, "wrong field count: expected 7, got 8"),
    ("GPRMC,RDR01,HGT1,S,87,,20261123081542", None, "unknown sentence"),
    ("ESEAL,,HGT1,S,87,,20261123081542", None, "empty reader id"),
    ("ESEAL,RDR01,,S,87,,20261123081542", None, "empty seal id"),
    ("ESEAL,RDR01,HGT1,X,87,,20261123081542", None, "bad status"),
    ("ESEAL,RDR01,HGT1,s,87,,20261123081542", None, "bad status"),
    ("ESEAL,RDR01,HGT1,SO,87,,20261123081542", None, "bad status"),
    ("ESEAL,RDR01,HGT1,S,101,,20261123081542", None, "bad battery"),
    ("ESEAL,RDR01,HGT1,S,-1,,20261123081542", None, "bad battery"),
    ("ESEAL,RDR01,HGT1,S,8.5,,20261123081542", None, "bad battery"),
    ("ESEAL,RDR01,HGT1,S,full,,20261123081542", None, "bad battery"),
    ("ESEAL,RDR01,HGT1,S,87,,20261323081542", None, "bad timestamp"),
    ("ESEAL,RDR01,HGT1,S,87,,20260230081542", None, "bad timestamp"),
    ("ESEAL,RDR01,HGT1,S,87,,20261123246000", None, "bad timestamp"),
    ("ESEAL,RDR01,HGT1,S,87,,202611230815", None, "bad timestamp"),
    ("ESEAL,RDR01,HGT1,S,87,,2026-11-23T08:15", None, "bad timestamp"),
    ("ESEAL,RDR01,HGT1,S,87,,", None, "bad timestamp"),
    ("ESEAL,RDR01,HGÜ1,S,87,,20261123081542", None, "non-ASCII byte"),
    ("ESEAL,RDR01,HG\x071,S,87,,20261123081542", None, "control byte"),
])
def test_malformed_frames_are_refused_with_a_reason(body, checksum, reason):
    decoder = EsealAsciiDecoder()
    (rejected,) = decoder.feed(encode_raw_line(body, checksum))
    assert isinstance(rejected, FrameRejected)
    assert reason in rejected.reason
    assert decoder.frames_bad == 1


def test_a_line_without_checksum_is_refused():
    (rejected,) = EsealAsciiDecoder().feed(b"$ESEAL,RDR01,HGT1,S,87,,20261123081542\r\n")
    assert "'*'" in rejected.reason


@given(FRAMES, st.data())
def test_a_flipped_byte_is_a_rejection_never_a_wrong_reading(frame, data):
    line = encode_seal_frame(frame)
    position = data.draw(st.integers(0, len(line) - 1), label="position")
    replacement = data.draw(st.integers(0, 255).filter(lambda byte: byte != line[position]), label="byte")
    damaged = line[:position] + bytes([replacement]) + line[position + 1:]

    decoder = EsealAsciiDecoder()
    items = decoder.feed(damaged) + decoder.feed(encode_seal_frame(NEXT_SEAL))

    in_checksum = len(line) - 4 <= position < len(line) - 2
    same_meaning = (
        (in_checksum and bytes([replacement]).upper() == line[position:position + 1])  # 7B -> 7b
        or (position == len(line) - 2 and replacement == 0x0A)  # CRLF -> LF LF: a frame and a blank line
        or (position == len(line) - 1 and replacement == 0x0D)  # CRLF -> CR CR
    )
    if same_meaning:
        assert items == [frame, NEXT_SEAL]
    elif position == len(line) - 1:  # the frame had already ended at CR; the stray byte is noise after it
        assert frames_of(items) == [frame, NEXT_SEAL]
        assert rejections_of(items)
    else:
        assert frames_of(items) == [NEXT_SEAL]
        assert rejections_of(items), "the damage went unnoticed"


# ------------------------------------------------------------------ whatever arrives, feed() copes


def check_decoder_output(items: list, decoder: EsealAsciiDecoder, data: bytes) -> None:
    assert all(isinstance(item, SealFrame | FrameRejected) for item in items)
    assert decoder.frames_ok + decoder.frames_bad == len(items)
    assert not [item for item in rejections_of(items) if item.reason.startswith("internal")]
    vouched = frames_the_wire_vouches_for(data)
    for frame in frames_of(items):
        assert frame in vouched, f"{frame} decoded without a line whose checksum holds"
        assert xor_checksum(encode_seal_frame(frame)[1:-5]) == int(encode_seal_frame(frame)[-4:-2], 16)


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=10))
def test_arbitrary_bytes_never_raise_and_never_invent_a_seal(data, cuts):
    decoder = EsealAsciiDecoder()
    items = feed_in_chunks(data, cuts, decoder)
    check_decoder_output(items, decoder, data)


WIRE_PIECES = st.one_of(
    st.binary(max_size=40),
    FRAMES.map(encode_seal_frame),
    st.tuples(FRAMES.map(encode_seal_frame), st.integers(0, 80)).map(lambda pair: pair[0][:pair[1]]),
    st.sampled_from([b"$", b"*", b"\r", b"\n", b",", b"*00\r\n", b"$ESEAL,"]),
)


@given(st.lists(WIRE_PIECES, max_size=12), st.lists(st.integers(0, 1500), max_size=10))
def test_noisy_line_with_real_frames_only_yields_frames_that_were_sent(pieces, cuts):
    data = b"".join(pieces)
    decoder = EsealAsciiDecoder()
    items = feed_in_chunks(data, cuts, decoder)
    check_decoder_output(items, decoder, data)


@given(st.lists(FRAMES, min_size=1, max_size=4), st.lists(st.binary(max_size=30), min_size=1, max_size=4))
def test_every_complete_frame_after_noise_survives(frames, noises):
    data = b"".join(noise + b"\r\n" + encode_seal_frame(frame) for noise, frame in zip(noises * 4, frames,
                                                                                        strict=False))
    got = frames_of(EsealAsciiDecoder().feed(data))
    assert got == frames


def test_bytearray_and_memoryview_are_fed_like_bytes():
    decoder = EsealAsciiDecoder()
    line = encode_seal_frame(SEAL_ON_TRUCK)
    assert decoder.feed(bytearray(line[:10])) + decoder.feed(memoryview(line)[10:]) == [SEAL_ON_TRUCK]


# ------------------------------------------------------------------ the encoder refuses what the line cannot carry


@pytest.mark.parametrize("frame", [
    replace(SEAL_ON_TRUCK, timestamp=AT_GATE.replace(tzinfo=None)),
    replace(SEAL_ON_TRUCK, seal_id="HGT,1"),
    replace(SEAL_ON_TRUCK, reader_id="RDR*1"),
    replace(SEAL_ON_TRUCK, container="CSQU$3054383"),
    replace(SEAL_ON_TRUCK, seal_id="HGT\r\n1"),
    replace(SEAL_ON_TRUCK, seal_id=""),
    replace(SEAL_ON_TRUCK, battery_pct=101),
    replace(SEAL_ON_TRUCK, battery_pct=-1),
])
def test_encoder_refuses_frames_the_format_cannot_carry(frame):
    with pytest.raises(ValueError):
        encode_seal_frame(frame)


def test_encoder_writes_local_times_as_utc_to_the_second():
    hanoi = timezone(timedelta(hours=7))
    frame = replace(SEAL_ON_TRUCK, timestamp=AT_GATE.astimezone(hanoi).replace(microsecond=999_999))
    assert b",20261123081542*" in encode_seal_frame(frame)


def test_encode_raw_line_sends_whatever_checksum_the_simulator_asks_for():
    assert encode_raw_line("ESEAL,X", checksum="zz") == b"$ESEAL,X*zz\r\n"
    good = encode_raw_line("ESEAL,X")
    assert good == b"$ESEAL,X*" + f"{xor_checksum(b'ESEAL,X'):02X}".encode() + b"\r\n"
