"""What one run measured, as records, and the medians and ratios the tables are made of.

A record is one figure set from one round: a baseline (one workload in-process) or a server (one
launch of one configuration on one workload). `summarize` groups them and takes, for every figure,
the median over rounds; ratios against the baseline are taken within each round first (the server
against the baseline of its own round), then their median, as the peers' method does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.load import Phase
from bench.stats import compute_limit, median, round_ratios

__all__ = [
    "BaselineRecord",
    "Row",
    "ServerRecord",
    "baseline_medians",
    "baselines_by_round",
    "find",
    "overhead_ms",
    "summarize",
]


@dataclass(frozen=True)
class BaselineRecord:
    round: int
    workload: str
    chain: str  # moorage | toolkit (tiny's default handlers) | user
    p50_ms: float
    p99_ms: float
    calls: int
    torch_threads: int
    model_load_s: float


@dataclass(frozen=True)
class ServerRecord:
    round: int
    label: str  # "moorage defaults", "moorage serve", "litserve", ...
    kind: str  # serve-model | serve | peer
    workload: str
    workers: int | None
    ping_s: float | None  # launch → /ping 200 (for `serve`: the server's own start)
    first_200_s: float | None  # launch → first /invocations 200 (for `serve`: CreateEndpoint → 200)
    pss_mb: float | None
    rss_mb: float | None
    processes: int | None
    c1: Phase | None = None
    cn: dict[int, Phase] = field(default_factory=dict)
    error: str | None = None
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # `serve` only: CreateEndpoint → first 200 of a second endpoint (its own copy of the artifact) once
    # the server is warm: what starting a new instance costs on a running host.
    warm_first_200_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.c1 is not None

    def rps(self, connections: int) -> float | None:
        phase = self.cn.get(connections)
        return phase.rps if phase is not None else None


@dataclass(frozen=True)
class Row:
    """Medians over rounds for one (label, workload)."""

    label: str
    kind: str
    workload: str
    workers: int | None
    rounds: int
    rounds_ok: int
    p50_ms: float | None
    p99_ms: float | None
    x_p50: float | None  # × the in-process p50 of the same round
    x_p99: float | None
    rps: dict[int, float | None]
    x_single: dict[int, float | None]  # req/s ÷ the in-process single-stream rate
    x_ideal: dict[int, float | None]  # req/s ÷ the compute limit (single-stream × min(cores, workers))
    ping_s: float | None
    first_200_s: float | None
    warm_first_200_s: float | None
    pss_mb: float | None
    rss_mb: float | None
    processes: float | None
    errors: tuple[str, ...]
    per_round_p50: tuple[float | None, ...]
    per_round_rps: dict[int, tuple[float | None, ...]]


def baselines_by_round(records: Iterable[BaselineRecord]) -> dict[str, dict[int, BaselineRecord]]:
    table: dict[str, dict[int, BaselineRecord]] = defaultdict(dict)
    for record in records:
        if record.chain != "toolkit":
            table[record.workload][record.round] = record
    return table


def summarize(
    servers: Sequence[ServerRecord],
    baselines: Sequence[BaselineRecord],
    cores: int,
    connections: Sequence[int],
) -> list[Row]:
    base = baselines_by_round(baselines)
    groups: dict[tuple[str, str], list[ServerRecord]] = defaultdict(list)
    for record in servers:
        groups[(record.label, record.workload)].append(record)
    rows = []
    for (label, workload), records in groups.items():
        good = [r for r in records if r.ok]
        rounds = base.get(workload, {})
        base_p50 = {r: b.p50_ms for r, b in rounds.items()}
        base_p99 = {r: b.p99_ms for r, b in rounds.items()}
        workers = next((r.workers for r in good if r.workers), records[0].workers)
        p50 = {r.round: r.c1.p50_ms for r in good if r.c1 is not None}
        p99 = {r.round: r.c1.p99_ms for r in good if r.c1 is not None}
        rps = {n: {r.round: r.rps(n) for r in good} for n in connections}
        single = {r: compute_limit(v, 1, cores) for r, v in base_p50.items()}
        ideal = {r: compute_limit(v, workers or cores, cores) for r, v in base_p50.items()}
        rows.append(
            Row(
                label=label,
                kind=records[0].kind,
                workload=workload,
                workers=workers,
                rounds=len(records),
                rounds_ok=len(good),
                p50_ms=median(p50.values()),
                p99_ms=median(p99.values()),
                x_p50=round_ratios(p50, dict(base_p50)) if p50 else None,
                x_p99=round_ratios(p99, dict(base_p99)) if p99 else None,
                rps={n: median(rps[n].values()) for n in connections},
                x_single={n: round_ratios(rps[n], dict(single)) if rps[n] else None for n in connections},
                x_ideal={n: round_ratios(rps[n], dict(ideal)) if rps[n] else None for n in connections},
                ping_s=median(r.ping_s for r in records),
                first_200_s=median(r.first_200_s for r in records),
                warm_first_200_s=median(r.warm_first_200_s for r in records),
                pss_mb=median(r.pss_mb for r in records),
                rss_mb=median(r.rss_mb for r in records),
                processes=median(float(r.processes) if r.processes else None for r in records),
                errors=tuple(f"round {r.round}: {r.error}" for r in records if r.error),
                per_round_p50=tuple(r.c1.p50_ms if r.c1 else None for r in records),
                per_round_rps={n: tuple(r.rps(n) for r in records) for n in connections},
            )
        )
    return rows


def baseline_medians(baselines: Sequence[BaselineRecord]) -> dict[str, tuple[float | None, float | None]]:
    """workload → (median p50, median p99) of the baseline over rounds."""
    out = {}
    for workload, rounds in baselines_by_round(baselines).items():
        out[workload] = (
            median(b.p50_ms for b in rounds.values()),
            median(b.p99_ms for b in rounds.values()),
        )
    return out


def find(rows: Sequence[Row], label: str, workload: str) -> Row | None:
    return next((r for r in rows if r.label == label and r.workload == workload), None)


def overhead_ms(row: Row | None, baseline_p50_ms: float | None) -> float | None:
    if row is None or row.p50_ms is None or baseline_p50_ms is None:
        return None
    return row.p50_ms - baseline_p50_ms
