"""Per-endpoint, per-variant counters and latencies under SageMaker's CloudWatch metric names.

Invocations, Invocation4XXErrors, Invocation5XXErrors, ModelLatency and OverheadLatency (both in
microseconds, as CloudWatch reports them), and one gauge of ours: each variant's instances that can
answer now against those wanted (what DescribeEndpoint's CurrentInstanceCount says). Recording is a
dictionary update on the event loop; the Prometheus text is built only when /metrics is read.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LATENCY_BUCKETS_US", "Metrics", "render_prometheus"]

# Histogram buckets in microseconds: 100 µs to 60 s.
_BUCKETS_US = (
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
)
LATENCY_BUCKETS_US = _BUCKETS_US  # upper bounds; cloudwatch/history.py estimates percentiles from them


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(_BUCKETS_US) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value_us: float) -> None:
        self.counts[bisect.bisect_left(_BUCKETS_US, value_us)] += 1
        self.total += value_us
        self.count += 1


@dataclass
class _Series:
    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    model_errors: int = 0
    model_latency: _Histogram = field(default_factory=_Histogram)
    overhead_latency: _Histogram = field(default_factory=_Histogram)


class Metrics:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = defaultdict(_Series)
        self._instances: dict[str, dict[str, tuple[int, int]]] = {}  # endpoint → variant → (ready, desired)
        self._renderers: list[Callable[[], list[str]]] = []  # other rooms' families (asyncinf/metrics.py)

    def add_renderer(self, render: Callable[[], list[str]]) -> None:
        """Another room's metric families, rendered (as Prometheus lines) after these on each read."""
        self._renderers.append(render)

    def extra_lines(self) -> list[str]:
        return [line for render in self._renderers for line in render()]

    def record(
        self,
        endpoint: str,
        variant: str,
        *,
        status: int,
        model_us: float | None,
        total_us: float,
        model_error: bool = False,
    ) -> None:
        series = self._series[(endpoint, variant)]
        series.invocations += 1
        if 400 <= status < 500:
            series.errors_4xx += 1
        elif status >= 500:
            series.errors_5xx += 1
        if model_error:
            series.model_errors += 1
        if model_us is not None:
            series.model_latency.observe(model_us)
            series.overhead_latency.observe(max(0.0, total_us - model_us))

    def set_instances(self, endpoint: str, variants: dict[str, tuple[int, int]]) -> None:
        """The endpoint's variants now: (instances that can answer, instances wanted) for each."""
        self._instances[endpoint] = dict(variants)

    def snapshot(self) -> dict[tuple[str, str], _Series]:
        return dict(self._series)

    def instances(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {
            (endpoint, variant): counts
            for endpoint, variants in self._instances.items()
            for variant, counts in variants.items()
        }

    def forget(self, endpoint: str) -> None:
        for key in [key for key in self._series if key[0] == endpoint]:
            del self._series[key]
        self._instances.pop(endpoint, None)


def _labels(endpoint: str, variant: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return f'EndpointName="{escape(endpoint)}",VariantName="{escape(variant)}"'


def render_prometheus(metrics: Metrics) -> str:
    lines: list[str] = []
    snapshot = sorted(metrics.snapshot().items())
    counters = (
        ("sagemaker_Invocations", "invocations", "Requests sent to the model (InvokeEndpoint)."),
        (
            "sagemaker_Invocation4XXErrors",
            "errors_4xx",
            "InvokeEndpoint requests the model answered with a 4xx, or that moorage throttled.",
        ),
        (
            "sagemaker_Invocation5XXErrors",
            "errors_5xx",
            "InvokeEndpoint requests the model answered with a 5xx, timed out on, or died during.",
        ),
        ("sagemaker_InvocationModelErrors", "model_errors", "Requests the model failed (ModelError, 424)."),
    )
    for name, attribute, help_text in counters:
        lines += [f"# HELP {name}_total {help_text}", f"# TYPE {name}_total counter"]
        for (endpoint, variant), series in snapshot:
            lines.append(f"{name}_total{{{_labels(endpoint, variant)}}} {getattr(series, attribute)}")
    histograms = (
        ("sagemaker_ModelLatency_microseconds", "model_latency", "Time the model took to answer."),
        (
            "sagemaker_OverheadLatency_microseconds",
            "overhead_latency",
            "Time moorage added on top of the model.",
        ),
    )
    for name, attribute, help_text in histograms:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for (endpoint, variant), series in snapshot:
            histogram: _Histogram = getattr(series, attribute)
            labels = _labels(endpoint, variant)
            running = 0
            for bound, count in zip((*_BUCKETS_US, "+Inf"), histogram.counts, strict=True):
                running += count
                lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {running}')
            lines.append(f"{name}_sum{{{labels}}} {histogram.total:.0f}")
            lines.append(f"{name}_count{{{labels}}} {histogram.count}")
    instances = sorted(metrics.instances().items())
    gauges = (
        ("moorage_variant_instances", 0, "Instances of the variant that can answer now."),
        ("moorage_variant_desired_instances", 1, "Instances of the variant that are wanted."),
    )
    for name, index, help_text in gauges:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for (endpoint, variant), counts in instances:
            lines.append(f"{name}{{{_labels(endpoint, variant)}}} {counts[index]}")
    lines += metrics.extra_lines()
    return "\n".join(lines) + "\n"
