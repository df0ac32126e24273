"""The one stream-decoder loop (devices/protocols/framing.py) behind every serial codec.

Each codec writes only how its frames are found and decoded; what every driver relies on is the
loop: one `feed(data, now)` signature, any chunking, garbage reported once and counted as a
resync, a bounded buffer, and a decoder bug that costs one report rather than the read loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from devices.protocols.eseal_ascii import EsealAsciiDecoder, SealFrame, encode_seal_frame
from devices.protocols.eseal_binary import EsealBinaryDecoder, encode_binary_seal_frame
from devices.protocols.framing import LineDecoder, StreamDecoder, StxDecoder
from devices.protocols.weighbridge_rinstrum import RinstrumDecoder, encode_rinstrum_frame
from devices.protocols.weighbridge_sma import SmaDecoder, encode_sma_reply
from devices.protocols.weighbridge_toledo import ToledoDecoder, encode_toledo_frame
from devices.readings import FrameRejected, SealStatus

AT_GATE = datetime(2026, 11, 23, 8, 15, 42, tzinfo=UTC)
SEAL = SealFrame("0000A1B2", "00C0FFEE", SealStatus.INTACT, 87, "CSQU3054383", AT_GATE)

# (a fresh decoder, one good frame on the wire) for every serial format the node speaks
FORMATS = {
    "eseal-ascii": (EsealAsciiDecoder, encode_seal_frame(SEAL)),
    "eseal-binary": (EsealBinaryDecoder, encode_binary_seal_frame(SEAL)),
    "toledo": (lambda: ToledoDecoder(checksum=True), encode_toledo_frame(Decimal(45680))),
    "sma": (SmaDecoder, encode_sma_reply(Decimal(45680))),
    "rinstrum": (RinstrumDecoder, encode_rinstrum_frame(Decimal(45680))),
}
LONGEST_FRAME = {"eseal-binary": 29, "toledo": 18, "rinstrum": 17}


@pytest.mark.parametrize("name", FORMATS)
def test_every_serial_codec_is_fed_the_same_way_with_the_receive_time(name):
    make, frame = FORMATS[name]
    decoder = make()
    assert isinstance(decoder, StreamDecoder) and isinstance(decoder, LineDecoder | StxDecoder)
    (decoded,) = decoder.feed(frame, AT_GATE)
    assert not isinstance(decoded, FrameRejected)
    assert (decoder.frames_ok, decoder.frames_bad) == (1, 0)


@pytest.mark.parametrize("name", FORMATS)
def test_frames_split_at_every_byte_decode_as_when_sent_whole(name):
    make, frame = FORMATS[name]
    whole = make().feed(frame * 3, AT_GATE)
    decoder = make()
    bytewise = [item for index in range(len(frame) * 3) for item in decoder.feed((frame * 3)[index:index + 1], AT_GATE)]
    assert bytewise == whole and len(whole) == 3


@pytest.mark.parametrize("name", FORMATS)
def test_line_noise_between_frames_is_one_report_one_resync_and_no_lost_frame(name):
    make, frame = FORMATS[name]
    decoder = make()
    items = decoder.feed(frame + b"xx\x7fnoise" + frame, AT_GATE)
    refused = [item for item in items if isinstance(item, FrameRejected)]
    assert len(items) - len(refused) == 2
    assert len(refused) == 1 and "garbage outside" in refused[0].reason
    assert decoder.resyncs == 1


@pytest.mark.parametrize("name", FORMATS)
def test_endless_garbage_never_grows_the_buffer(name):
    make, frame = FORMATS[name]
    decoder = make()
    start = frame[:1]  # the format's start byte ($, LF or STX) followed by junk that never ends a frame
    for _ in range(200):
        decoder.feed(start + b"A" * 97, AT_GATE)
    if isinstance(decoder, LineDecoder):
        assert len(decoder._line) <= decoder.max_line + 1
    else:
        assert len(decoder._pending) < LONGEST_FRAME[name]
    assert decoder.feed(frame, AT_GATE)[-1] == make().feed(frame, AT_GATE)[0]


@pytest.mark.parametrize("name", FORMATS)
def test_a_decoder_bug_costs_one_report_and_the_next_frame_still_decodes(name):
    make, frame = FORMATS[name]
    decoder = make()
    decode = decoder.decode
    decoder.decode = lambda *args: 1 / 0  # a bug in the format's own decode
    (report,) = decoder.feed(frame, AT_GATE)
    assert isinstance(report, FrameRejected) and "internal decoder error: ZeroDivisionError" in report.reason
    decoder.decode = decode
    assert decoder.feed(frame, AT_GATE) == make().feed(frame, AT_GATE)


def test_only_the_binary_eseal_needs_the_receive_time():
    _, frame = FORMATS["eseal-ascii"]
    assert EsealAsciiDecoder().feed(frame) == EsealAsciiDecoder().feed(frame, AT_GATE) == [SEAL]
    with pytest.raises(TypeError):
        EsealBinaryDecoder().feed(encode_binary_seal_frame(SEAL))
