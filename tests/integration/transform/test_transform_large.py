"""Large inputs and large requests: a big Line input streams through a transform job without the
server's memory growing with it, and MaxPayloadInMB goes up to SageMaker's 100.

The input (INPUT_BYTES, fixed-width lines) goes up by boto3's managed (multipart) upload; the job
splits it with MultiRecord into MaxPayloadInMB-sized requests to a handler that only counts the
records it gets. The output holds one count per request, and they add up to the input's records.
Memory is the server process's own peak (VmHWM in /proc/<pid>/status, what the kernel recorded,
upload included), compared with its resident size before the input existed; that test runs first.

Real-time bodies are capped at 6 MiB and a worker frame at 64 MiB; a batch request above that travels
to the worker as a file, so a MaxPayloadInMB=100 request of 80 MiB reaches the handler whole (no
TS_MAX_REQUEST_SIZE to set by hand, as SageMaker's own stack needs).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.memory import memory_kib
from support.servers import RunningServer

from .conftest import create_model, pack_handler, read, stage, start_job, wait_for_job

pytestmark = pytest.mark.slow

# The input's size: the issue asks for 1 GB (bench/transform_figures.py measures that); a test of a
# quarter of it shows the same thing (the peak does not follow the input) in a quarter of the time.
INPUT_BYTES = 256 * 1024 * 1024
LINE = b"%015d,0.25,0.50,0.75,1.00,1.25,1.50,1.75,2.00,2.25,2.50,2.75,3.00,3.25,3.50,3.75,4.00\n"
LINE_BYTES = len(LINE % 0)
# What the server may add to its resident size while it receives and transforms the input: chunks,
# a few requests in flight (MaxPayloadInMB=6 each), the upload's parts; not the input.
PEAK_GROWTH_BOUND = 160 * 1024 * 1024

RECORD = b"x" * (1024 * 1024 - 1) + b"\n"  # 1 MiB records
RECORDS = 80

COUNT_HANDLER = textwrap.dedent("""
    def model_fn(model_dir):
        return None


    def transform_fn(model, data, content_type, accept):
        body = data.encode() if isinstance(data, str) else bytes(data)
        if content_type == "application/octet-stream":  # the large request: its size and its x's
            return f"{len(body)},{body.count(b'x')}\\n", "text/plain"
        return str(body.count(b"\\n")) + "\\n", "text/plain"
""")


@pytest.fixture(scope="module")
def count_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(tmp_path_factory.mktemp("count"), COUNT_HANDLER)


def write_input(path: Path) -> int:
    """INPUT_BYTES of numbered lines at `path`, written a block at a time; returns the line count."""
    lines = INPUT_BYTES // LINE_BYTES
    per_block = 8192
    with path.open("wb") as handle:
        for start in range(0, lines, per_block):
            handle.write(b"".join(LINE % n for n in range(start, min(start + per_block, lines))))
    return lines


@pytest.fixture(scope="module")
def large_input(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    path = tmp_path_factory.mktemp("large") / "rows.csv"
    lines = write_input(path)
    yield path, lines
    path.unlink()


def test_a_large_line_input_leaves_the_servers_peak_memory_bounded(
    server: RunningServer, count_tar: Path, large_input: tuple[Path, int]
) -> None:
    path, lines = large_input
    pid = server.process.pid
    sm, s3 = server.client("sagemaker"), server.client("s3")
    bucket = stage(s3, {})
    model = create_model(sm, count_tar)
    before = memory_kib(pid)["VmRSS"]

    s3.upload_file(str(path), bucket, "in/rows.csv")  # multipart: 8 MiB parts
    name = start_job(sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/out", content_type="text/csv")
    described = wait_for_job(sm, name)

    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    counts = [int(line) for line in read(s3, bucket, "out/rows.csv.out").splitlines()]
    per_request = (6 * 1024 * 1024) // LINE_BYTES  # as many whole lines as MaxPayloadInMB=6 holds
    assert counts == [per_request] * (lines // per_request) + [lines % per_request]
    peak = memory_kib(pid)["VmHWM"]
    growth = (peak - before) * 1024
    assert growth < PEAK_GROWTH_BOUND, f"the server's peak grew by {growth / 2**20:.0f} MiB"
    print(f"{INPUT_BYTES >> 20} MiB input: VmRSS before {before >> 10} MiB, VmHWM {peak >> 10} MiB")


def test_max_payload_100_sends_an_80_mib_request_whole(server: RunningServer, count_tar: Path) -> None:
    sm, s3 = server.client("sagemaker"), server.client("s3")
    bucket = stage(s3, {"in/big.txt": RECORD * RECORDS})
    model = create_model(sm, count_tar)
    name = start_job(
        sm,
        model,
        f"s3://{bucket}/in/",
        f"s3://{bucket}/out",
        content_type="application/octet-stream",
        MaxPayloadInMB=100,
        MaxConcurrentTransforms=1,
    )
    described = wait_for_job(sm, name)

    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert described["MaxPayloadInMB"] == 100
    # One request carried every record: its body was the whole 80 MiB input.
    assert read(s3, bucket, "out/big.txt.out") == f"{len(RECORD) * RECORDS},{(len(RECORD) - 1) * RECORDS}\n"
