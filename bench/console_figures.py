"""Console figures (issue 18): how long the endpoints page takes with many endpoints, and what an open,
idle console costs the server.

    .venv/bin/python bench/console_figures.py            # 200 endpoints, 60 s idle windows
    .venv/bin/python bench/console_figures.py --quick    # 50 endpoints, 20 s idle windows

One `moorage serve` (local backend, no auth) and Debian's headless Chromium driven by Playwright. The
endpoints share one tiny model (TorchScript Linear(16 → 4)): `--real` of them (default 2) run one
instance each; the others are serverless variants (ServerlessConfig), InService at zero instances.
200 endpoints with an instance each would be 200 worker processes on this 2-core machine, shared with
other work; serverless endpoints are still whole endpoints to the console (ListEndpoints,
DescribeEndpoint, a variant with its counts), so the page's cost is the same.

- **page load**: a fresh page opens /console/#/endpoints; timed from navigation start until every
  endpoint has its row and every row on screen shows its variants (its DescribeEndpoint answered).
  The first load (nothing cached) and the median of `--loads` more (304s for the files);
- **idle cost**: the page left open `--idle-seconds` on the endpoints page, then on one endpoint's page:
  the requests per second it sends (counted in the browser) and the CPU seconds per minute of the
  server's processes (server, fork server, workers; psutil), against the same window with no page open.

Prints the figures and writes them to `--out` (JSON); `--screenshot` saves the loaded page. Asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from moorage.examples.builders import pack, tiny_model_dir

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))
from bench.procs import Registry  # noqa: E402
from bench.transform import _client, _serve  # noqa: E402  (one `moorage serve` with its S3 store)

ROLE = "arn:aws:iam::000000000000:role/moorage-bench"
CHROMIUM = "/usr/bin/chromium"
BATCH = 10
LOADED = """(count) => {
    const rows = document.querySelectorAll("table.endpoints tbody tr");
    if (rows.length !== count) return false;
    const height = window.innerHeight;
    return [...rows].every((row) => {
        const box = row.getBoundingClientRect();
        return box.bottom < 0 || box.top > height || row.querySelector("td.variants").textContent !== "…";
    });
}"""


def _deploy(sm: Any, tarball: Path, total: int, real: int) -> list[str]:
    sm.create_model(
        ModelName="console-tiny", ExecutionRoleArn=ROLE, PrimaryContainer={"ModelDataUrl": tarball.as_uri()}
    )
    variant = {"VariantName": "AllTraffic", "ModelName": "console-tiny"}
    sm.create_endpoint_config(
        EndpointConfigName="console-real",
        ProductionVariants=[{**variant, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
    )
    sm.create_endpoint_config(
        EndpointConfigName="console-serverless",
        ProductionVariants=[{**variant, "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1}}],
    )
    names = [f"console-{i:03d}" for i in range(total)]
    # In batches: each serverless endpoint starts one instance at creation, and 200 at once do not fit.
    for first in range(0, total, BATCH):
        batch = names[first : first + BATCH]
        for i, name in enumerate(batch, first):
            sm.create_endpoint(
                EndpointName=name, EndpointConfigName="console-real" if i < real else "console-serverless"
            )
        for name in batch:
            sm.get_waiter("endpoint_in_service").wait(
                EndpointName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 1200}
            )
        print(f"{first + len(batch)} of {total} endpoints InService", file=sys.stderr, flush=True)
    return names


def _until_idle(sm: Any, names: list[str], real: int) -> None:
    """Until only the `real` endpoints hold an instance (the serverless ones have scaled to zero)."""
    deadline = time.monotonic() + 600
    while True:
        running = sum(
            sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["CurrentInstanceCount"]
            for name in names
        )
        if running == real:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{running} instances still run; expected {real}")
        time.sleep(2.0)


def _cpu_seconds(pid: int) -> float:
    total = 0.0
    process = psutil.Process(pid)
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _idle(pid: int, seconds: float, page: Any | None) -> dict[str, float]:
    """Server CPU s/min and browser requests/s over `seconds` with `page` open (or none)."""
    sent = [0]

    def count(_: Any) -> None:
        sent[0] += 1

    if page is not None:
        page.on("request", count)
    before = _cpu_seconds(pid)
    started = time.monotonic()
    if page is not None:
        page.wait_for_timeout(seconds * 1000)  # the page keeps running its refreshes meanwhile
    else:
        time.sleep(seconds)
    elapsed = time.monotonic() - started
    used = _cpu_seconds(pid) - before
    if page is not None:
        page.remove_listener("request", count)
    return {
        "seconds": round(elapsed, 1),
        "requests_per_s": round(sent[0] / elapsed, 2),
        "server_cpu_s_per_min": round(used * 60 / elapsed, 3),
    }


def _load(browser: Any, url: str, count: int, context: Any) -> float:
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_function(LOADED, arg=count, timeout=120_000)
        loaded_ms: float = page.evaluate("performance.now()")
        return loaded_ms
    finally:
        page.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50 endpoints, 20 s idle windows")
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--real", type=int, default=2, help="endpoints with a running instance")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--screenshot", type=Path, help="save the loaded endpoints page here (PNG)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "console_figures.json")
    args = parser.parse_args(argv)
    total, idle_s = (50, 20.0) if args.quick else (args.endpoints, args.idle_seconds)
    from playwright.sync_api import sync_playwright

    registry = Registry()
    figures: dict[str, Any] = {"endpoints": total, "with_instances": args.real}
    try:
        with tempfile.TemporaryDirectory(prefix="moorage-console-bench-") as tmp:
            work = Path(tmp)
            tiny = pack(tiny_model_dir(work / "tiny"), work / "tiny.tar.gz")
            # Serverless variants start one instance at creation (to prove the model loads), then stop
            # it once idle: after 1 s here, so that the idle windows see 0 instances.
            launched, info = _serve(registry, work / "data", {"MOORAGE_SERVERLESS_IDLE_SECONDS": "1"})
            sm = _client("sagemaker", info["url"])
            started = time.monotonic()
            names = _deploy(sm, tiny, total, args.real)
            figures["deploy_s"] = round(time.monotonic() - started, 1)
            _until_idle(sm, names, args.real)
            url = f"{info['url']}/console/#/endpoints"
            assert launched.process is not None
            pid = launched.process.pid
            figures["idle_no_console"] = _idle(pid, idle_s, None)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                context = browser.new_context(viewport={"width": 1280, "height": 860})
                loads = [_load(browser, url, total, context) for _ in range(1 + args.loads)]
                figures["page_load_first_ms"] = round(loads[0], 1)
                figures["page_load_median_ms"] = round(statistics.median(loads[1:]), 1)
                figures["page_loads_ms"] = [round(x, 1) for x in loads]
                page = context.new_page()
                page.goto(url)
                page.wait_for_function(LOADED, arg=total, timeout=120_000)
                figures["dom_nodes"] = page.evaluate("document.getElementsByTagName('*').length")
                if args.screenshot is not None:
                    page.screenshot(path=str(args.screenshot))
                figures["idle_endpoints_page"] = _idle(pid, idle_s, page)
                page.goto(f"{info['url']}/console/#/endpoints/{names[0]}")
                page.wait_for_selector(".badge")
                figures["idle_endpoint_page"] = _idle(pid, idle_s, page)
                browser.close()
    finally:
        registry.stop_all()
    print(json.dumps(figures, indent=2))
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
