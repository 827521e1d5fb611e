"""What the Ray backend costs per request: the tiny model's c=1 p50 on moorage's local backend, on its
Ray backend, and on plain Ray Serve, measured side by side in one run (issue 7).

    .venv/bin/python bench/ray_vs_local.py [--requests 1000] [--rounds 3] [--write-results]

All three serve the same model (TorchScript Linear(16->4), SageMaker's default handlers) through
moorage's handler chain (`moorage.handler.pipeline.Handler`), one instance with one worker, on
127.0.0.1. Each round sends `--requests` requests one at a time over a keep-alive connection to each
server in turn; the table gives the median of the rounds' p50s and the ratios to the local backend.
Plain Ray Serve runs in a process of its own (a private single-node cluster, as moorage starts one):
an HTTP proxy on loopback in front of one replica. Not a test: nothing here is asserted.
`--write-results` rewrites the "ray-cost" section of docs/ray.md (between its markers) with the table,
the machine and the load average, so the page quotes this command's last run and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))  # run as a script: make `bench` importable as a package
RAY_DOC = HERE.parent / "docs" / "ray.md"

BODY = json.dumps([[0.5] * 16]).encode()
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


# Plain Ray Serve, in its own process --------------------------------------------------------------
def _serve_app(model_dir: str, port: int) -> None:
    """`--serve-app`: one Serve replica running the model through moorage's handler chain."""
    import threading

    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    class TinyModel:
        def __init__(self, directory: str) -> None:
            import torch

            from moorage.handler.pipeline import Handler, HandlerOptions

            self.handler = Handler.load(
                model_dir=Path(directory), program="inference", options=HandlerOptions()
            )
            torch.set_num_threads(1)

        async def __call__(self, request: Request) -> Response:
            from moorage.handler.pipeline import HandlerRequest

            if request.url.path == "/ping":
                return Response(b"", status_code=200)
            body = await request.body()
            answer = self.handler.transform(
                HandlerRequest(
                    body=body,
                    content_type=request.headers.get("content-type"),
                    accept=request.headers.get("accept"),
                    headers=(),
                    request_id="0",
                )
            )
            return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 1})(TinyModel).bind(model_dir)
    serve.run(app, name="tiny", route_prefix="/", blocking=False)
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()  # type: ignore[no-untyped-call]
    ray.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _private_ray_env(root: Path) -> dict[str, str]:
    token = root / "ray_token"
    token.write_text(os.urandom(32).hex())
    token.chmod(0o600)
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_TMPDIR": str(root),
        "RAY_USAGE_STATS_ENABLED": "0",
    }


@contextlib.contextmanager
def plain_serve(model_dir: Path, root: Path) -> Iterator[tuple[str, str]]:
    port = _free_port()
    log = (root / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-app", str(model_dir), str(port)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, **_private_ray_env(root)},
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "READY":
            raise RuntimeError(f"Ray Serve did not start; see {root / 'serve.log'}")
        yield f"127.0.0.1:{port}", "/invocations"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# moorage, on either backend -----------------------------------------------------------------------
@contextlib.contextmanager
def moorage(backend: str, tarball: Path, root: Path) -> Iterator[tuple[str, str]]:
    from support.hosting import deploy
    from support.servers import start_server

    env = {"MOORAGE_RAY_CPUS": "8", "MOORAGE_RAY_MEMORY_GIB": "32"} if backend == "ray" else {}
    server = start_server(root / f"data-{backend}", args=["--backend", backend], env=env, timeout=180)
    try:
        name = deploy(server.client("sagemaker"), tarball, instance_type="ml.m5.large")
        yield server.url.removeprefix("http://"), f"/endpoints/{name}/invocations"
    finally:
        server.stop()


# Measuring ----------------------------------------------------------------------------------------
def p50_ms(address: str, path: str, requests: int) -> float:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    timings = []
    try:
        for index in range(requests + 50):
            started = time.perf_counter()
            connection.request("POST", path, body=BODY, headers=HEADERS)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"{address}{path} answered {response.status}: {payload[:200]!r}")
            if index >= 50:  # the first ones warm up connections and caches
                timings.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return statistics.median(timings)


