"""The benchmark harness's arithmetic and bookkeeping (bench/): no timing, nothing measured.

The figures bench/RESULTS.md prints are medians and ratios computed here; these tests pin that
arithmetic on made-up records, check that a served answer is compared with the in-process one, and
that `bench/run.py --help` starts (the harness imports without torch or a server).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.choices import write_section  # noqa: E402
from bench.load import LoadResult, Phase, problems  # noqa: E402
from bench.report import Report, render  # noqa: E402
from bench.results import BaselineRecord, ServerRecord, summarize  # noqa: E402
from bench.stats import compute_limit, median, percentile, ratio, round_ratios  # noqa: E402
from bench.workloads import matches  # noqa: E402


def phase(connections: int, p50_ms: float, rps: float, requests: int = 100, errors: int = 0) -> Phase:
    return Phase(connections, requests, 5.0, rps, p50_ms, p50_ms * 1.5, p50_ms * 2, p50_ms * 3, errors, 0)


def baseline(round_no: int, workload: str, p50_ms: float, p99_ms: float) -> BaselineRecord:
    return BaselineRecord(round_no, workload, "moorage", p50_ms, p99_ms, 1000, 2, 0.1)


def server(
    round_no: int, label: str, workload: str, p50_ms: float, rps8: float, *, error: str | None = None
) -> ServerRecord:
    return ServerRecord(
        round=round_no,
        label=label,
        kind="peer" if not label.startswith("moorage") else "serve-model",
        workload=workload,
        workers=2,
        ping_s=1.0 + round_no,
        first_200_s=2.0 + round_no,
        pss_mb=500.0,
        rss_mb=600.0,
        processes=4,
        c1=phase(1, p50_ms, 1000 / p50_ms),
        cn={8: phase(8, p50_ms * 4, rps8), 32: phase(32, p50_ms * 16, rps8)},
        error=error,
    )


def test_median_skips_missing_figures() -> None:
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([None, None]) is None
    assert median([1.0, 2.0, 3.0, 4.0]) == 2.5


@pytest.mark.parametrize(("p", "expected"), [(50, 50.0), (99, 99.0), (100, 100.0), (0, 1.0), (1, 1.0)])
def test_percentile_is_nearest_rank(p: float, expected: float) -> None:
    assert percentile([float(v) for v in range(100, 0, -1)], p) == expected


def test_ratio_and_compute_limit() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None and ratio(1.0, 0.0) is None and ratio(1.0, None) is None
    # 2 ms per call: 500/s per stream; 4 workers on 2 cores give 2 streams, 1 worker gives 1.
    assert compute_limit(2.0, 4, 2) == 1000.0
    assert compute_limit(2.0, 1, 2) == 500.0
    assert compute_limit(None, 1, 2) is None


def test_round_ratios_divide_within_each_round_then_take_the_median() -> None:
    # Round 1: 2/1, round 2: 9/3, round 3: 4/1. The median of the ratios (3.0), not of the values.
    assert round_ratios({1: 2.0, 2: 9.0, 3: 4.0}, {1: 1.0, 2: 3.0, 3: 1.0}) == 3.0
    assert round_ratios({1: 2.0, 2: None}, {1: 1.0}) == 2.0


def test_summarize_uses_each_rounds_baseline_and_drops_failed_rounds() -> None:
    baselines = [baseline(1, "tiny", 0.1, 0.2), baseline(2, "tiny", 0.2, 0.4), baseline(3, "tiny", 0.1, 0.2)]
    servers = [
        server(1, "moorage defaults", "tiny", 0.3, 4000.0),
        server(2, "moorage defaults", "tiny", 0.4, 5000.0),
        server(3, "moorage defaults", "tiny", 9.0, 1.0, error="2 failed requests under load"),
    ]
    (row,) = summarize(servers, baselines, cores=2, connections=(8, 32))
    assert (row.rounds, row.rounds_ok) == (3, 2)
    assert row.p50_ms == pytest.approx(0.35)
    assert row.x_p50 == pytest.approx((0.3 / 0.1 + 0.4 / 0.2) / 2)
    assert row.rps[8] == pytest.approx(4500.0)
    # single-stream limits 10,000/s and 5,000/s; with 2 workers on 2 cores the ideal doubles.
    assert row.x_single[8] == pytest.approx((0.4 + 1.0) / 2)
    assert row.x_ideal[8] == pytest.approx((0.2 + 0.5) / 2)
    assert row.first_200_s == 4.0  # every launch counts, failed load or not
    assert row.errors == ("round 3: 2 failed requests under load",)


def test_report_shows_ratios_and_the_bar() -> None:
    baselines = [baseline(1, "tiny", 0.1, 0.2)]
    servers = [server(1, "moorage defaults", "tiny", 0.2, 6000.0), server(1, "litserve", "tiny", 1.0, 1000.0)]
    report = Report(summarize(servers, baselines, 2, (8, 32)), baselines, (8, 32), 2, peers_ran=True)
    text = render(report)
    assert "| moorage defaults | tiny | 2 | 0.200 | 2.00× |" in text
    # moorage ÷ litserve: 0.2 / 1.0 at c=1, 6000 / 1000 at c=8
    assert "| tiny | litserve | 0.20× | 0.20× | 6.00× | 6.00× |" in text
    # overhead 0.1 ms against a third of litserve's 0.9 ms; 6000 req/s against 3 × 1000
    assert (
        "| tiny, c=1: p50 − in-process p50 (ms) | 0.100 | ≤ ⅓ of this run's best peer's (0.300) | met |"
        in text
    )
    assert "| tiny, c=8: req/s | 6,000 | ≥ 3× this run's best peer's (3,000) | met |" in text


def test_without_peers_in_the_run_a_peer_bar_gets_no_verdict() -> None:
    """No bar from another machine and hour: the figure is printed, the verdict says why there is none."""
    baselines = [baseline(1, "tiny", 0.1, 0.2)]
    servers = [server(1, "moorage defaults", "tiny", 0.2, 6000.0)]
    report = Report(summarize(servers, baselines, 2, (8, 32)), baselines, (8, 32), 2, peers_ran=False)
    text = render(report)
    assert "## Issue 5's bar (figures only: no peers in this run)" in text
    assert (
        "| tiny, c=8: req/s | 6,000 | ≥ 3× this run's best peer's "
        "| no verdict: the peers did not run (`--peers`) |" in text
    )
    assert "| met |" not in text and "missed" not in text


def test_problems_flags_failed_requests_and_empty_phases() -> None:
    fine = LoadResult(phase(1, 1.0, 1000.0), {8: phase(8, 1.0, 8000.0)})
    assert problems(fine) is None
    empty = LoadResult(phase(1, 0.0, 0.0, requests=0), {8: phase(8, 1.0, 10.0, errors=3)})
    assert problems(empty) == "3 failed requests under load; no request completed during c=1"


def test_matches_compares_with_the_in_process_answer() -> None:
    assert matches("tiny", b"[[0.10001, -2.0]]", "[[0.1, -2.0]]")
    assert not matches("tiny", b"[[0.2, -2.0]]", "[[0.1, -2.0]]")
    assert not matches("tiny", b"not json", "[[0.1]]")
    wanted = json.dumps(
        [{"prediction": "umbrella", "score": "95.91%"}, {"prediction": "camera", "score": "3.8%"}]
    )
    close = b'[{"prediction": "umbrella", "score": "95.9104%"}, {"prediction": "camera", "score": "3.8%"}]'
    swapped = b'[{"prediction": "camera", "score": "95.91%"}, {"prediction": "umbrella", "score": "3.8%"}]'
    assert matches("resnet", close, wanted)
    assert not matches("resnet", swapped, wanted)


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "CHOICES.md"
    path.write_text("# Choices\n\nprose that stays\n")
    machine = {
        "date": "today",
        "cpu": "cpu",
        "cores": 2,
        "memory_gib": 8,
        "python": "3.11",
        "loadavg_start": [0],
    }
    write_section("ipc", "| table one |", machine, "1 round", path)
    write_section("frontends", "| front |", machine, "1 round", path)
    write_section("ipc", "| table two |", machine, "1 round", path)
    text = path.read_text()
    assert text.startswith("# Choices\n\nprose that stays\n")
    assert "| table two |" in text and "| table one |" not in text and "| front |" in text
    assert text.count("<!-- ipc:begin -->") == 1


def test_run_help_starts_without_torch_or_a_server() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--rounds", "--quick", "--configs", "--peers", "--write-results"):
        assert flag in done.stdout
