"""`make bench`: moorage against the in-process limit (and, with --peers, against the peers), one run.

    .venv/bin/python bench/run.py [--rounds 3] [--quick] [--configs defaults,w1,w2t1,batch8]
                                  [--workloads tiny,resnet_bytes,resnet_url] [--no-serve]
                                  [--peers [--peer-configs ...]] [--json PATH] [--write-results]
    .venv/bin/python bench/run.py --render bench/results.json [--write-results]

Each round: the in-process baseline of every workload (bench/baseline.py, a child process), then for
every moorage configuration and workload one launch of `moorage serve-model` (launch → /ping 200,
launch → first /invocations 200, idle PSS of every process it started, then wrk at 1, 8 and 32
clients), then `moorage serve` with an endpoint created by boto3 (CreateEndpoint → first 200 and the
same load on InvokeEndpoint), then the peers. The tables print medians over rounds (bench/README.md
describes the method). Every server is stopped by pid when its turn ends, on Ctrl+C, or on SIGTERM.
`--render` measures nothing: it prints the tables of a stored records file (and rewrites RESULTS.md from
it with --write-results), so a change to the tables is applied to the same measurements.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import http.server
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))

from bench import peers as peer_runs  # noqa: E402
from bench.load import LoadPlan, problems, run_load, wrk_path  # noqa: E402
from bench.procs import Launched, Registry, memory  # noqa: E402
from bench.report import Report, machine_info, render, results_markdown  # noqa: E402
from bench.results import BaselineRecord, ServerRecord, summarize  # noqa: E402
from bench.servers import (  # noqa: E402
    Deployed,
    deploy_endpoint,
    instance_type_for,
    launch_serve,
    launch_serve_model,
    moorage_environment,
    serve_workers_from_log,
    time_startup,
    wait_for_info,
    wait_for_status,
    workers_from_log,
)
from bench.workloads import NAMES, Workload, load_manifest, matches, url_body  # noqa: E402

CONNECTIONS = (8, 32)
ALL = NAMES
# moorage's variants: the environment a user would set, and the workloads each one runs.
CONFIGS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "defaults": ({}, ALL),
    "w1": ({"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, ALL),
    "w2t1": ({"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "OMP_NUM_THREADS": "1"}, ALL),
    # SageMaker's batching knobs (delay in ms, as TorchServe reads it); the seed's predict_fn takes
    # one image at a time, so only the tiny model is batched.
    "batch8": ({"SAGEMAKER_TS_BATCH_SIZE": "8", "SAGEMAKER_TS_MAX_BATCH_DELAY": "2"}, ("tiny",)),
}
SERVE_WORKLOADS = ("tiny", "resnet_bytes")


@dataclasses.dataclass(frozen=True)
class Options:
    rounds: int
    plan: LoadPlan
    baseline_s: float
    settle_s: float
    startup_timeout_s: float
    configs: tuple[str, ...]
    workloads: tuple[str, ...]
    serve: bool
    peer_configs: tuple[str, ...]
    work: Path
    cores: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="moorage against the same handlers in-process: latency, throughput, start-up, memory.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; every figure is their median (3)")
    parser.add_argument("--quick", action="store_true", help="one short round (proves the harness works)")
    parser.add_argument("--seconds", type=int, default=5, help="length of each load phase, c=1/8/32 (5)")
    parser.add_argument("--baseline-seconds", type=float, default=5.0, help="in-process timing per workload")
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"moorage variants: {', '.join(CONFIGS)} (all)"
    )
    parser.add_argument("--workloads", default=",".join(ALL), help=f"any of {', '.join(ALL)} (all)")
    parser.add_argument("--no-serve", action="store_true", help="skip `moorage serve` + CreateEndpoint")
    parser.add_argument("--peers", action="store_true", help="also run the peers from shared/peers")
    parser.add_argument(
        "--peer-configs",
        default=",".join(peer_runs.PEER_CONFIGS),
        help=f"with --peers: any of {', '.join(peer_runs.PEER_CONFIGS)} (all)",
    )
    parser.add_argument("--peers-dir", type=Path, default=peer_runs.DEFAULT_DIR)
    parser.add_argument(
        "--peers-venv",
        type=Path,
        help="the peers' venv (default: $PEERS_VENV, else PEERS_DIR/.venv, else bench/_work/peers-venv)",
    )
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "_work", help="scratch dir")
    parser.add_argument("--json", type=Path, help="where to write every record (default: in --work)")
    parser.add_argument(
        "--write-results", action="store_true", help="rewrite bench/RESULTS.md and bench/results.json"
    )
    parser.add_argument(
        "--render", type=Path, metavar="RECORDS", help="measure nothing: print the tables of a records file"
    )
    args = parser.parse_args(argv)
    for name in args.configs.split(","):
        if name not in CONFIGS:
            parser.error(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    for name in args.workloads.split(","):
        if name not in ALL:
            parser.error(f"unknown workload {name!r}; choose from {', '.join(ALL)}")
    if args.peers:
        for name in args.peer_configs.split(","):
            if name not in peer_runs.PEER_CONFIGS:
                parser.error(f"unknown peer config {name!r}")
    return args


def options_from(args: argparse.Namespace) -> Options:
    if args.quick:
        plan = LoadPlan(warmup_s=1, drain_s=1.0, c1_s=2, cn_s=2, connections=CONNECTIONS)
        rounds, baseline_s, settle_s = 1, 2.0, 1.0
    else:
        seconds = max(1, args.seconds)
        plan = LoadPlan(warmup_s=3, drain_s=4.0, c1_s=seconds, cn_s=seconds, connections=CONNECTIONS)
        rounds, baseline_s, settle_s = max(1, args.rounds), args.baseline_seconds, 3.0
    return Options(
        rounds=rounds,
        plan=plan,
        baseline_s=baseline_s,
        settle_s=settle_s,
        startup_timeout_s=300.0,
        configs=tuple(args.configs.split(",")),
        workloads=tuple(args.workloads.split(",")),
        serve=not args.no_serve,
        peer_configs=tuple(args.peer_configs.split(",")) if args.peers else (),
        work=args.work.resolve(),
        cores=os.cpu_count() or 1,
    )


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# The image server for the seed's URL input_fn -------------------------------------------------------
class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def image_server(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietFiles, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="images", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# Measuring ----------------------------------------------------------------------------------------
def run_baseline(
    options: Options, round_no: int, python: str = sys.executable, chain: str = "moorage", workloads: str = ""
) -> tuple[list[BaselineRecord], dict[str, str]]:
    argv = [python, "-m", "bench.baseline", str(options.work / "artifacts")]
    argv += ["--workloads", workloads or ",".join(options.workloads), "--seconds", str(options.baseline_s)]
    argv += ["--chain", chain]
    done = subprocess.run(
        argv, cwd=ROOT, env=moorage_environment(), capture_output=True, text=True, timeout=900
    )
    records, responses = [], {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            raw = json.loads(line)
            responses[raw["workload"]] = raw.pop("response")
            raw.pop("mean_ms", None)
            records.append(BaselineRecord(round=round_no, **raw))
    if done.returncode != 0:
        say(f"baseline ({chain}) failed: {done.stderr[-1500:]}")
    return records, responses


def _loadavg() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def measure_launch(
    launched: Launched,
    base_url: Callable[[], str],
    workload: Workload,
    expected: str,
    options: Options,
    *,
    round_no: int,
    label: str,
    kind: str,
    workers: Callable[[], int | None],
) -> ServerRecord:
    """Startup, idle memory, then load on /invocations: one launch of one server on one workload."""
    body = workload.body.read_bytes()
    startup = time_startup(
        launched,
        base_url,
        body,
        workload.content_type,
        lambda answer: matches(workload.check, answer, expected),
        options.startup_timeout_s,
    )
    empty = ServerRecord(
        round_no, label, kind, workload.name, None, startup.ping_s, startup.first_200_s, None, None, None
    )
    if startup.error is not None:
        return dataclasses.replace(empty, error=f"{startup.error}\n{launched.log_tail(1500)}")
    time.sleep(options.settle_s)
    idle = memory(launched.tag, launched.variable)
    loadavg = _loadavg()
    try:
        load = run_load(base_url() + "/invocations", options.plan, workload.body, workload.content_type)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return dataclasses.replace(empty, pss_mb=idle.pss_mb, rss_mb=idle.rss_mb, error=str(exc))
    return ServerRecord(
        round=round_no,
        label=label,
        kind=kind,
        workload=workload.name,
        workers=workers(),
        ping_s=startup.ping_s,
        first_200_s=startup.first_200_s,
        pss_mb=idle.pss_mb,
        rss_mb=idle.rss_mb,
        processes=idle.processes,
        c1=load.c1,
        cn=load.cn,
        error=problems(load),
        loadavg=loadavg,
    )


def measure_serve_model(
    registry: Registry, options: Options, round_no: int, config: str, workload: Workload, expected: str
) -> ServerRecord:
    env_extra, _ = CONFIGS[config]
    data_dir = options.work / "runs" / f"r{round_no}-{config}-{workload.name}"
    launched = launch_serve_model(
        registry, f"moorage-{config}", workload.tarball, data_dir, moorage_environment(env_extra)
    )
    try:
        url = functools.cache(lambda: wait_for_info(launched, data_dir / "serve-model.json", 60.0))
        return measure_launch(
            launched,
            url,
            workload,
            expected,
            options,
            round_no=round_no,
            label=f"moorage {config}",
            kind="serve-model",
            workers=lambda: workers_from_log(launched),
        )
    finally:
        registry.stop(launched)
        shutil.rmtree(data_dir, ignore_errors=True)  # the extracted model; the log stays beside it


def measure_serve(
    registry: Registry, options: Options, round_no: int, workload: Workload, expected: str
) -> ServerRecord:
    """A fresh `moorage serve`; once it answers /ping, CreateEndpoint and time it to the first 200."""
    data_dir = options.work / "runs" / f"r{round_no}-serve-{workload.name}"
    launched = launch_serve(registry, "moorage-serve", data_dir, moorage_environment())
    empty = ServerRecord(
        round_no, "moorage serve", "serve", workload.name, None, None, None, None, None, None
    )
    try:
        url = wait_for_info(launched, data_dir / "server.json", 60.0)
        ping_s, _, why = wait_for_status(
            lambda: _get_status(url + "/ping"), launched.started_at, options.startup_timeout_s, launched.alive
        )
        if ping_s is None:
            return dataclasses.replace(empty, error=f"/ping: {why}")
        deployed = _deploy(url, launched, options, workload, expected, workload.tarball)
        if deployed.error is not None:
            return dataclasses.replace(
                empty, ping_s=ping_s, error=f"{deployed.error}\n{launched.log_tail(1500)}"
            )
        time.sleep(options.settle_s)
        idle = memory(launched.tag)
        loadavg = _loadavg()
        load = run_load(deployed.invoke_url, options.plan, workload.body, workload.content_type)
        warm = _deploy_on_warm_server(url, launched, options, workload, expected, data_dir)
        return ServerRecord(
            round=round_no,
            label="moorage serve",
            kind="serve",
            workload=workload.name,
            workers=serve_workers_from_log(launched, deployed.endpoint),
            ping_s=ping_s,
            first_200_s=deployed.create_to_200_s,
            pss_mb=idle.pss_mb,
            rss_mb=idle.rss_mb,
            processes=idle.processes,
            c1=load.c1,
            cn=load.cn,
            error=problems(load) or warm.error,
            loadavg=loadavg,
            warm_first_200_s=warm.create_to_200_s,
        )
    except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
        return dataclasses.replace(empty, error=str(exc))
    finally:
        registry.stop(launched)
        shutil.rmtree(data_dir, ignore_errors=True)


def _deploy_on_warm_server(
    url: str, launched: Launched, options: Options, workload: Workload, expected: str, data_dir: Path
) -> Deployed:
    """A second endpoint on the running server: a new instance once the imports are paid.

    Its artifact is a fresh copy under another name, so the download, checksum and extraction are
    timed again rather than served from the artifact cache.
    """
    time.sleep(options.settle_s)
    copy = data_dir / f"second-{workload.tarball.name}"
    shutil.copyfile(workload.tarball, copy)
    return _deploy(url, launched, options, workload, expected, copy)


def _deploy(
    url: str, launched: Launched, options: Options, workload: Workload, expected: str, tarball: Path
) -> Deployed:
    """CreateEndpoint for `tarball` with the workload's check, timed to the first 200."""
    return deploy_endpoint(
        url,
        tarball,
        instance_type_for(options.cores),
        workload.body.read_bytes(),
        workload.content_type,
        lambda answer: matches(workload.check, answer, expected),
        launched.alive,
        options.startup_timeout_s,
    )


