"""Codec throughput: frames decoded per second by every device codec.

Serial codecs (e-seal ASCII and binary, Toledo, SMA, Rinstrum weighbridge indicators) get one
long byte stream (every frame back to back, a little noise every 100 frames) fed to one decoder
in 4 KiB chunks, as the serial driver would. MQTT codecs (ANPR JSON, with the default field names
and a nested vendor profile; the container scanner's JSON) decode individual payloads. The
stable-weight detector's figure is frames per second through `StableWeightDetector.update`.
Pure CPU, no I/O; prints JSON.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

from devices.protocols.anpr_json import AnprFields, AnprResult, decode_anpr_message, encode_anpr_message
from devices.protocols.eseal_ascii import EsealAsciiDecoder, SealFrame, encode_seal_frame
from devices.protocols.eseal_binary import EsealBinaryDecoder, encode_binary_seal_frame
from devices.protocols.scanner_json import ScanEvent, ScanMessage, decode_scanner_message, encode_scanner_message
from devices.protocols.stable_weight import StableWeightDetector, WeightFrame
from devices.protocols.weighbridge_rinstrum import RinstrumDecoder, encode_rinstrum_frame
from devices.protocols.weighbridge_sma import SmaDecoder, encode_sma_reply
from devices.protocols.weighbridge_toledo import ToledoDecoder, encode_toledo_frame
from devices.readings import ScanVerdict, SealStatus

CHUNK = 4096
_NESTED = AnprFields(plate="result.plate.text", confidence="result.plate.score", timestamp="meta.time",
                     camera="meta.device")


def _seal_stream(frames: int, rng: random.Random) -> bytes:
    start = datetime(2026, 11, 23, tzinfo=UTC)
    statuses = list(SealStatus)
    parts = []
    for index in range(frames):
        frame = SealFrame(
            reader_id=f"RDR{index % 8:02d}",
            seal_id=f"HGT{rng.randrange(10**8):08d}",
            status=statuses[index % 3],
            battery_pct=rng.choice([None, rng.randrange(101)]),
            container=rng.choice([None, "CSQU3054383", "MWCU6059784"]),
            timestamp=start + timedelta(seconds=index),
        )
        parts.append(encode_seal_frame(frame))
        if index % 100 == 99:
            parts.append(b"\x00\xffnoise\r\n")
    return b"".join(parts)


def _bench_eseal(frames: int, rng: random.Random) -> dict:
    stream = _seal_stream(frames, rng)
    decoder = EsealAsciiDecoder()
    started = time.perf_counter()
    for offset in range(0, len(stream), CHUNK):
        decoder.feed(stream[offset:offset + CHUNK])
    elapsed = time.perf_counter() - started
    if decoder.frames_ok != frames:
        raise RuntimeError(f"e-seal bench decoded {decoder.frames_ok} of {frames} frames")
    return {
        "frames": frames,
        "frames_per_s": round(frames / elapsed),
        "mb_per_s": round(len(stream) / elapsed / 1e6, 2),
        "us_per_frame": round(elapsed / frames * 1e6, 2),
        "rejected_noise_runs": decoder.frames_bad,
        "chunk_bytes": CHUNK,
    }


def _bench_anpr(frames: int, rng: random.Random, fields: AnprFields) -> dict:
    plates = ["29C-123.45", "51D-12345", "桂A·12345", "桂F12345", "12R-001.23"]
    payloads = [
        encode_anpr_message(AnprResult(plate=rng.choice(plates), confidence=rng.random(),
                                       timestamp=1_795_000_000 + index * 0.25, camera_id="anpr-lane1"), fields)
        for index in range(frames)
    ]
    started = time.perf_counter()
    results = [decode_anpr_message(payload, fields) for payload in payloads]
    elapsed = time.perf_counter() - started
    bad = sum(not isinstance(result, AnprResult) for result in results)
    if bad:
        raise RuntimeError(f"ANPR bench rejected {bad} of {frames} messages")
    return {
        "messages": frames,
        "messages_per_s": round(frames / elapsed),
        "us_per_message": round(elapsed / frames * 1e6, 2),
        "mean_payload_bytes": round(sum(map(len, payloads)) / frames, 1),
    }


def _bench_stream(stream: bytes, frames: int, decoder, feed) -> dict:
    """Feed `stream` to `decoder` in CHUNK-byte reads through `feed(decoder, chunk)`; figures as for e-seal."""
    started = time.perf_counter()
    for offset in range(0, len(stream), CHUNK):
        feed(decoder, stream[offset:offset + CHUNK])
    elapsed = time.perf_counter() - started
    if decoder.frames_ok != frames:
        raise RuntimeError(f"{type(decoder).__name__} bench decoded {decoder.frames_ok} of {frames} frames")
    return {
        "frames": frames,
        "frames_per_s": round(frames / elapsed),
        "mb_per_s": round(len(stream) / elapsed / 1e6, 2),
        "us_per_frame": round(elapsed / frames * 1e6, 2),
        "rejected_noise_runs": decoder.frames_bad,
        "chunk_bytes": CHUNK,
    }


def _with_noise(frames: list[bytes], noise: bytes) -> bytes:
    parts = []
    for index, frame in enumerate(frames):
        parts.append(frame)
        if index % 100 == 99:
            parts.append(noise)
    return b"".join(parts)


def _truck_weights(frames: int, rng: random.Random) -> list[tuple[int, bool]]:
    """Weights (kg, on the 20 kg graduation) and motion flags of trucks coming and going.

    Every 200 frames (20 s at 10 Hz): 40 frames of empty bridge, 40 of a truck rolling on, 120 of it
    standing still.
    """
    readings, load = [], 0
    for index in range(frames):
        phase = index % 200
        if phase == 0:
            load = rng.randrange(250, 3000) * 20  # the next truck, 5 to 60 t
        if phase < 40:
            readings.append((0, False))
        elif phase < 80:
            readings.append((max(0, load + rng.randrange(-15, 16) * 20), True))
        else:
            readings.append((load, False))
    return readings


def _bench_weighbridge(frames: int, rng: random.Random) -> dict[str, dict]:
    readings = _truck_weights(frames, rng)
    noise = b"\x00\xffnoise\r\n"
    toledo = _with_noise([encode_toledo_frame(weight, motion=moving) for weight, moving in readings], noise)
    sma = _with_noise([encode_sma_reply(weight, motion=moving) for weight, moving in readings], noise)
    rinstrum = _with_noise([encode_rinstrum_frame(weight, motion=moving) for weight, moving in readings], noise)

    def feed(decoder, chunk):
        return decoder.feed(chunk)

    return {
        "weighbridge_toledo": _bench_stream(toledo, frames, ToledoDecoder(checksum=True), feed),
        "weighbridge_sma": _bench_stream(sma, frames, SmaDecoder(), feed),
        "weighbridge_rinstrum": _bench_stream(rinstrum, frames, RinstrumDecoder(), feed),
    }


def _bench_stable_weight(frames: int, rng: random.Random) -> dict:
    samples = [WeightFrame("toledo", float(weight), None, "kg", motion=moving)
               for weight, moving in _truck_weights(frames, rng)]
    detector = StableWeightDetector(band_kg=20, hold_s=1.0, min_kg=500)
    started = time.perf_counter()
    reports = sum(detector.update(frame, index / 10) is not None for index, frame in enumerate(samples))
    elapsed = time.perf_counter() - started
    return {"frames": frames, "frames_per_s": round(frames / elapsed), "us_per_frame": round(elapsed / frames * 1e6, 3),
            "stable_weights_reported": reports}


def _bench_eseal_binary(frames: int, rng: random.Random) -> dict:
    start = datetime(2026, 11, 23, tzinfo=UTC)
    statuses = list(SealStatus)
    wire = [
        encode_binary_seal_frame(SealFrame(
            reader_id=f"{index % 8:08X}",
            seal_id=f"{rng.randrange(1 << 32):08X}",
            status=statuses[index % 3],
            battery_pct=rng.choice([None, rng.randrange(101)]),
            container=rng.choice([None, "CSQU3054383", "MWCU6059784"]),
            timestamp=start,
        ))
        for index in range(frames)
    ]
    stream = _with_noise(wire, b"\x00\xffnoise\r\n")

    def feed(decoder, chunk):
        return decoder.feed(chunk, start)

    return _bench_stream(stream, frames, EsealBinaryDecoder(), feed)


def _bench_scanner(frames: int, rng: random.Random) -> dict:
    start = datetime(2026, 11, 23, tzinfo=UTC)
    payloads = []
    for index in range(frames):
        completed = index % 2 == 1
        payloads.append(encode_scanner_message(ScanMessage(
            event=ScanEvent.COMPLETED if completed else ScanEvent.STARTED,
            scan_id=f"NII1-{index // 2:08d}",
            lane=f"lane{index % 4 + 1}",
            containers=tuple(rng.sample(["CSQU3054383", "MWCU6059784", "TGHU1234567"], rng.randrange(3))),
            verdict=rng.choice(list(ScanVerdict)) if completed else ScanVerdict.PENDING,
            image_ref=f"nii://lane1/{index:08d}.dcm" if completed else None,
            timestamp=start + timedelta(seconds=index),
        )))
    started = time.perf_counter()
    results = [decode_scanner_message(payload) for payload in payloads]
    elapsed = time.perf_counter() - started
    bad = sum(not isinstance(result, ScanMessage) for result in results)
    if bad:
        raise RuntimeError(f"scanner bench rejected {bad} of {frames} messages")
    return {
        "messages": frames,
        "messages_per_s": round(frames / elapsed),
        "frames_per_s": round(frames / elapsed),
        "us_per_message": round(elapsed / frames * 1e6, 2),
        "mean_payload_bytes": round(sum(map(len, payloads)) / frames, 1),
    }


def run_codec_bench(frames: int = 50_000, seed: int = 11) -> dict:
    """Decode throughput (frames/s) of every device codec over `frames` frames each."""
    rng = random.Random(seed)
    return {
        "eseal_ascii": _bench_eseal(frames, rng),
        "anpr_json": _bench_anpr(frames, rng, AnprFields()),
        "anpr_json_nested": _bench_anpr(frames, rng, _NESTED),
        **_bench_weighbridge(frames, rng),
        "stable_weight": _bench_stable_weight(frames, rng),
        "eseal_binary": _bench_eseal_binary(frames, rng),
        "scanner_json": _bench_scanner(frames, rng),
    }


if __name__ == "__main__":
    print(json.dumps(run_codec_bench(), indent=2))
