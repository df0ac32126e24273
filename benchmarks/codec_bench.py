"""Codec throughput: frames decoded per second by the e-seal ASCII and the ANPR JSON codecs.

The e-seal figure feeds one long byte stream (every frame back to back, a few with noise
between) to one decoder in 4 KiB chunks, as the serial driver would. The ANPR figure decodes
individual MQTT payloads, once with the default field names and once with a nested vendor
profile. Pure CPU, no I/O; prints JSON.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

from devices.protocols.anpr_json import AnprFields, AnprResult, decode_anpr_message, encode_anpr_message
from devices.protocols.eseal_ascii import EsealAsciiDecoder, SealFrame, encode_seal_frame
from devices.readings import SealStatus

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


def run_codec_bench(frames: int = 50_000, seed: int = 11) -> dict:
    """Decode throughput (frames/s) of the e-seal ASCII and ANPR JSON codecs over `frames` frames each."""
    rng = random.Random(seed)
    return {
        "eseal_ascii": _bench_eseal(frames, rng),
        "anpr_json": _bench_anpr(frames, rng, AnprFields()),
        "anpr_json_nested": _bench_anpr(frames, rng, _NESTED),
    }


if __name__ == "__main__":
    print(json.dumps(run_codec_bench(), indent=2))
