"""What the worker sandbox costs: on the invoke path (tiny model p50, sandbox on vs off) and at worker start.

    .venv/bin/python bench/sandbox_cost.py            # 3 rounds of 2000 sequential requests per mode
    .venv/bin/python bench/sandbox_cost.py --quick    # 1 round of 300: proves the script works

Invoke path: `moorage serve-model` of the tiny model (TorchScript Linear(16 → 4), default handlers, one
worker), once with MOORAGE_SANDBOX=off and once with the default (Landlock), alternating per round;
one keep-alive client sends requests one after another. Landlock checks file opens only, so the
expected difference is noise. Worker start: `confine()` timed in forked children (what a worker pays
after the fork server forks it), and the one-time walk of /etc done by the fork server before forking.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moorage.examples.builders import pack, tiny_model_dir
from moorage.sandbox import SandboxPolicy, confine, system_read_paths
from moorage.sandbox import policy as sandbox_policy

BODY = json.dumps([[0.25] * 16]).encode()


def _serve(tarball: Path, data_dir: Path, sandbox: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOORAGE_", "SAGEMAKER_"))}
    env["MOORAGE_SANDBOX"] = sandbox
    command = [sys.executable, "-m", "moorage", "serve-model", str(tarball), "--port", "0", "--workers", "1"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            info = json.loads((data_dir / "serve-model.json").read_text())
            host, port = info["url"].removeprefix("http://").rsplit(":", 1)
            connection = http.client.HTTPConnection(host, int(port), timeout=5)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return process, info["url"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"serve-model (MOORAGE_SANDBOX={sandbox}) was not ready within 120 s")


def _latencies(url: str, count: int) -> list[float]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    took = []
    for index in range(count + 200):  # the first 200 warm up
        started = time.perf_counter()
        connection.request("POST", "/invocations", body=BODY, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"/invocations answered {response.status}")
        if index >= 200:
            took.append((time.perf_counter() - started) * 1000)
    connection.close()
    return took


def invoke_path(rounds: int, count: int, work: Path) -> dict[str, list[float]]:
    tarball = pack(tiny_model_dir(work / "tiny"), work / "tiny.tar.gz")
    p50: dict[str, list[float]] = {"off": [], "auto": []}
    for round_no in range(rounds):
        for mode in ("off", "auto") if round_no % 2 == 0 else ("auto", "off"):
            process, url = _serve(tarball, work / f"data-{mode}-{round_no}", mode)
            try:
                p50[mode].append(statistics.median(_latencies(url, count)))
            finally:
                process.terminate()
                process.wait(30)
    return p50


def _child_ms(policy: SandboxPolicy | None) -> float:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        started = time.perf_counter()
        if policy is not None:
            confine(policy)
        os.write(write, str((time.perf_counter() - started) * 1000).encode())
        os._exit(0)
    os.close(write)
    took = float(os.read(read, 64))
    os.close(read)
    os.waitpid(pid, 0)
    return took


def worker_start(work: Path, count: int = 50) -> tuple[float, float]:
    """(median confine() ms in a forked child, one cold walk of /etc in ms)."""
    started = time.perf_counter()
    sandbox_policy._world_readable("/etc")
    etc_ms = (time.perf_counter() - started) * 1000
    scratch = work / "scratch"
    scratch.mkdir()
    policy = SandboxPolicy(read_only=(str(work / "tiny"), *system_read_paths()), read_write=(str(scratch),))
    return statistics.median(_child_ms(policy) for _ in range(count)), etc_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one round of 300 requests")
    args = parser.parse_args(argv)
    rounds, count = (1, 300) if args.quick else (3, 2000)
    with tempfile.TemporaryDirectory(prefix="moorage-sandbox-cost-") as tmp:
        work = Path(tmp)
        p50 = invoke_path(rounds, count, work)
        confine_ms, etc_ms = worker_start(work)
    off, on = statistics.median(p50["off"]), statistics.median(p50["auto"])
    print(f"invoke path, tiny model, 1 client, p50 over {rounds} round(s) of {count} requests:")
    print(f"  sandbox off: {off:.3f} ms   (rounds: {', '.join(f'{v:.3f}' for v in p50['off'])})")
    print(f"  sandbox on:  {on:.3f} ms   (rounds: {', '.join(f'{v:.3f}' for v in p50['auto'])})")
    print(f"  difference:  {on - off:+.3f} ms")
    print("worker start:")
    print(f"  confine() in a forked worker: {confine_ms:.3f} ms (median of 50)")
    print(f"  /etc walk, once per fork server before it forks: {etc_ms:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
