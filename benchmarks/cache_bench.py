"""Declaration cache figures: bulk import rate, plate and container lookup latency, CSV import rate.

Targets (DESIGN): lookup by plate p99 <= 1 ms with 1,000,000 declarations cached; import >= 50,000
declarations/s. The cache is a temporary file database (WAL, as on the node), not ":memory:".
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.stats import percentiles
from devices.protocols.iso6346 import check_digit
from edge.cache import DeclarationCache
from edge.declaration_import import import_declarations
from edge.declarations import (
    Declaration,
    DeclarationKind,
    DeclarationStatus,
    RiskChannel,
    declaration_to_mapping,
)

_VN_PROVINCES = [11, 12, 14, 15, 17, 18, 19, 20, 21, 22, 24, 29, 30, 34, 35, 36, 37, 43, 47, 49, 50, 51, 59,
                 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 81, 86, 88, 89,
                 90, 92, 93, 94, 97, 98, 99]
_VN_SERIES = ["C", "C", "C", "D", "H", "E", "F", "K", "LD"]
_CN_PREFIXES = ["桂A", "桂F", "桂F", "桂F", "桂B", "粤A", "粤B", "滇A"]
_CN_SERIAL = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
_OWNERS = ["CSQ", "MSC", "MAE", "CMA", "COS", "OOL", "EGH", "HLX", "ONE", "YML", "TGH", "TCL", "SEG", "GES",
           "TRH", "FCI", "BMO", "CAI", "DFS", "WHL"]
_CSV_ROWS = 200_000


def _truck_plate(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(_CN_PREFIXES) + "".join(rng.choice(_CN_SERIAL) for _ in range(5))
    return f"{rng.choice(_VN_PROVINCES)}{rng.choice(_VN_SERIES)}{rng.randrange(100000):05d}"


def _trailer_plate(rng: random.Random) -> str:
    return f"{rng.choice(_VN_PROVINCES)}R{rng.randrange(100000):05d}"


def _container(rng: random.Random) -> str:
    first_ten = f"{rng.choice(_OWNERS)}U{rng.randrange(1_000_000):06d}"
    return first_ten + str(check_digit(first_ten))


class SyntheticFleet:
    """A reproducible set of trucks and trailers, and declarations that use them (several per truck)."""

    def __init__(self, n_declarations: int, seed: int) -> None:
        self.rng = random.Random(seed)
        trucks = {_truck_plate(self.rng) for _ in range(max(1, n_declarations // 4))}
        trailers = {_trailer_plate(self.rng) for _ in range(max(1, n_declarations // 10))}
        self.trucks = sorted(trucks)
        self.trailers = sorted(trailers)
        self.containers: list[str] = []
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def declarations(self, start: int, count: int) -> Iterator[Declaration]:
        """Declarations numbered start .. start+count-1."""
        rng = self.rng
        kinds = [DeclarationKind.IMPORT] * 6 + [DeclarationKind.EXPORT] * 3 + [DeclarationKind.TRANSIT]
        channels = [RiskChannel.GREEN] * 7 + [RiskChannel.YELLOW] * 2 + [RiskChannel.RED]
        statuses = [DeclarationStatus.CLEARED] * 8 + [DeclarationStatus.HELD, DeclarationStatus.CANCELLED]
        for i in range(start, start + count):
            plates = [rng.choice(self.trucks)]
            if rng.random() < 0.3:
                plates.append(rng.choice(self.trailers))
            roll = rng.random()
            n_containers = 0 if roll < 0.3 else 1 if roll < 0.8 else 2
            containers = tuple(_container(rng) for _ in range(n_containers))
            self.containers.extend(containers)
            valid_from = self.now - timedelta(minutes=rng.randrange(60 * 24 * 90))
            yield Declaration(
                number=f"10{i:010d}", kind=rng.choice(kinds), gate="HUU_NGHI", plates=tuple(plates),
                containers=containers, seals=tuple(f"SEAL{rng.randrange(10**8):08d}" for _ in containers),
                gross_weight_kg=float(rng.randrange(3_000, 40_000)), channel=rng.choice(channels),
                status=rng.choice(statuses), valid_from=valid_from, valid_until=valid_from + timedelta(days=30),
                version=1,
            )


def _timed_lookups(lookup: Callable[[str], list[Declaration]], keys: list[str]) -> tuple[list[float], int]:
    samples: list[float] = []
    found = 0
    clock = time.perf_counter_ns
    for key in keys:
        started = clock()
        result = lookup(key)
        samples.append((clock() - started) / 1e6)
        found += len(result)
    return samples, found


def _write_csv(path: Path, declarations: Iterator[Declaration]) -> int:
    fields = ["number", "kind", "gate", "plates", "containers", "seals", "gross_weight_kg", "channel", "status",
              "valid_from", "valid_until", "version"]
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for declaration in declarations:
            row = declaration_to_mapping(declaration)
            for field in ("plates", "containers", "seals"):
                row[field] = ";".join(row[field])
            writer.writerow(row)
            rows += 1
    return rows


def run_cache_bench(n_declarations: int = 1_000_000, lookups: int = 10_000, seed: int = 1) -> dict:
    """Fill a file-backed cache with n synthetic declarations and time import, lookups and a CSV import."""
    fleet = SyntheticFleet(n_declarations, seed)
    chunk = 100_000
    with tempfile.TemporaryDirectory(prefix="cache-bench-") as tmp:
        db_path = Path(tmp) / "declarations.sqlite"
        cache = DeclarationCache.open(db_path)
        try:
            import_seconds = 0.0
            for start in range(0, n_declarations, chunk):
                batch = list(fleet.declarations(start, min(chunk, n_declarations - start)))  # not timed
                started = time.perf_counter()
                cache.upsert_many(batch)  # timed: building rows + the SQL, one transaction per 100k
                import_seconds += time.perf_counter() - started

            # Updates: a tenth of the declarations come again with version 2 and another truck.
            n_updates = max(1, n_declarations // 10)
            rng = random.Random(seed + 1)
            updates = []
            for index in rng.sample(range(n_declarations), n_updates):
                old = cache.get(f"10{index:010d}")
                assert old is not None
                updates.append(Declaration(
                    number=old.number, kind=old.kind, gate=old.gate, plates=(rng.choice(fleet.trucks),),
                    containers=old.containers, seals=old.seals, gross_weight_kg=old.gross_weight_kg,
                    channel=old.channel, status=old.status, valid_from=old.valid_from,
                    valid_until=old.valid_until, version=2))
            started = time.perf_counter()
            cache.upsert_many(updates)
            update_seconds = time.perf_counter() - started

            known = set(fleet.trucks) | set(fleet.trailers)
            misses = [plate for plate in (_truck_plate(rng) for _ in range(lookups)) if plate not in known]
            misses = misses or ["99Z99999"]
            plate_keys = [rng.choice(fleet.trucks) if rng.random() < 0.9 else rng.choice(misses)
                          for _ in range(lookups)]
            plate_samples, plate_found = _timed_lookups(cache.by_plate, plate_keys)
            container_keys = [rng.choice(fleet.containers) if rng.random() < 0.9 else _container(rng)
                              for _ in range(lookups)]
            container_samples, container_found = _timed_lookups(cache.by_container, container_keys)
            count = cache.count()
        finally:
            cache.close()
        db_mb = sum(p.stat().st_size for p in Path(tmp).glob("declarations.sqlite*")) / 2**20

        csv_rows = min(_CSV_ROWS, n_declarations)
        csv_path = Path(tmp) / "declarations.csv"
        _write_csv(csv_path, SyntheticFleet(csv_rows, seed + 2).declarations(0, csv_rows))
        csv_cache = DeclarationCache.open(Path(tmp) / "csv.sqlite")
        try:
            started = time.perf_counter()
            report = import_declarations(csv_cache, csv_path)
            csv_seconds = time.perf_counter() - started
        finally:
            csv_cache.close()

    return {
        "n_declarations": n_declarations,
        "cached": count,
        "db_mb": round(db_mb, 1),
        "cache_import_per_s": round(n_declarations / import_seconds),
        "cache_update_per_s": round(n_updates / update_seconds),
        "cache_lookup_plate_ms": percentiles(plate_samples, digits=4),
        "plate_lookup_mean_results": round(plate_found / lookups, 2),
        "cache_lookup_container_ms": percentiles(container_samples, digits=4),
        "container_lookup_mean_results": round(container_found / lookups, 2),
        "csv_rows": csv_rows,
        "csv_imported": report.imported,
        "csv_import_per_s": round(csv_rows / csv_seconds),
    }


def main() -> None:
    """Command line: print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="declarations in the cache (default 1,000,000)")
    parser.add_argument("--lookups", type=int, default=10_000, help="lookups of each kind (default 10,000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run_cache_bench(args.n, args.lookups, args.seed), indent=2))


if __name__ == "__main__":
    main()
