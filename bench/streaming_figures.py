"""Response streaming figures (docs/streaming.md): what a handler that yields buys, and what it costs.

    .venv/bin/python bench/streaming_figures.py            # 5 streams of 200 tokens; 20,000 small parts
    .venv/bin/python bench/streaming_figures.py --quick    # fewer: proves the script works

One `moorage serve`, three endpoints (one worker each):
1. the example text model (moorage.examples.textgen, trained here): time to the first PayloadPart against time
   to the whole answer through InvokeEndpointWithResponseStream, and the whole answer through InvokeEndpoint;
2. a handler that yields N parts of 16 bytes as fast as it can: parts per second through the server (a raw
   HTTP client reads the event stream to its end) against the same generator run alone in this process;
3. backpressure: a handler that yields 64 KiB parts forever, counting them in a file; the client reads one
   part and stops reading for 2 s: how many parts the generator produced meanwhile (the credit window, the
   server's and the kernel's socket buffers), against the unbounded count without backpressure.
Prints the figures and writes bench/streaming_figures.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from moorage.examples.builders import pack

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))
from bench.capture_cost import _deploy  # noqa: E402  (an endpoint of one worker)
from bench.procs import Registry  # noqa: E402
from bench.transform import _client, _serve  # noqa: E402  (one `moorage serve` with its S3 store)

RESULT = ROOT / "bench" / "streaming_figures.json"
PART = b"0123456789abcdef"

FAST_HANDLER = textwrap.dedent("""
    import json
    import os

    def model_fn(model_dir):
        return {}

    def input_fn(body, content_type):
        return json.loads(body)

    def _fast(count):
        part = b"0123456789abcdef"
        for _ in range(count):
            yield part

    def _counted(path):
        part = b"x" * 65536
        produced = 0
        while True:
            produced += 1
            with open(path, "w") as counter:
                counter.write(str(produced))
            yield part

    def predict_fn(request, model):
        if "counter" in request:
            return _counted(request["counter"])
        return _fast(request["count"])
""")


def _stream(url: str, endpoint: str, request: dict[str, Any]) -> tuple[float, float, int, int]:
    """(seconds to the first body byte, to the end, event-stream bytes, parts) with a raw HTTP client."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    started = time.perf_counter()
    connection.request(
        "POST",
        f"/endpoints/{endpoint}/invocations-response-stream",
        body=json.dumps(request),
        headers={"Content-Type": "application/json"},
    )
    response = connection.getresponse()
    first = response.read1(65536)
    first_s = time.perf_counter() - started
    size = len(first)
    buffer = bytearray(first)
    while chunk := response.read1(1 << 20):
        size += len(chunk)
        buffer += chunk
    whole_s = time.perf_counter() - started
    connection.close()
    parts = _count_events(bytes(buffer))
    return first_s, whole_s, size, parts


def _count_events(data: bytes) -> int:
    count, pos = 0, 0
    while pos + 4 <= len(data):
        pos += int.from_bytes(data[pos : pos + 4], "big")
        count += 1
    return count


def text_model(work: Path, url: str, sm: Any, runs: int, tokens: int) -> dict[str, Any]:
    from moorage.examples.textgen import train_text_model

    train_text_model(work / "textgen")
    _deploy(sm, pack(work / "textgen", work / "textgen.tar.gz"), "textgen", None)
    runtime = _client("sagemaker-runtime", url)
    request = {"prompt": "Beautiful is", "max_new_tokens": tokens, "temperature": 0.8, "seed": 0}
    first, whole, plain = [], [], []
    for _ in range(runs):
        sent = time.perf_counter()
        response = runtime.invoke_endpoint_with_response_stream(
            EndpointName="textgen", Body=json.dumps(request), ContentType="application/json"
        )
        events = iter(response["Body"])
        next(events)
        first.append(time.perf_counter() - sent)
        for _ in events:
            pass
        whole.append(time.perf_counter() - sent)
        sent = time.perf_counter()
        runtime.invoke_endpoint(
            EndpointName="textgen", Body=json.dumps(request), ContentType="application/json"
        )
        plain.append(time.perf_counter() - sent)
    return {
        "tokens": tokens,
        "runs": runs,
        "first_part_ms_median": statistics.median(first) * 1000,
        "whole_stream_ms_median": statistics.median(whole) * 1000,
        "invoke_endpoint_whole_ms_median": statistics.median(plain) * 1000,
    }


