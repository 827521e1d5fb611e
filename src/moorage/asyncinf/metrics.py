"""The async queue's metrics under SageMaker's CloudWatch names (spec §c.3), per endpoint.

Counters and time sums are recorded by the queue on the event loop; the backlog gauges are computed
from the queue when /metrics is read (runtime/metrics.py calls `render` through `add_renderer`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AsyncMetrics", "Backlog"]

COUNTERS = (
    ("InvocationsProcesssed", "Async requests the model answered (SageMaker's spelling)."),
    ("InvocationFailures", "Async requests whose invocation failed (result in the failure path)."),
    ("ExpiredRequests", "Async requests dropped after RequestTTLSeconds in the queue."),
    ("RequestDownloadFailures", "Async requests whose input could not be read from S3."),
    ("ResponseUploadFailures", "Result objects that could not be written (the request is run again)."),
    ("NotificationFailures", "SNS notifications that could not be published after every retry."),
)
TIMES = (
    ("TimeInBacklog", "Time from acceptance to the start of processing."),
    ("TotalProcessingTime", "Time from acceptance to the result object being published."),
)


IN_FLIGHT = "moorage_async_requests_in_flight"


@dataclass(frozen=True)
class Backlog:
    """One endpoint's queue now: waiting + running requests, the oldest one's age, instances ready, and
    how many of `size` are running (`moorage queue` shows it; SageMaker has no metric for it)."""

    size: int
    oldest_age_s: float
    instances: int
    running: int = 0


class AsyncMetrics:
    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._times: dict[str, dict[str, tuple[float, int]]] = defaultdict(dict)
        self.backlogs: Callable[[], dict[str, Backlog]] = dict

    def count(self, endpoint: str, name: str) -> None:
        self._counts[endpoint][name] += 1

    def observe(self, endpoint: str, name: str, seconds: float) -> None:
        total, count = self._times[endpoint].get(name, (0.0, 0))
        self._times[endpoint][name] = (total + seconds * 1000.0, count + 1)

    def counts(self, endpoint: str) -> dict[str, int]:
        return dict(self._counts.get(endpoint, {}))

    def render(self) -> list[str]:
        lines: list[str] = []
        for name, help_text in COUNTERS:
            lines += [f"# HELP sagemaker_{name}_total {help_text}", f"# TYPE sagemaker_{name}_total counter"]
            for endpoint in sorted(self._counts):
                lines.append(f"sagemaker_{name}_total{{{_label(endpoint)}}} {self._counts[endpoint][name]}")
        for name, help_text in TIMES:
            metric = f"sagemaker_{name}_milliseconds"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} summary"]
            for endpoint in sorted(self._times):
                total, count = self._times[endpoint].get(name, (0.0, 0))
                lines += [
                    f"{metric}_sum{{{_label(endpoint)}}} {total:.0f}",
                    f"{metric}_count{{{_label(endpoint)}}} {count}",
                ]
        backlogs = sorted(self.backlogs().items())
        gauges: tuple[tuple[str, str, Callable[[Backlog], float]], ...] = (
            ("ApproximateBacklogSize", "Requests queued or being processed.", lambda b: b.size),
            (
                "ApproximateBacklogSizePerInstance",
                "ApproximateBacklogSize divided by the instances that can take requests.",
                lambda b: b.size / b.instances if b.instances else b.size,
            ),
            (
                "ApproximateAgeOfOldestRequest",
                "Age of the oldest request in the queue (s).",
                lambda b: b.oldest_age_s,
            ),
            (
                "HasBacklogWithoutCapacity",
                "1 when requests are queued and no instance can take them.",
                lambda b: 1 if b.size and not b.instances else 0,
            ),
        )
        for name, help_text, value in gauges:
            lines += [f"# HELP sagemaker_{name} {help_text}", f"# TYPE sagemaker_{name} gauge"]
            for endpoint, backlog in backlogs:
                lines.append(f"sagemaker_{name}{{{_label(endpoint)}}} {value(backlog):g}")
        lines += [
            f"# HELP {IN_FLIGHT} Async requests running on a worker now (part of ApproximateBacklogSize).",
            f"# TYPE {IN_FLIGHT} gauge",
        ]
        lines += [f"{IN_FLIGHT}{{{_label(endpoint)}}} {backlog.running}" for endpoint, backlog in backlogs]
        return lines


def _label(endpoint: str) -> str:
    escaped = endpoint.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'EndpointName="{escaped}"'
