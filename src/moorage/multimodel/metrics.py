"""SageMaker's multi-model metrics (spec §c.1) in /metrics, per endpoint and variant.

Times are summaries in microseconds, as CloudWatch reports them: ModelLoadingWaitTime (a call waiting
for its model to be downloaded and loaded), ModelDownloadingTime, ModelLoadingTime (model_fn and the
worker's start), ModelUnloadingTime. ModelCacheHit is a summary of 0/1 per call, so sum/count is the
hit ratio (CloudWatch's Average). LoadedModelCount is a gauge per instance, read when /metrics is, as is
moorage_mme_spare_workers (workers forked ahead of the next loads, docs/multi-model.md "Cold loads").
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from moorage.runtime.metrics import Metrics
from moorage.runtime.metrics import _labels as _labels

__all__ = ["MODEL_GAUGES", "LoadedInfo", "LoadedSource", "MultiModelMetrics", "metrics_for"]

TIMES = (
    ("ModelLoadingWaitTime", "Time a call waited for its model to be downloaded and loaded."),
    ("ModelDownloadingTime", "Time to fetch, verify and extract a model archive."),
    ("ModelLoadingTime", "Time to start a model's worker and run its model_fn."),
    ("ModelUnloadingTime", "Time to unload a model (its worker stopped)."),
)
# One gauge per loaded model (what `moorage models` shows), labelled with its instance and TargetModel.
MODEL_GAUGES = (
    (
        "moorage_mme_model_bytes",
        "size_bytes",
        "A loaded model's memory: its worker's own pages, or its files.",
    ),
    ("moorage_mme_model_load_seconds", "load_s", "How long its worker's start and model_fn took."),
    ("moorage_mme_model_download_seconds", "download_s", "How long fetching and extracting it took."),
    ("moorage_mme_model_loaded_at_seconds", "loaded_at", "When it was loaded (Unix time)."),
)
_Key = tuple[str, str]  # endpoint, variant


@dataclass(frozen=True, order=True)
class LoadedInfo:
    """One loaded model on one instance."""

    instance_id: str
    target: str
    size_bytes: int
    download_s: float
    load_s: float
    loaded_at: float
    in_flight: int


class LoadedSource(Protocol):
    def loaded_counts(self) -> dict[str, int]: ...

    def loaded(self) -> list[LoadedInfo]: ...

    def spare_counts(self) -> dict[str, int]: ...


class MultiModelMetrics:
    def __init__(self) -> None:
        self._times: dict[_Key, dict[str, tuple[float, int]]] = defaultdict(dict)
        self._hits: dict[_Key, tuple[int, int]] = {}
        self._sources: dict[_Key, LoadedSource] = {}  # the live variants (see `track`)

    def observe(self, endpoint: str, variant: str, name: str, seconds: float) -> None:
        total, count = self._times[(endpoint, variant)].get(name, (0.0, 0))
        self._times[(endpoint, variant)][name] = (total + seconds * 1e6, count + 1)

    def cache(self, endpoint: str, variant: str, hit: bool) -> None:
        hits, calls = self._hits.get((endpoint, variant), (0, 0))
        self._hits[(endpoint, variant)] = (hits + int(hit), calls + 1)

    def track(self, endpoint: str, variant: str, source: LoadedSource | None) -> None:
        """Report (None: stop reporting) what a live variant has loaded, when /metrics is read."""
        if source is None:
            self._sources.pop((endpoint, variant), None)
        else:
            self._sources[(endpoint, variant)] = source

    def render(self) -> list[str]:
        lines: list[str] = []
        for name, help_text in TIMES:
            metric = f"sagemaker_{name}_microseconds"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} summary"]
            for key in sorted(self._times):
                total, count = self._times[key].get(name, (0.0, 0))
                lines += [
                    f"{metric}_sum{{{_labels(*key)}}} {total:.0f}",
                    f"{metric}_count{{{_labels(*key)}}} {count}",
                ]
        metric = "sagemaker_ModelCacheHit"
        lines += [
            f"# HELP {metric} Calls whose model was loaded already (sum/count: the hit ratio).",
            f"# TYPE {metric} summary",
        ]
        for key, (hits, calls) in sorted(self._hits.items()):
            lines += [f"{metric}_sum{{{_labels(*key)}}} {hits}", f"{metric}_count{{{_labels(*key)}}} {calls}"]
        metric = "sagemaker_LoadedModelCount"
        lines += [f"# HELP {metric} Models loaded on each instance now.", f"# TYPE {metric} gauge"]
        for key, source in sorted(self._sources.items()):
            for instance, count in sorted(source.loaded_counts().items()):
                lines.append(f'{metric}{{{_labels(*key)},InstanceId="{instance}"}} {count}')
        metric = "moorage_mme_spare_workers"
        lines += [
            f"# HELP {metric} Workers forked and waiting for a model, per instance.",
            f"# TYPE {metric} gauge",
        ]
        for key, source in sorted(self._sources.items()):
            for instance, count in sorted(source.spare_counts().items()):
                lines.append(f'{metric}{{{_labels(*key)},InstanceId="{instance}"}} {count}')
        models = sorted((key, info) for key, source in self._sources.items() for info in source.loaded())
        for metric, attribute, help_text in MODEL_GAUGES:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
            for key, info in models:
                labels = (
                    f'{_labels(*key)},InstanceId="{info.instance_id}",TargetModel="{_escape(info.target)}"'
                )
                value = getattr(info, attribute)
                lines.append(f"{metric}{{{labels}}} {value if isinstance(value, int) else f'{value:.6f}'}")
        return lines


_ATTACHED: weakref.WeakKeyDictionary[Metrics, MultiModelMetrics] = weakref.WeakKeyDictionary()


def metrics_for(metrics: Metrics) -> MultiModelMetrics:
    """The multi-model metrics rendered with `metrics` (made and attached on first use)."""
    found = _ATTACHED.get(metrics)
    if found is None:
        found = _ATTACHED[metrics] = MultiModelMetrics()
        metrics.add_renderer(found.render)
    return found


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
