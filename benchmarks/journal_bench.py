"""Journal write figures: single-append latency (one fsync each) and batched append rate, on this disk.

Appends are on the decision path (DESIGN: decision p99 <= 20 ms including journal writes), so the
journal is a temporary file database opened exactly as on the node (WAL, synchronous=FULL), never
":memory:". Payloads resemble the node's reading and decision rows. verify() time is reported too.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from benchmarks.stats import percentiles
from edge.journal import Journal

_BATCH = 100


def _payload(i: int) -> dict:
    if i % 4 == 0:
        return {"transaction": f"tx-{i // 4:06d}", "result": "RELEASE", "reasons": [],
                "declaration": f"VN-{i:08d}", "rules": ["plate_match", "seal_intact", "weight_within_tolerance"]}
    return {"device": "anpr-in-1", "kind": "plate", "value": f"12C{i:05d}", "confidence": 0.973,
            "image": f"frames/{i:08d}.jpg", "source_at": 1_700_000_000.0 + i}


def run_journal_bench(n: int = 2000) -> dict:
    """Time `n` single appends and `n` rows appended in batches of 100; return JSON-ready figures."""
    with tempfile.TemporaryDirectory(prefix="journal-bench-") as tmp:
        journal = Journal.open(Path(tmp) / "journal.sqlite")
        try:
            samples: list[float] = []
            for i in range(n):
                started = time.perf_counter()
                journal.append("decision" if i % 4 == 0 else "reading", _payload(i), lane=f"IN-{i % 4 + 1}")
                samples.append((time.perf_counter() - started) * 1000)

            items = [("reading", _payload(i), f"IN-{i % 4 + 1}", None) for i in range(n)]
            started = time.perf_counter()
            for start in range(0, n, _BATCH):
                journal.append_many(items[start:start + _BATCH])
            batch_s = time.perf_counter() - started

            started = time.perf_counter()
            report = journal.verify()
            verify_s = time.perf_counter() - started
        finally:
            journal.close()
    return {
        "n": n,
        "journal_append_ms": percentiles(samples),
        "journal_append_many_per_s": round(n / batch_s) if batch_s > 0 else None,
        "append_many_batch": _BATCH,
        "verify_rows_per_s": round(report.checked / verify_s) if verify_s > 0 else None,
        "verify_ok": report.ok,
        "sqlite": "WAL, synchronous=FULL",
    }


if __name__ == "__main__":
    print(json.dumps(run_journal_bench(), indent=2))