def _get_status(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), b""
    except OSError as exc:
        return 0, str(exc).encode()


def measure_peer(
    registry: Registry,
    setup: peer_runs.PeersSetup,
    options: Options,
    round_no: int,
    config: peer_runs.PeerConfig,
    workload: Workload,
    expected: str,
) -> ServerRecord:
    log = options.work / "runs" / f"r{round_no}-{config.name}-{workload.name}.log"
    try:
        launched = peer_runs.start_peer(registry, setup, config, workload.name, log)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return ServerRecord(
            round_no,
            config.name,
            "peer",
            workload.name,
            config.workers,
            None,
            None,
            None,
            None,
            None,
            error=str(exc),
        )
    try:
        return measure_launch(
            launched,
            lambda: f"http://127.0.0.1:{config.port}",
            workload,
            expected,
            options,
            round_no=round_no,
            label=config.name,
            kind="peer",
            workers=lambda: config.workers or options.cores,
        )
    finally:
        registry.stop(launched)


def peers_setup(args: argparse.Namespace, options: Options) -> peer_runs.PeersSetup | None:
    if not args.peers:
        return None
    venv = args.peers_venv or (Path(os.environ["PEERS_VENV"]) if os.environ.get("PEERS_VENV") else None)
    if venv is None:
        venv = args.peers_dir / ".venv"
        if not venv.exists():
            venv = options.work / "peers-venv"
    # A short path of its own: Ray puts AF_UNIX sockets (at most 107 bytes) deep under PEERS_WORK.
    work = Path(tempfile.mkdtemp(prefix="bp-"))
    setup = peer_runs.check_setup(args.peers_dir, venv.resolve(), work)
    for problem in setup.problems:
        say(f"peers: {problem}")
    if not setup.families:
        say("peers: none can run here; continuing without them")
        shutil.rmtree(work, ignore_errors=True)
        return None
    return setup