def parts_rate(url: str, count: int) -> dict[str, Any]:
    _, whole_s, size, parts = _stream(url, "fast", {"count": count})
    started = time.perf_counter()
    produced = sum(1 for _ in (PART for _ in range(count)))
    alone_s = time.perf_counter() - started
    return {
        "parts": parts,
        "event_stream_bytes": size,
        "through_server_parts_per_s": parts / whole_s,
        "generator_alone_parts_per_s": produced / alone_s,
        "per_part_overhead_us": (whole_s - alone_s) / parts * 1e6,
    }


def backpressure(url: str, counter: Path, pause_s: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request(
        "POST",
        "/endpoints/fast/invocations-response-stream",
        body=json.dumps({"counter": str(counter)}),
        headers={"Content-Type": "application/json"},
    )
    response = connection.getresponse()
    response.read1(1024)  # the first part is on its way: then the client stops reading
    time.sleep(pause_s)
    produced = int(counter.read_text())
    connection.close()
    return {
        "part_bytes": 65536,
        "client_paused_s": pause_s,
        "parts_produced_while_paused": produced,
        "bytes_produced_while_paused": produced * 65536,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and parts")
    args = parser.parse_args(argv)
    runs, tokens, count = (2, 60, 2000) if args.quick else (5, 200, 20000)
    with tempfile.TemporaryDirectory(prefix="moorage-streaming-bench-") as tmp:
        work = Path(tmp)
        counters = work / "counters"
        counters.mkdir()
        (work / "fast" / "code").mkdir(parents=True)
        (work / "fast" / "code" / "inference.py").write_text(FAST_HANDLER)
        registry = Registry()
        try:
            _, info = _serve(registry, work / "data", {"MOORAGE_SANDBOX_WRITABLE": str(counters)})
            url = str(info["url"])
            sm = _client("sagemaker", url)
            _deploy(sm, pack(work / "fast", work / "fast.tar.gz"), "fast", None)
            results = {
                "text_model": text_model(work, url, sm, runs, tokens),
                "parts_rate": parts_rate(url, count),
                "backpressure": backpressure(url, counters / "produced", 2.0),
            }
        finally:
            registry.stop_all()
    RESULT.write_text(json.dumps(results, indent=2) + "\n")
    text, rate, back = results["text_model"], results["parts_rate"], results["backpressure"]
    print(f"text model, {text['tokens']} tokens, median of {text['runs']}:")
    print(f"  first PayloadPart after   {text['first_part_ms_median']:8.1f} ms")
    print(f"  whole stream after        {text['whole_stream_ms_median']:8.1f} ms")
    print(f"  InvokeEndpoint (joined)   {text['invoke_endpoint_whole_ms_median']:8.1f} ms")
    print(f"{rate['parts']} parts of 16 bytes:")
    print(f"  through the server        {rate['through_server_parts_per_s']:10.0f} parts/s")
    print(f"  the generator alone       {rate['generator_alone_parts_per_s']:10.0f} parts/s")
    print(f"  overhead per part         {rate['per_part_overhead_us']:10.1f} µs")
    mib = back["bytes_produced_while_paused"] / 2**20
    print(
        f"backpressure: 64 KiB parts, client paused {back['client_paused_s']:g} s after one part: "
        f"the generator produced {back['parts_produced_while_paused']} parts ({mib:.1f} MiB)"
    )
    print(f"wrote {RESULT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
