"""Cold starts of serverless variants in /metrics: how many, and ModelSetupTime (spec §c.5).

SageMaker publishes ModelSetupTime for serverless endpoints: the time to launch new compute for a
request, which here is a fork of the warm fork server plus `model_fn` (the model tree is cached).
Rendered through runtime/metrics.py's `add_renderer`.
"""

from __future__ import annotations

from collections import defaultdict

from moorage.runtime.metrics import _labels  # the runtime's label format, shared

__all__ = ["ServerlessMetrics"]


class ServerlessMetrics:
    def __init__(self) -> None:
        self._cold_starts: dict[tuple[str, str], int] = defaultdict(int)
        self._setup: dict[tuple[str, str], tuple[float, int]] = {}

    def cold_start(self, endpoint: str, variant: str, setup_s: float) -> None:
        self._cold_starts[(endpoint, variant)] += 1
        total, count = self._setup.get((endpoint, variant), (0.0, 0))
        self._setup[(endpoint, variant)] = (total + setup_s * 1_000_000.0, count + 1)

    def forget(self, endpoint: str) -> None:
        for key in [key for key in self._setup if key[0] == endpoint]:
            self._setup.pop(key, None)
            self._cold_starts.pop(key, None)

    def render(self) -> list[str]:
        lines = [
            "# HELP sagemaker_ColdStarts_total Serverless instances started because a request arrived.",
            "# TYPE sagemaker_ColdStarts_total counter",
        ]
        for key in sorted(self._cold_starts):
            lines.append(f"sagemaker_ColdStarts_total{{{_labels(*key)}}} {self._cold_starts[key]}")
        lines += [
            "# HELP sagemaker_ModelSetupTime_microseconds Time to start a serverless instance: fork and "
            "model_fn.",
            "# TYPE sagemaker_ModelSetupTime_microseconds summary",
        ]
        for key in sorted(self._setup):
            total, count = self._setup[key]
            lines += [
                f"sagemaker_ModelSetupTime_microseconds_sum{{{_labels(*key)}}} {total:.0f}",
                f"sagemaker_ModelSetupTime_microseconds_count{{{_labels(*key)}}} {count}",
            ]
        return lines