def in_process_p50_ms(model_dir: Path, requests: int) -> float:
    import torch

    from moorage.handler.pipeline import Handler, HandlerOptions, HandlerRequest

    sys.path.insert(0, str(model_dir))
    handler = Handler.load(model_dir=model_dir, program="inference", options=HandlerOptions())
    torch.set_num_threads(1)
    request = HandlerRequest(
        body=BODY, content_type="application/json", accept="application/json", headers=(), request_id="0"
    )
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        handler.transform(request)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-results", action="store_true", help="rewrite the table in docs/ray.md")
    parser.add_argument("--serve-app", nargs=2, metavar=("MODEL_DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_app:
        _serve_app(args.serve_app[0], int(args.serve_app[1]))
        return

    from bench.report import machine_info
    from moorage.examples.builders import pack, tiny_model_dir

    machine = machine_info()  # before the servers start: the load average is the machine's own
    root = Path(tempfile.mkdtemp(prefix="mbench-"))
    try:
        model_dir = tiny_model_dir(root / "tiny")
        tarball = pack(model_dir, root / "tiny.tar.gz")
        targets: dict[str, Callable[[], Any]] = {
            "local backend": lambda: moorage("local", tarball, root),
            "ray backend": lambda: moorage("ray", tarball, root),
            "plain Ray Serve": lambda: plain_serve(model_dir, root),
        }
        results: dict[str, list[float]] = {name: [] for name in targets}
        with contextlib.ExitStack() as stack:
            endpoints = {name: stack.enter_context(start()) for name, start in targets.items()}
            for round_ in range(args.rounds):
                for name, (address, path) in endpoints.items():
                    results[name].append(p50_ms(address, path, args.requests))
                print(f"round {round_ + 1}: " + ", ".join(f"{n} {r[-1]:.2f} ms" for n, r in results.items()))
        baseline = in_process_p50_ms(model_dir, args.requests)
        report(results, baseline)
        if args.write_results:
            from bench.choices import write_section

            settings = f"{args.rounds} round(s) of {args.requests} requests at one client"
            write_section("ray-cost", markdown(results, baseline), machine, settings, path=RAY_DOC)
            print(f"wrote the ray-cost section of {RAY_DOC}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


_LABELS = {
    "local backend": "moorage, local backend",
    "ray backend": "moorage, Ray backend",
    "plain Ray Serve": "plain Ray Serve (HTTP proxy → replica)",
}


def markdown(results: dict[str, list[float]], baseline: float) -> str:
    """The table docs/ray.md quotes: each server's c=1 p50 and its cost over the local backend."""
    local = statistics.median(results["local backend"])
    lines = ["| server | c=1 p50 ms | × local backend | + ms over local |", "|---|---|---|---|"]
    lines.append(f"| the handler alone, in-process | {baseline:.3f} | – | – |")
    for name, rounds in results.items():
        p50 = statistics.median(rounds)
        lines.append(f"| {_LABELS[name]} | {p50:.2f} | {p50 / local:.2f} | {p50 - local:+.2f} |")
    return "\n".join(lines)


def report(results: dict[str, list[float]], baseline: float) -> None:
    local = statistics.median(results["local backend"])
    print(
        f"\nc=1 p50, median of {len(results['local backend'])} rounds (handler in-process: {baseline:.3f} ms)"
    )
    print(f"{'server':<18}{'p50 ms':>9}{'x local':>9}{'+ms over local':>16}")
    for name, rounds in results.items():
        p50 = statistics.median(rounds)
        print(f"{name:<18}{p50:>9.2f}{p50 / local:>9.2f}{p50 - local:>16.2f}")
    ray, serve = statistics.median(results["ray backend"]), statistics.median(results["plain Ray Serve"])
    print(f"\nray backend / plain Ray Serve: {ray / serve:.2f}")


if __name__ == "__main__":
    main()
