"""Load from wrk on loopback: one thread, keep-alive connections, the body from a file.

The method is the peers' (shared/peers/README.md, "What is measured"): one checked request, a warm-up
at 8 connections, a pause so the server drains what the warm-up queued (without it the first seconds
at 1 client measure that backlog), then 1 client for the latency figures and 8 and 32 clients for the
throughput. Every phase is bounded by wrk's own duration plus a margin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoadPlan", "LoadResult", "Phase", "post", "problems", "run_load", "wrk", "wrk_path"]

LUA = Path(__file__).with_name("post.lua")
_SUMMARY = re.compile(r"^BENCHJSON (\{.*\})$", re.MULTILINE)


@dataclass(frozen=True)
class Phase:
    connections: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # socket errors and timeouts
    non_2xx: int


@dataclass(frozen=True)
class LoadPlan:
    warmup_s: int = 3
    drain_s: float = 4.0
    c1_s: int = 5
    cn_s: int = 5
    connections: tuple[int, ...] = (8, 32)
    timeout_s: int = 30


@dataclass(frozen=True)
class LoadResult:
    c1: Phase
    cn: dict[int, Phase]


def wrk_path() -> str | None:
    return shutil.which("wrk")


def post(url: str, body: bytes, content_type: str, timeout: float = 60.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wrk(
    url: str, connections: int, seconds: int, body: Path, content_type: str, timeout_s: int = 30
) -> Phase:
    binary = wrk_path()
    if binary is None:
        raise RuntimeError("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    argv = [binary, "-t1", f"-c{connections}", f"-d{max(1, seconds)}s", f"--timeout={timeout_s}s"]
    argv += ["-s", str(LUA), url]
    env = {**os.environ, "BENCH_BODY": str(body), "BENCH_CONTENT_TYPE": content_type}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
    match = _SUMMARY.search(done.stdout)
    if match is None:
        raise RuntimeError(f"wrk failed (exit {done.returncode}): {done.stdout[-400:]} {done.stderr[-400:]}")
    raw = json.loads(match[1])
    duration = raw["duration_us"] / 1e6
    return Phase(
        connections=connections,
        requests=raw["requests"],
        seconds=round(duration, 3),
        rps=round(raw["requests"] / duration, 2) if duration else 0.0,
        p50_ms=raw["p50_us"] / 1000.0,
        p90_ms=raw["p90_us"] / 1000.0,
        p99_ms=raw["p99_us"] / 1000.0,
        max_ms=raw["max_us"] / 1000.0,
        errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"],
        non_2xx=raw["status_errors"],
    )


def run_load(url: str, plan: LoadPlan, body: Path, content_type: str) -> LoadResult:
    """Warm-up, drain, 1 client, then each of plan.connections; the caller has checked one request.

    Before each measured phase one plain request waits its turn: a server that keeps working off
    requests whose clients have gone (most do) answers it only once that backlog is done, so every
    phase starts from an idle server, however slow the model or the machine.
    """
    payload = body.read_bytes()

    def quiesce() -> None:
        post(url, payload, content_type, timeout=plan.timeout_s * 4)

    if plan.warmup_s > 0:
        wrk(url, plan.connections[0], plan.warmup_s, body, content_type, plan.timeout_s)
        time.sleep(plan.drain_s)
    quiesce()
    c1 = wrk(url, 1, plan.c1_s, body, content_type, plan.timeout_s)
    cn = {}
    for n in plan.connections:
        quiesce()
        cn[n] = wrk(url, n, plan.cn_s, body, content_type, plan.timeout_s)
    return LoadResult(c1=c1, cn=cn)


def problems(result: LoadResult) -> str | None:
    """Why a load result cannot be used: failed requests, or a phase in which nothing completed."""
    phases = [result.c1, *result.cn.values()]
    failed = sum(p.errors + p.non_2xx for p in phases)
    empty = [f"c={p.connections}" for p in phases if p.requests == 0]
    found = []
    if failed:
        found.append(f"{failed} failed requests under load")
    if empty:
        found.append(f"no request completed during {', '.join(empty)}")
    return "; ".join(found) or None
