"""The tables a run prints, and bench/RESULTS.md.

Every table is Markdown. Ratios against the baseline are per-round ratios' medians (results.py);
ratios between two servers (moorage / peer, InvokeEndpoint / /invocations) divide their medians.
The bar is issue 5's, computed from the peers' figures of this same run. Without peers in the run
(`--peers`), a figure whose bar is a peer's is printed with no verdict: a bar from another machine and
hour would compare this run's moorage with that run's peers.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.results import BaselineRecord, Row, baseline_medians, find, overhead_ms
from bench.stats import compute_limit, ratio

__all__ = ["Report", "machine_info", "render", "results_markdown"]

DEFAULTS = "moorage defaults"
SERVE = "moorage serve"
NO_PEERS = "no verdict: the peers did not run (`--peers`)"


@dataclass(frozen=True)
class Report:
    rows: list[Row]
    baselines: list[BaselineRecord]
    connections: tuple[int, ...]
    cores: int
    peers_ran: bool
    toolkit_tiny: BaselineRecord | None = None  # the toolkit's own default chain, in-process (peers' venv)


def _n(value: float | None, unit: str = "") -> str:
    """Three significant figures, or a dash for a missing figure."""
    if value is None:
        return "–"
    magnitude = abs(value)
    if magnitude >= 100:
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return text + unit


def _x(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}×" if abs(value) >= 10 else f"{value:.2f}×"


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def main_table(report: Report) -> str:
    conns = report.connections
    header = ["server", "workload", "workers", "c=1 p50 ms", "× base", "c=1 p99 ms", "× base p99"]
    for n in conns:
        header += [f"c={n} req/s", "× single" if n == conns[0] else "", "× ideal"]
    header = [h for h in header if h]
    header += ["launch → /ping s", "launch → first 200 s", "idle PSS MB", "procs", "ok rounds"]
    lines = []
    for workload, (p50, p99) in sorted(baseline_medians(report.baselines).items(), key=_workload_order):
        line = ["**in-process**", workload, "1", _n(p50), "1.00×", _n(p99), "1.00×"]
        single = compute_limit(p50, 1, report.cores)
        for n in conns:
            line += [f"({_n(single)})", "1.00×", "–"] if n == conns[0] else ["–", "–"]
        line += ["–", "–", "–", "–", "–"]
        lines.append(line)
    if report.toolkit_tiny is not None:
        t = report.toolkit_tiny
        line = ["in-process, toolkit's defaults", "tiny", "1", _n(t.p50_ms), "–", _n(t.p99_ms), "–"]
        for n in conns:
            line += ["–"] + (["–"] if n == conns[0] else []) + ["–"]
        lines.append(line + ["–"] * 5)
    for row in sorted(report.rows, key=_row_order):
        line = [
            row.label,
            row.workload,
            str(row.workers) if row.workers else "?",
            _n(row.p50_ms),
            _x(row.x_p50),
            _n(row.p99_ms),
            _x(row.x_p99),
        ]
        for n in conns:
            line += [_n(row.rps.get(n))]
            if n == conns[0]:
                line += [_x(row.x_single.get(n))]
            line += [_x(row.x_ideal.get(n))]
        line += [
            _n(row.ping_s),
            _n(row.first_200_s),
            _n(row.pss_mb),
            "–" if row.processes is None else f"{row.processes:g}",
            f"{row.rounds_ok}/{row.rounds}",
        ]
        lines.append(line)
    return _table(header, lines)


def serve_table(report: Report) -> str | None:
    """`moorage serve` (InvokeEndpoint) against `serve-model` defaults (/invocations), same workload."""
    serve_rows = [r for r in report.rows if r.label == SERVE]
    if not serve_rows:
        return None
    first = report.connections[0]
    header = [
        "workload",
        "CreateEndpoint → first 200 s (server just started)",
        "same, second endpoint (server warm) s",
        "InvokeEndpoint c=1 p50 ms",
        "/invocations c=1 p50 ms",
        "overhead ms",
        "× /invocations",
        f"InvokeEndpoint c={first} req/s",
        "× /invocations",
        "server + endpoint idle PSS MB",
    ]
    lines = []
    for row in sorted(serve_rows, key=_row_order):
        direct = find(report.rows, DEFAULTS, row.workload)
        direct_p50 = direct.p50_ms if direct else None
        direct_rps = direct.rps.get(first) if direct else None
        extra = None if row.p50_ms is None or direct_p50 is None else row.p50_ms - direct_p50
        lines.append(
            [
                row.workload,
                _n(row.first_200_s),
                _n(row.warm_first_200_s),
                _n(row.p50_ms),
                _n(direct_p50),
                _n(extra),
                _x(ratio(row.p50_ms, direct_p50)),
                _n(row.rps.get(first)),
                _x(ratio(row.rps.get(first), direct_rps)),
                _n(row.pss_mb),
            ]
        )
    return _table(header, lines)


def peer_table(report: Report) -> str | None:
    """moorage (defaults) ÷ each peer, per figure: below 1 is better for times and memory."""
    peers = [r for r in report.rows if r.kind == "peer"]
    if not peers:
        return None
    conns = report.connections
    header = ["workload", "peer", "c=1 p50", "c=1 p99"] + [f"c={n} req/s" for n in conns]
    header += ["first 200", "idle PSS"]
    lines = []
    for peer in sorted(peers, key=_row_order):
        ours = find(report.rows, DEFAULTS, peer.workload)
        if ours is None:
            continue
        line = [
            peer.workload,
            peer.label,
            _x(ratio(ours.p50_ms, peer.p50_ms)),
            _x(ratio(ours.p99_ms, peer.p99_ms)),
        ]
        line += [_x(ratio(ours.rps.get(n), peer.rps.get(n))) for n in conns]
        line += [_x(ratio(ours.first_200_s, peer.first_200_s)), _x(ratio(ours.pss_mb, peer.pss_mb))]
        lines.append(line)
    return _table(header, lines)


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def bar_table(report: Report) -> str:
    """Issue 5's bar, figure by figure, for moorage's defaults (and batching for the tiny throughput).

    Every bar comes from this run: the in-process baseline, or the peers when `--peers` ran them.
    """
    base = baseline_medians(report.baselines)
    tiny_base = base.get("tiny", (None, None))[0]
    first = report.connections[0]
    peers_tiny = [r for r in report.rows if r.kind == "peer" and r.workload == "tiny"]
    overheads = [o for o in (overhead_ms(r, tiny_base) for r in peers_tiny) if o is not None]
    rates = [rps for rps in (r.rps.get(8) for r in peers_tiny) if rps is not None]
    best_overhead = min(overheads) if overheads else None
    best_rps = max(rates) if rates else None
    sagemaker = find(report.rows, "sagemaker", "resnet_bytes")
    sm_first = sagemaker.first_200_s if sagemaker else None
    sm_pss = sagemaker.pss_mb if sagemaker else None
    tiny = find(report.rows, DEFAULTS, "tiny")
    batched = find(report.rows, "moorage batch8", "tiny")
    resnet = find(report.rows, DEFAULTS, "resnet_bytes")
    served = find(report.rows, SERVE, "resnet_bytes")

    def scaled(value: float | None, factor: float) -> float | None:
        return None if value is None else value * factor

    # (what, value, target text, target, higher is better, needs a peer of this run)
    checks: list[tuple[str, float | None, str, float | None, bool, bool]] = [
        (
            "tiny, c=1: p50 − in-process p50 (ms)",
            overhead_ms(tiny, tiny_base),
            "≤ ⅓ of this run's best peer's",
            scaled(best_overhead, 1 / 3),
            False,
            True,
        ),
        (
            "tiny, c=8: req/s",
            tiny.rps.get(8) if tiny else None,
            "≥ 3× this run's best peer's",
            scaled(best_rps, 3),
            True,
            True,
        ),
        (
            "tiny, c=8, batching on: req/s",
            batched.rps.get(8) if batched else None,
            "≥ 3× this run's best peer's",
            scaled(best_rps, 3),
            True,
            True,
        ),
        (
            "ResNet bytes, c=1: p50 × in-process",
            resnet.x_p50 if resnet else None,
            "≤ 1.05×",
            1.05,
            False,
            False,
        ),
        (
            "ResNet bytes, c=1: p99 × in-process",
            resnet.x_p99 if resnet else None,
            "≤ 1.3×",
            1.3,
            False,
            False,
        ),
        (
            f"ResNet bytes, c={first}: req/s × single-stream",
            resnet.x_single.get(first) if resnet else None,
            "≥ 1.1×",
            1.1,
            True,
            False,
        ),
    ]
    # SageMaker's figure is a cold start (a container from nothing), so the cold rows are the
    # like-for-like ones; the warm row shows what a new endpoint costs on a running server.
    launches = (
        ("cold: `serve-model` from nothing", resnet.first_200_s if resnet else None),
        (
            "cold: `moorage serve` from nothing, then CreateEndpoint (launch → /ping, plus CreateEndpoint → "
            "first 200)",
            _sum(served.ping_s, served.first_200_s) if served else None,
        ),
        (
            "warm, not SageMaker's case: a second endpoint on a running `moorage serve`",
            served.warm_first_200_s if served else None,
        ),
    )
    for how, seconds in launches:
        checks.append(
            (
                f"ResNet launch → first 200 (s), {how}",
                seconds,
                "≤ ⅓ of this run's sagemaker's",
                scaled(sm_first, 1 / 3),
                False,
                True,
            )
        )
    checks.append(
        (
            "ResNet idle PSS (MB), 1 instance",
            resnet.pss_mb if resnet else None,
            "≤ ½ of this run's sagemaker's",
            scaled(sm_pss, 1 / 2),
            False,
            True,
        )
    )
    lines = []
    for what, value, target_text, target, higher, needs_peer in checks:
        if needs_peer and target is None:
            lines.append([what, _n(value), target_text, NO_PEERS])
            continue
        if value is None or target is None:
            verdict = "not measured"
        else:
            verdict = "met" if (value >= target if higher else value <= target) else "**missed**"
        lines.append([what, _n(value), f"{target_text} ({_n(target)})", verdict])
    return _table(["figure", "moorage", "bar", "verdict"], lines)


def per_round_table(report: Report) -> str:
    conns = report.connections
    header = ["server", "workload", "c=1 p50 ms per round"] + [f"c={n} req/s per round" for n in conns]
    header.append("problems")
    lines = []
    for row in sorted(report.rows, key=_row_order):
        line = [row.label, row.workload, ", ".join(_n(v) for v in row.per_round_p50)]
        line += [", ".join(_n(v) for v in row.per_round_rps.get(n, ())) for n in conns]
        line.append("; ".join(e.replace("|", "/").replace("\n", " ")[:200] for e in row.errors) or "–")
        lines.append(line)
    return _table(header, lines)


def render(report: Report) -> str:
    parts = ["## Every server against the in-process limit (medians over rounds)", main_table(report)]
    if any(r.label == SERVE for r in report.rows):
        parts.append(
            f"For `{SERVE}`, launch → /ping is the server's own start, launch → first 200 is CreateEndpoint "
            "→ first 200 from InvokeEndpoint (deployed as soon as the server answers /ping, so while its "
            "fork server is still importing torch), and the PSS includes the server. The serve table "
            "below adds a second endpoint deployed on the same server once it is warm."
        )
    serve = serve_table(report)
    if serve:
        parts += ["## `moorage serve`: CreateEndpoint and InvokeEndpoint", serve]
    peers = peer_table(report)
    if peers:
        parts += ["## moorage (defaults) ÷ peer, same run (below 1× is better except for req/s)", peers]
    bar_title = (
        "## Issue 5's bar" if report.peers_ran else "## Issue 5's bar (figures only: no peers in this run)"
    )
    parts += [bar_title, bar_table(report), "## Per round", per_round_table(report)]
    return "\n\n".join(parts) + "\n"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10).stdout.split()[:2]
    except (OSError, subprocess.SubprocessError):
        wrk = []
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "moorage": _version("moorage"),
        "wrk": " ".join(wrk) or "not found",
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def results_markdown(
    report: Report, machine: dict[str, Any], settings: dict[str, Any], command: str, rendered_by: str = ""
) -> str:
    """RESULTS.md; `rendered_by` names the `--render` command when the tables were redrawn from records."""
    redrawn = f" (tables redrawn from its records by `{rendered_by}`)" if rendered_by else ""
    lines = [
        "# moorage benchmark results",
        "",
        "Written by `bench/run.py --write-results`; reproduce with `make bench` (or the command below).",
        "Method: bench/README.md. Ratios are the median over rounds of each round's own ratio.",
        "",
        f"- Command: `{command}`{redrawn}",
        f"- Date: {machine['date']}",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"kernel {machine['kernel']}",
        f"- Software: Python {machine['python']}, torch {machine['torch']}, torchvision "
        f"{machine['torchvision']}, {machine['wrk']}",
        f"- Load average (1, 5, 15 min) at the start: {machine['loadavg_start']}, at the end: "
        f"{machine.get('loadavg_end', '?')}",
        f"- Settings: {', '.join(f'{k}={v}' for k, v in settings.items())}",
        "",
        render(report),
    ]
    return "\n".join(lines)


_ORDER = {"tiny": 0, "resnet_bytes": 1, "resnet_url": 2}


def _workload_order(item: tuple[str, Any]) -> int:
    return _ORDER.get(item[0], 9)


_LABELS = {"moorage defaults": 0, "moorage w1": 1, "moorage w2t1": 2, "moorage batch8": 3, SERVE: 4}


def _row_order(row: Row) -> tuple[int, int, str]:
    return (_ORDER.get(row.workload, 9), _LABELS.get(row.label, 5), row.label)
