"""The arithmetic of the benchmark: medians over rounds and the ratios the tables print.

Kept free of I/O so that the numbers a reader sees can be checked by a unit test. A missing figure
(a failed round, a peer that was not run) is None and stays None through every function here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["compute_limit", "median", "percentile", "ratio", "round_ratios"]


def median(values: Iterable[float | None]) -> float | None:
    """The median of the figures that exist, or None when none does."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(present) if present else None


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100) of a non-empty sample."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = math.ceil(p / 100.0 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def compute_limit(baseline_p50_ms: float | None, workers: int | None, cores: int) -> float | None:
    """Requests/s the handler alone could reach: one stream per worker, never more streams than cores.

    This is the peers' "ideal" (shared/peers/README.md): 1000 / in-process p50 × min(cores, workers).
    For a model whose one call already uses every core (ResNet with torch's default threads) it is
    out of reach above one worker; the single-stream rate (workers=1) is the figure to beat there.
    """
    if baseline_p50_ms is None or baseline_p50_ms <= 0:
        return None
    streams = min(cores, workers) if workers else 1
    return 1000.0 / baseline_p50_ms * max(1, streams)


def round_ratios(
    numerators: Mapping[int, float | None], denominators: Mapping[int, float | None]
) -> float | None:
    """The median over rounds of each round's own ratio (a server against the baseline of its round)."""
    return median(ratio(numerators[r], denominators.get(r)) for r in numerators)
