"""Data capture's counters in /metrics (runtime/metrics.py renders them through `add_renderer`).

Invocations sampled for capture, and of those the records written and the records dropped, per
endpoint and variant (sampled = written + dropped once the buffer is empty). A drop says why:
`buffer_full` (the store is slower than the traffic, or down, and the in-memory buffer is full) or
`store_error` (a file could not be written).
"""

from __future__ import annotations

from collections import defaultdict

from moorage.runtime.metrics import _labels

__all__ = ["CaptureMetrics"]


class CaptureMetrics:
    def __init__(self) -> None:
        self._sampled: dict[tuple[str, str], int] = defaultdict(int)
        self._written: dict[tuple[str, str], int] = defaultdict(int)
        self._dropped: dict[tuple[str, str, str], int] = defaultdict(int)
        self._files: dict[tuple[str, str], int] = defaultdict(int)

    def sampled(self, endpoint: str, variant: str) -> None:
        self._sampled[(endpoint, variant)] += 1

    def written(self, endpoint: str, variant: str, records: int) -> None:
        self._written[(endpoint, variant)] += records
        self._files[(endpoint, variant)] += 1

    def dropped(self, endpoint: str, variant: str, reason: str, records: int = 1) -> None:
        self._dropped[(endpoint, variant, reason)] += records

    def dropped_total(self) -> int:
        return sum(self._dropped.values())

    def render(self) -> list[str]:
        lines = [
            "# HELP moorage_capture_sampled_total Invocations sampled for data capture.",
            "# TYPE moorage_capture_sampled_total counter",
        ]
        lines += [
            f"moorage_capture_sampled_total{{{_labels(*key)}}} {count}"
            for key, count in sorted(self._sampled.items())
        ]
        lines += [
            "# HELP moorage_capture_records_total Captured records written to S3.",
            "# TYPE moorage_capture_records_total counter",
        ]
        lines += [
            f"moorage_capture_records_total{{{_labels(*key)}}} {count}"
            for key, count in sorted(self._written.items())
        ]
        lines += [
            "# HELP moorage_capture_files_total Captured JSON Lines files written to S3.",
            "# TYPE moorage_capture_files_total counter",
        ]
        lines += [
            f"moorage_capture_files_total{{{_labels(*key)}}} {count}"
            for key, count in sorted(self._files.items())
        ]
        lines += [
            "# HELP moorage_capture_dropped_total Sampled records not captured (the request was answered).",
            "# TYPE moorage_capture_dropped_total counter",
        ]
        lines += [
            f'moorage_capture_dropped_total{{{_labels(endpoint, variant)},reason="{reason}"}} {count}'
            for (endpoint, variant, reason), count in sorted(self._dropped.items())
        ]
        return lines
