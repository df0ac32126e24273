"""What `smartgate journal archive` costs and gives back, with a lane appending meanwhile.

A journal of `days` days at `trucks_a_day` (22 rows of about 300 bytes of payload a truck, as the
soak measured), every row acknowledged by central; all but the last day is archived while a thread
appends a row every `append_every_s` (a busy lane's pace) through the node's own `Journal.append`.
Prints JSON: sizes before and after, the archive file's size, the run's time, and the appends'
latency during the run (what the journal guard's `write_timeout_s`, 2 s by default, must stay above).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.stats import percentiles
from edge.journal import Journal
from sync.journal_archive import archive_journal, journal_bytes
from sync.outbox import Outbox

ROWS_A_TRUCK = 22
T0 = 1_790_000_000.0


def _payload(i: int) -> dict:
    return {"device": "anpr-in-1", "kind": "plate", "value": f"12C{i:05d}", "confidence": 0.973,
            "crop": f"var/crops/{i:08d}.jpg", "transaction": f"tx-{i // ROWS_A_TRUCK:08d}",
            "note": "x" * 160}


def run_journal_archive_bench(days: int = 2, trucks_a_day: int = 2000, append_every_s: float = 0.05,
                              chunk: int = 2000) -> dict:
    """Build the journal, archive all but the last day with a lane appending meanwhile; return the figures."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "journal.sqlite"
        journal = Journal.open(path)
        outbox = Outbox(journal, max_rows=10**8, max_bytes=1 << 40)
        per_day = trucks_a_day * ROWS_A_TRUCK
        rows = days * per_day
        for start in range(0, rows, 5000):
            entries = journal.append_many([("reading", _payload(i), "IMP-1", T0 + i * 86400 / per_day)
                                           for i in range(start, min(rows, start + 5000))])
            outbox.ack([e.event_id for e in entries])
        outbox.close()
        journal.close()
        before = journal_bytes(path)

        journal = Journal.open(path)
        stop = threading.Event()
        latencies: list[float] = []

        def lane() -> None:
            i = rows
            while not stop.is_set():
                started = time.perf_counter()
                journal.append("reading", _payload(i), lane="IMP-1", at=T0 + days * 86400 + i)
                latencies.append(time.perf_counter() - started)
                i += 1
                stop.wait(append_every_s)

        writer = threading.Thread(target=lane)
        writer.start()
        started = time.perf_counter()
        try:
            result = archive_journal(path, before=T0 + (days - 1) * 86400, chunk=chunk)
        finally:
            seconds = time.perf_counter() - started
            stop.set()
            writer.join()
            report = journal.verify()
            journal.close()
        return {"rows": rows, "archived_rows": result.rows, "journal_bytes_before": before,
                "journal_bytes_after": result.bytes_after, "archive_file_bytes": result.file_bytes,
                "archive_s": round(seconds, 2), "append_ms": percentiles([1000 * x for x in latencies], 1),
                "verify_ok": report.ok, "chunk": chunk}


if __name__ == "__main__":
    print(json.dumps(run_journal_archive_bench(), indent=2))
