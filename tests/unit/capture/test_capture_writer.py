"""The capture writer with moorage's own store on disk: files per endpoint, variant and hour, the
size threshold, and drops (a full buffer, a store that refuses the write) counted, never raised."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from moorage.capture.config import CaptureConfig
from moorage.capture.metrics import CaptureMetrics
from moorage.capture.records import RECORD_OVERHEAD_BYTES, Captured, record_line
from moorage.capture.writer import CaptureWriter
from moorage.s3.storage import Store
from moorage.s3io import EmbeddedStorage

CONFIG = CaptureConfig.from_json(
    {
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://bucket/cap",
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
)


def item(index: int, variant: str = "A", at: float = 1_700_000_000.0, body: bytes = b"1,2") -> Captured:
    return Captured("ep", variant, CONFIG, f"id-{index}", at, None, body, "text/csv", b"", None)


def files(root: Path) -> dict[str, list[str]]:
    storage = EmbeddedStorage(root)
    found = {}
    for listing in storage.list_prefix("bucket", "cap/", 1000):
        body = b"".join(storage.read("bucket", listing.key)).decode()
        found[listing.key] = [json.loads(line)["eventMetadata"]["eventId"] for line in body.splitlines()]
    return found


def run_writer(root: Path, items: list[Captured], *, file_bytes: int, buffer_bytes: int) -> CaptureMetrics:
    metrics = CaptureMetrics()

    async def main() -> None:
        with ThreadPoolExecutor(1) as executor:
            writer = CaptureWriter(
                EmbeddedStorage(root),
                metrics,
                executor,
                flush_s=3600.0,
                file_bytes=file_bytes,
                buffer_bytes=buffer_bytes,
            )
            writer.start()
            for captured in items:
                writer.offer(captured)
            await writer.close(grace_s=30.0)  # writes what waits

    asyncio.run(main())
    return metrics


def test_one_file_per_variant_and_hour_split_at_the_size(tmp_path: Path) -> None:
    Store.open(tmp_path).create_bucket("bucket", "us-east-1")
    items = [item(i) for i in range(6)] + [item(6, variant="B"), item(7, at=1_700_000_000.0 + 3600)]
    two_lines = 2 * len(record_line(item(0))) + 10  # a file holds two records at most
    metrics = run_writer(tmp_path, items, file_bytes=two_lines, buffer_bytes=1 << 20)
    found = files(tmp_path)
    by_prefix: dict[str, list[str]] = {}
    for key, ids in sorted(found.items()):
        by_prefix.setdefault(key.rsplit("/", 1)[0], []).extend(ids)
    assert by_prefix == {
        "cap/ep/A/2023/11/14/22": [f"id-{i}" for i in range(6)],
        "cap/ep/A/2023/11/14/23": ["id-7"],
        "cap/ep/B/2023/11/14/22": ["id-6"],
    }
    assert len(found) == 5  # A's first hour: six records in three files
    assert metrics.dropped_total() == 0
    assert "moorage_capture_records_total" in "\n".join(metrics.render())


def test_a_full_buffer_drops_and_counts(tmp_path: Path) -> None:
    Store.open(tmp_path).create_bucket("bucket", "us-east-1")
    size = item(0).size
    assert size == len(b"1,2") + RECORD_OVERHEAD_BYTES
    metrics = run_writer(tmp_path, [item(i) for i in range(5)], file_bytes=1 << 20, buffer_bytes=3 * size)
    assert sorted(id_ for ids in files(tmp_path).values() for id_ in ids) == ["id-0", "id-1", "id-2"]
    assert 'moorage_capture_dropped_total{EndpointName="ep",VariantName="A",reason="buffer_full"} 2' in (
        metrics.render()
    )


def test_a_store_that_refuses_the_write_drops_and_counts(tmp_path: Path) -> None:
    Store.open(tmp_path)  # no bucket: the embedded store refuses each file
    metrics = run_writer(tmp_path, [item(i) for i in range(3)], file_bytes=1 << 20, buffer_bytes=1 << 20)
    assert 'moorage_capture_dropped_total{EndpointName="ep",VariantName="A",reason="store_error"} 3' in (
        metrics.render()
    )
