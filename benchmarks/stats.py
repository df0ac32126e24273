"""Percentiles for benchmark figures."""

from __future__ import annotations

import statistics


def percentiles(samples: list[float], digits: int = 3) -> dict[str, float | int | None]:
    """p50/p90/p99/max, mean and count of samples (nearest-rank percentiles)."""
    if not samples:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None, "n": 0}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
        return ordered[index]

    return {"p50": round(statistics.median(ordered), digits), "p90": round(rank(90), digits),
            "p99": round(rank(99), digits), "max": round(ordered[-1], digits),
            "mean": round(statistics.fmean(ordered), digits), "n": len(ordered)}