def run(args: argparse.Namespace, options: Options, registry: Registry) -> dict[str, Any]:
    if wrk_path() is None:
        raise SystemExit("bench: wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    artifacts = options.work / "artifacts"
    say("building the workloads (moorage.examples.builders)")
    subprocess.run(
        [sys.executable, "-m", "bench.workloads", str(artifacts)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    workloads = load_manifest(artifacts)
    setup = peers_setup(args, options)
    try:
        if setup is not None:
            peer_runs.prepare_work(setup, workloads)
        return measure_all(options, registry, workloads, setup)
    finally:
        if setup is not None:
            registry.stop_all()  # the peers' stop scripts read their run dirs: stop before removing
            shutil.rmtree(setup.work, ignore_errors=True)


def measure_all(
    options: Options, registry: Registry, workloads: dict[str, Workload], setup: peer_runs.PeersSetup | None
) -> dict[str, Any]:
    artifacts = options.work / "artifacts"
    machine = machine_info()
    baselines: list[BaselineRecord] = []
    servers: list[ServerRecord] = []
    toolkit_tiny: BaselineRecord | None = None
    with image_server(artifacts / "images") as images:
        url_body(artifacts, f"{images}/test.jpg")
        for round_no in range(1, options.rounds + 1):
            say(f"round {round_no}/{options.rounds}: in-process baseline")
            records, expected = run_baseline(options, round_no)
            baselines += records
            if setup is not None and round_no == 1 and "tiny" in options.workloads:
                toolkit, _ = run_baseline(options, round_no, str(setup.python), "toolkit", "tiny")
                toolkit_tiny = toolkit[0] if toolkit else None
            for config in options.configs:
                for name in CONFIGS[config][1]:
                    if name in options.workloads and name in expected:
                        say(f"round {round_no}: moorage {config}, {name}")
                        servers.append(
                            _logged(
                                measure_serve_model(
                                    registry, options, round_no, config, workloads[name], expected[name]
                                )
                            )
                        )
            if options.serve:
                for name in SERVE_WORKLOADS:
                    if name in options.workloads and name in expected:
                        say(f"round {round_no}: moorage serve + CreateEndpoint, {name}")
                        servers.append(
                            _logged(
                                measure_serve(registry, options, round_no, workloads[name], expected[name])
                            )
                        )
            if setup is not None:
                for peer_name in options.peer_configs:
                    peer = peer_runs.PEER_CONFIGS[peer_name]
                    if peer.family not in setup.families:
                        continue
                    for name in peer.workloads:
                        if name in options.workloads and name in expected:
                            say(f"round {round_no}: peer {peer_name}, {name}")
                            servers.append(
                                _logged(
                                    measure_peer(
                                        registry,
                                        setup,
                                        options,
                                        round_no,
                                        peer,
                                        workloads[name],
                                        expected[name],
                                    )
                                )
                            )
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "machine": machine,
        "settings": _settings(options),
        "baselines": [dataclasses.asdict(b) for b in baselines],
        "toolkit_tiny": dataclasses.asdict(toolkit_tiny) if toolkit_tiny else None,
        "servers": [dataclasses.asdict(s) for s in servers],
        "peers_ran": setup is not None,
    }


def _logged(record: ServerRecord) -> ServerRecord:
    if record.error:
        say(f"  problem: {record.error.splitlines()[0][:300]}")
    elif record.c1 is not None:
        rps = ", ".join(f"c={n} {p.rps:.1f}/s" for n, p in record.cn.items())
        warm = f", warm server {record.warm_first_200_s:.2f} s" if record.warm_first_200_s else ""
        say(f"  first 200 {record.first_200_s:.2f} s{warm}, c=1 p50 {record.c1.p50_ms:.3f} ms, {rps}")
    return record


def _settings(options: Options) -> dict[str, Any]:
    plan = options.plan
    return {
        "rounds": options.rounds,
        "phases_s": f"warm-up {plan.warmup_s} at c={plan.connections[0]}, drain {plan.drain_s}, "
        f"c=1 {plan.c1_s}, c=8/32 {plan.cn_s}",
        "baseline_s": options.baseline_s,
        "configs": "+".join(options.configs),
        "peer_configs": "+".join(options.peer_configs) or "none",
    }


def report_from(data: dict[str, Any]) -> Report:
    from bench.load import Phase

    def phase(raw: dict[str, Any] | None) -> Phase | None:
        return Phase(**raw) if raw else None

    servers = [
        ServerRecord(
            **{
                **raw,
                "c1": phase(raw["c1"]),
                "cn": {int(n): Phase(**p) for n, p in raw["cn"].items()},
                "loadavg": tuple(raw["loadavg"]),
            }
        )
        for raw in data["servers"]
    ]
    baselines = [BaselineRecord(**raw) for raw in data["baselines"]]
    cores = int(data["machine"]["cores"] or 1)
    toolkit = BaselineRecord(**data["toolkit_tiny"]) if data.get("toolkit_tiny") else None
    return Report(
        rows=summarize(servers, baselines, cores, CONNECTIONS),
        baselines=baselines,
        connections=CONNECTIONS,
        cores=cores,
        peers_ran=bool(data.get("peers_ran")),
        toolkit_tiny=toolkit,
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.render:
        return render_stored(args.render, command.strip(), write=args.write_results)
    options = options_from(args)
    options.work.mkdir(parents=True, exist_ok=True)
    registry = Registry()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        data = {**run(args, options, registry), "command": command.strip()}
    except KeyboardInterrupt:
        say("interrupted: stopping every server this run started")
        return 130
    finally:
        registry.stop_all()
    json_path = args.json or options.work / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data, indent=1))
    report = report_from(data)
    print(render(report))
    say(f"records: {json_path}")
    if args.write_results:
        results = results_markdown(report, data["machine"], data["settings"], data["command"])
        (ROOT / "bench" / "RESULTS.md").write_text(results)
        (ROOT / "bench" / "results.json").write_text(json.dumps(data, indent=1))
        say("wrote bench/RESULTS.md and bench/results.json")
    return 0


def render_stored(records: Path, command: str, *, write: bool) -> int:
    """The tables of a stored run; with `write`, RESULTS.md says both commands (measured, rendered)."""
    data = json.loads(records.read_text())
    report = report_from(data)
    print(render(report))
    if write:
        measured = data.get("command", "not recorded")
        (ROOT / "bench" / "RESULTS.md").write_text(
            results_markdown(report, data["machine"], data["settings"], measured, rendered_by=command)
        )
        if records.resolve() != (ROOT / "bench" / "results.json").resolve():
            (ROOT / "bench" / "results.json").write_text(json.dumps(data, indent=1))
        say("wrote bench/RESULTS.md from " + str(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
