"""The binary framed e-seal reader (Hi-G-Tek / T-Seal style) on the gate's serial line: torn, noisy, chunked."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.protocols.eseal_ascii import SealFrame, seal_frame_to_read
from devices.protocols.eseal_binary import (
    EsealBinaryDecoder,
    SealErrorReport,
    crc16_ccitt,
    decode_binary_frame,
    encode_binary_error_report,
    encode_binary_record,
    encode_binary_seal_frame,
)
from devices.readings import FrameRejected, SealRead, SealStatus

AT_GATE = datetime(2026, 11, 23, 8, 15, 42, tzinfo=UTC)
SEAL_ON_TRUCK = SealFrame("0A1B2C3D", "00012345", SealStatus.INTACT, 87, "CSQU3054383", AT_GATE)
NEXT_SEAL = SealFrame("0A1B2C3D", "00067890", SealStatus.OPENED, None, None, AT_GATE)

HEX_IDS = st.integers(0, 0xFFFFFFFF).map(lambda number: f"{number:08X}")
CONTAINERS = st.one_of(st.none(), st.from_regex(r"[A-Z]{3}[UJZ][0-9]{7}", fullmatch=True),
                       st.from_regex(r"[A-Z0-9]{1,11}", fullmatch=True))
FRAMES = st.builds(SealFrame, reader_id=HEX_IDS, seal_id=HEX_IDS, status=st.sampled_from(SealStatus),
                   battery_pct=st.none() | st.integers(0, 100), container=CONTAINERS, timestamp=st.just(AT_GATE))


def frames_of(items: list) -> list[SealFrame]:
    return [item for item in items if isinstance(item, SealFrame)]


def rejections_of(items: list) -> list[FrameRejected]:
    return [item for item in items if isinstance(item, FrameRejected)]


def feed_in_chunks(data: bytes, cuts: list[int], decoder: EsealBinaryDecoder | None = None) -> list:
    decoder = decoder or EsealBinaryDecoder()
    items, start = [], 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}) + [len(data)]:
        items += decoder.feed(data[start:cut], AT_GATE)
        start = cut
    return items


def frames_the_wire_vouches_for(data: bytes) -> list[SealFrame | SealErrorReport]:
    """Every frame some STX in `data` starts, whole, with LEN, ETX and CRC in place (the oracle)."""
    vouched = []
    for at in range(len(data) - 1):
        if data[at] == 0x02:
            decoded = decode_binary_frame(data[at:at + data[at + 1] + 5], AT_GATE)
            if not isinstance(decoded, FrameRejected):
                vouched.append(decoded)
    return vouched


# ------------------------------------------------------------------ the frame as documented


def test_crc_is_ccitt_false():
    assert crc16_ccitt(b"123456789") == 0x29B1
    assert crc16_ccitt(b"") == 0xFFFF


def test_domain_example_frame_decodes_to_the_seal_on_the_truck():
    data = (bytes.fromhex("0A1B2C3D") + b"\x01" + bytes.fromhex("00012345") + bytes([0x81, 0, 1, 87])
            + b"CSQU3054383")
    assert len(data) == 24  # LEN counts READER_ID through the container, not the CRC
    body = bytes([len(data)]) + data
    frame = b"\x02" + body + crc16_ccitt(body).to_bytes(2, "big") + b"\x03"

    assert encode_binary_seal_frame(SEAL_ON_TRUCK) == frame
    assert EsealBinaryDecoder().feed(frame, AT_GATE) == [SEAL_ON_TRUCK]


def test_a_frame_without_container_is_len_13():
    frame = encode_binary_seal_frame(NEXT_SEAL)
    assert frame[1] == 13 and len(frame) == 18
    assert EsealBinaryDecoder().feed(frame, AT_GATE) == [NEXT_SEAL]


@pytest.mark.parametrize(("flags", "status"), [
    (0x81, SealStatus.INTACT),  # sealed, activated
    (0x01, SealStatus.OPENED),  # activated, not sealed
    (0x80, SealStatus.OPENED),  # sealed but never armed: vouches for nothing
    (0x00, SealStatus.OPENED),
    (0x83, SealStatus.TAMPERED),
    (0x02, SealStatus.TAMPERED),
    (0x03, SealStatus.TAMPERED),
    (0xFD, SealStatus.INTACT),  # bits 2-6 are not ours: ignored
])
def test_flags_map_to_the_seal_status(flags, status):
    frame = encode_binary_record(0x0A1B2C3D, 0x01, 0x12345, flags, 0, 1, 50)
    (decoded,) = EsealBinaryDecoder().feed(frame, AT_GATE)
    assert decoded.status is status


def test_a_tamper_count_without_the_tampered_flag_does_not_change_the_status():
    frame = encode_binary_record(0x0A1B2C3D, 0x01, 0x12345, 0x81, 3, 4, 50)
    (decoded,) = EsealBinaryDecoder().feed(frame, AT_GATE)
    assert decoded.status is SealStatus.INTACT


@pytest.mark.parametrize(("battery", "expected"), [(0, 0), (100, 100), (0xFF, None)])
def test_battery_percent_or_unknown(battery, expected):
    (decoded,) = EsealBinaryDecoder().feed(encode_binary_record(1, 0x01, 2, 0x81, 0, 1, battery), AT_GATE)
    assert decoded.battery_pct == expected


@pytest.mark.parametrize(("field", "container"), [
    (b"CSQU3054383", "CSQU3054383"),
    (b"csqu3054383", "CSQU3054383"),
    (b"CSQU305438\x00", "CSQU305438"),
    (b"  CSQU30543", "CSQU30543"),
    (b"\x00" * 11, None),
    (b" " * 11, None),
    (b"CSQU-305438", "CSQU305438"),
])
def test_the_container_is_normalised_and_blank_is_none(field, container):
    (decoded,) = EsealBinaryDecoder().feed(encode_binary_record(1, 0x01, 2, 0x81, 0, 1, 50, field), AT_GATE)
    assert decoded.container == container


def test_the_receive_time_stamps_the_frame_in_utc():
    hanoi = timezone(timedelta(hours=7))
    (decoded,) = EsealBinaryDecoder().feed(encode_binary_seal_frame(SEAL_ON_TRUCK), AT_GATE.astimezone(hanoi))
    assert decoded.timestamp == AT_GATE and decoded.timestamp.utcoffset() == timedelta(0)


def test_the_codec_has_no_clock_the_driver_must_say_when():
    decoder = EsealBinaryDecoder()
    with pytest.raises(ValueError):
        decoder.feed(encode_binary_seal_frame(SEAL_ON_TRUCK), AT_GATE.replace(tzinfo=None))
    with pytest.raises(TypeError):
        decoder.feed(encode_binary_seal_frame(SEAL_ON_TRUCK))  # type: ignore[call-arg]
    assert decoder.feed(encode_binary_seal_frame(SEAL_ON_TRUCK), AT_GATE) == [SEAL_ON_TRUCK]


def test_sealread_for_the_lane_comes_out_as_from_the_ascii_reader():
    (decoded,) = EsealBinaryDecoder().feed(encode_binary_seal_frame(SEAL_ON_TRUCK), AT_GATE)
    read = seal_frame_to_read(decoded, "eseal-lane1", received_at=AT_GATE.timestamp())
    assert read == SealRead(device_id="eseal-lane1", seal_id="00012345", status=SealStatus.INTACT, battery_pct=87,
                            container="CSQU3054383", observed_at=AT_GATE.timestamp(),
                            received_at=AT_GATE.timestamp(), reader_id="0A1B2C3D")


def test_an_error_report_is_never_a_reading():
    decoder = EsealBinaryDecoder()
    items = decoder.feed(encode_binary_error_report("0A1B2C3D", 0x11, seal_id="00012345"), AT_GATE)
    assert items == [SealErrorReport("0A1B2C3D", "00012345", 0x11, AT_GATE)]
    assert (decoder.frames_ok, decoder.frames_bad) == (1, 0)


def test_an_error_report_with_seal_data_in_it_is_still_only_an_error():
    frame = encode_binary_record(0x0A1B2C3D, 0x81, 0x12345, 0x81, 0, 1, 87, b"CSQU3054383")
    (report,) = EsealBinaryDecoder().feed(frame, AT_GATE)
    assert report == SealErrorReport("0A1B2C3D", "00012345", 0x01, AT_GATE)


# ------------------------------------------------------------------ frames the node must refuse


def test_a_wrong_crc_is_refused_with_both_values():
    good = encode_binary_seal_frame(SEAL_ON_TRUCK)
    computed = int.from_bytes(good[-3:-1], "big")
    damaged = encode_binary_record(0x0A1B2C3D, 0x01, 0x12345, 0x81, 0, 1, 87, b"CSQU3054383", crc=computed ^ 0x5A00)
    decoder = EsealBinaryDecoder()
    items = decoder.feed(damaged, AT_GATE)
    assert items[0].reason == f"CRC mismatch: got {computed ^ 0x5A00:04X}, computed {computed:04X}"
    assert not frames_of(items)


def test_the_crc_is_big_endian_on_the_wire():
    good = encode_binary_seal_frame(SEAL_ON_TRUCK)
    assert good[-3] != good[-2]
    swapped = good[:-3] + bytes([good[-2], good[-3]]) + good[-1:]
    assert not frames_of(EsealBinaryDecoder().feed(swapped, AT_GATE))


@pytest.mark.parametrize(("frame", "reason"), [
    (encode_binary_record(1, 0x05, 2, 0x81, 0, 1, 50), "unknown message type 0x05"),
    (encode_binary_record(1, 0x00, 2, 0x81, 0, 1, 50), "unknown message type 0x00"),
    (encode_binary_record(1, 0x01, 2, 0x81, 0, 1, 101), "bad battery 101"),
    (encode_binary_record(1, 0x01, 2, 0x81, 0, 1, 0xFE), "bad battery 254"),
    (encode_binary_record(1, 0x01, 2, 0x81, 0, 1, 50, b"CSQU\x013054383"[:11]), "not printable"),
    (encode_binary_record(1, 0x01, 2, 0x81, 0, 1, 50, b"CSQU\xc3\x9c05438"), "not printable"),
])
def test_frames_whose_crc_holds_but_whose_fields_do_not_are_refused(frame, reason):
    decoder = EsealBinaryDecoder()
    (rejected,) = decoder.feed(frame, AT_GATE)
    assert reason in rejected.reason
    assert decoder.frames_bad == 1


@pytest.mark.parametrize(("frame", "reason"), [
    (b"\x01\x0d", "does not start with STX"),
    (b"\x02\x0e" + bytes(19), "bad LEN 14"),
    (b"\x02\x0d" + bytes(15), "frame of 17 bytes"),
    (b"\x02\x0d" + bytes(16), "no ETX"),
])
def test_decode_binary_frame_explains_structural_failures(frame, reason):
    assert reason in decode_binary_frame(frame, AT_GATE).reason


# ------------------------------------------------------------------ round trips and chunking


@given(FRAMES)
def test_any_frame_the_simulator_sends_reaches_the_node_unchanged(frame):
    decoder = EsealBinaryDecoder()
    assert decoder.feed(encode_binary_seal_frame(frame), AT_GATE) == [frame]
    assert (decoder.frames_ok, decoder.frames_bad) == (1, 0)


@given(st.lists(FRAMES, min_size=1, max_size=6), st.lists(st.integers(0, 200), max_size=20))
def test_frames_split_anywhere_across_serial_reads_still_decode(frames, cuts):
    data = b"".join(encode_binary_seal_frame(frame) for frame in frames)
    assert feed_in_chunks(data, cuts) == frames


def test_a_frame_trickling_in_one_byte_at_a_time_decodes_once_complete():
    decoder = EsealBinaryDecoder()
    wire = encode_binary_seal_frame(SEAL_ON_TRUCK)
    items = []
    for index in range(len(wire)):
        got = decoder.feed(wire[index:index + 1], AT_GATE)
        assert got == [] or index == len(wire) - 1
        items += got
    assert items == [SEAL_ON_TRUCK]


def test_stx_bytes_inside_the_data_do_not_break_framing():
    stx_everywhere = SealFrame("02020202", "02020202", SealStatus.TAMPERED, 2, None, AT_GATE)
    data = b"\x02\x02" + encode_binary_seal_frame(stx_everywhere) + encode_binary_seal_frame(stx_everywhere)
    items = EsealBinaryDecoder().feed(data, AT_GATE)
    assert frames_of(items) == [stx_everywhere, stx_everywhere]


def test_a_stray_stx_does_not_hold_back_the_seal_that_follows_it():
    decoder = EsealBinaryDecoder()
    # 0x02 0x18 looks like the start of a 29-byte frame; the 18-byte frame after it is complete.
    items = decoder.feed(b"\x02\x18" + encode_binary_seal_frame(NEXT_SEAL), AT_GATE)
    assert frames_of(items) == [NEXT_SEAL]
    assert len(rejections_of(items)) == 1


def test_several_frames_and_an_error_report_in_one_read_come_out_in_order():
    report = encode_binary_error_report("0A1B2C3D", 3)
    data = encode_binary_seal_frame(SEAL_ON_TRUCK) + report + encode_binary_seal_frame(NEXT_SEAL)
    items = EsealBinaryDecoder().feed(data, AT_GATE)
    assert items == [SEAL_ON_TRUCK, SealErrorReport("0A1B2C3D", "00000000", 3, AT_GATE), NEXT_SEAL]


# ------------------------------------------------------------------ noise on the line


def test_garbage_between_two_frames_costs_one_rejection_and_neither_frame():
    decoder = EsealBinaryDecoder()
    noise = b"\x00\xff+++ATZ\r\nNO CARRIER\x02\x18\x02\x0d\x13\x11" * 20
    items = decoder.feed(encode_binary_seal_frame(SEAL_ON_TRUCK) + noise + encode_binary_seal_frame(NEXT_SEAL),
                         AT_GATE)
    assert frames_of(items) == [SEAL_ON_TRUCK, NEXT_SEAL]
    (rejected,) = rejections_of(items)
    assert rejected.reason.startswith("garbage")
    assert (decoder.frames_ok, decoder.frames_bad) == (2, 1)


@given(st.binary(min_size=1).filter(lambda data: b"\x02" not in data), st.lists(st.integers(0, 200), max_size=30))
def test_a_run_of_garbage_is_reported_once_however_it_is_chunked(noise, cuts):
    items = feed_in_chunks(noise, cuts)
    assert len(items) == 1
    assert items[0].reason.startswith("garbage")


@given(FRAMES, st.data())
def test_a_flipped_byte_is_a_rejection_never_a_wrong_reading(frame, data):
    wire = encode_binary_seal_frame(frame)
    position = data.draw(st.integers(0, len(wire) - 1), label="position")
    replacement = data.draw(st.integers(0, 255).filter(lambda byte: byte != wire[position]), label="byte")
    damaged = wire[:position] + bytes([replacement]) + wire[position + 1:]

    decoder = EsealBinaryDecoder()
    items = decoder.feed(damaged, AT_GATE) + decoder.feed(encode_binary_seal_frame(NEXT_SEAL), AT_GATE)

    assert frames_of(items) == [NEXT_SEAL]
    assert rejections_of(items), "the damage went unnoticed"


def test_the_simulators_bad_checksum_fault_is_refused_and_the_line_recovers():
    frame = bytearray(encode_binary_seal_frame(SEAL_ON_TRUCK))
    frame[-3] ^= 0x5A
    decoder = EsealBinaryDecoder()
    items = decoder.feed(bytes(frame), AT_GATE) + decoder.feed(encode_binary_seal_frame(NEXT_SEAL), AT_GATE)
    assert frames_of(items) == [NEXT_SEAL]
    assert rejections_of(items)[0].reason.startswith("CRC mismatch")


# ------------------------------------------------------------------ whatever arrives, feed() copes


def check_decoder_output(items: list, decoder: EsealBinaryDecoder, data: bytes) -> None:
    assert all(isinstance(item, SealFrame | SealErrorReport | FrameRejected) for item in items)
    assert decoder.frames_ok + decoder.frames_bad == len(items)
    assert not [item for item in rejections_of(items) if item.reason.startswith("internal")]
    vouched = frames_the_wire_vouches_for(data)
    for item in items:
        if not isinstance(item, FrameRejected):
            assert item in vouched, f"{item} decoded without a frame whose CRC holds"
    assert len(decoder._pending) < 29


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=10))
def test_arbitrary_bytes_never_raise_and_never_invent_a_seal(data, cuts):
    decoder = EsealBinaryDecoder()
    check_decoder_output(feed_in_chunks(data, cuts, decoder), decoder, data)


WIRE_PIECES = st.one_of(
    st.binary(max_size=40),
    FRAMES.map(encode_binary_seal_frame),
    st.tuples(FRAMES.map(encode_binary_seal_frame), st.integers(0, 29)).map(lambda pair: pair[0][:pair[1]]),
    st.builds(encode_binary_error_report, HEX_IDS, st.integers(0, 127)),
    st.sampled_from([b"\x02", b"\x03", b"\x02\x0d", b"\x02\x18", b"\x03\x02"]),
)


@given(st.lists(WIRE_PIECES, max_size=12), st.lists(st.integers(0, 1500), max_size=10))
def test_noisy_line_with_real_frames_only_yields_frames_that_were_sent(pieces, cuts):
    data = b"".join(pieces)
    decoder = EsealBinaryDecoder()
    check_decoder_output(feed_in_chunks(data, cuts, decoder), decoder, data)


@given(st.lists(FRAMES, min_size=1, max_size=4), st.lists(st.binary(max_size=30), min_size=1, max_size=4),
       st.lists(st.integers(0, 400), max_size=10))
def test_every_complete_frame_after_noise_survives(frames, noises, cuts):
    data = b"".join(noise + encode_binary_seal_frame(frame) for noise, frame in zip(noises * 4, frames,
                                                                                    strict=False))
    assert frames_of(feed_in_chunks(data, cuts)) == frames


def test_the_buffer_stays_bounded_on_an_endless_line_of_frame_starts():
    decoder = EsealBinaryDecoder()
    for _ in range(200):
        decoder.feed(b"\x02\x18\x00\x00" * 25, AT_GATE)
        assert len(decoder._pending) < 29
    assert frames_of(decoder.feed(b"\x03" * 40 + encode_binary_seal_frame(SEAL_ON_TRUCK), AT_GATE)) == [SEAL_ON_TRUCK]


def test_bytearray_and_memoryview_are_fed_like_bytes():
    decoder = EsealBinaryDecoder()
    wire = encode_binary_seal_frame(SEAL_ON_TRUCK)
    assert decoder.feed(bytearray(wire[:10]), AT_GATE) + decoder.feed(memoryview(wire)[10:], AT_GATE) == [
        SEAL_ON_TRUCK]


# ------------------------------------------------------------------ the encoder refuses what the frame cannot carry


@pytest.mark.parametrize("frame", [
    replace(SEAL_ON_TRUCK, reader_id="RDR01"),
    replace(SEAL_ON_TRUCK, seal_id="HGT00012345"),
    replace(SEAL_ON_TRUCK, seal_id="0001234G"),
    replace(SEAL_ON_TRUCK, battery_pct=101),
    replace(SEAL_ON_TRUCK, battery_pct=-1),
    replace(SEAL_ON_TRUCK, container="CSQU30543830"),
    replace(SEAL_ON_TRUCK, container="  "),
    replace(SEAL_ON_TRUCK, container="CSQU305438Ü"),
])
def test_encoder_refuses_frames_the_format_cannot_carry(frame):
    with pytest.raises(ValueError):
        encode_binary_seal_frame(frame)


def test_encoder_refuses_error_types_and_out_of_range_raw_fields():
    with pytest.raises(ValueError):
        encode_binary_seal_frame(SEAL_ON_TRUCK, msg_type=0x81)
    with pytest.raises(ValueError):
        encode_binary_error_report("0A1B2C3D", 128)
    with pytest.raises(ValueError):
        encode_binary_record(1 << 32, 0x01, 2)
    with pytest.raises(ValueError):
        encode_binary_record(1, 0x01, 2, container=b"short")
    with pytest.raises(ValueError):
        encode_binary_record(1, 0x01, 2, crc=0x10000)


def test_encoder_defaults_a_tamper_count_for_tampered_seals_and_takes_the_callers():
    tampered = replace(SEAL_ON_TRUCK, status=SealStatus.TAMPERED)
    assert encode_binary_seal_frame(tampered)[12] == 1
    assert encode_binary_seal_frame(tampered, tamper_count=4)[12] == 4
    assert encode_binary_seal_frame(SEAL_ON_TRUCK)[12] == 0


@given(st.lists(WIRE_PIECES, max_size=12), st.lists(st.integers(0, 1500), max_size=10))
def test_how_the_serial_port_splits_the_reads_never_changes_the_seals(pieces, cuts):
    data = b"".join(pieces)
    whole = [item for item in EsealBinaryDecoder().feed(data, AT_GATE) if not isinstance(item, FrameRejected)]
    chunked = [item for item in feed_in_chunks(data, cuts) if not isinstance(item, FrameRejected)]
    assert chunked == whole
