"""One captured invocation and its JSON Lines record in SageMaker's format (spec §c.5, [S10]).

A record is built when its file is written (on the writer's thread), not on the invoke path: the
request only keeps references to the bodies it already holds.
"""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass
from typing import Any

from moorage.capture.config import CaptureConfig

__all__ = ["Captured", "encode_data", "hour_prefix", "record_line"]

# What a record costs in the buffer beyond its bodies (keys, metadata), for the byte bounds.
RECORD_OVERHEAD_BYTES = 400


@dataclass(frozen=True)
class Captured:
    endpoint: str
    variant: str
    config: CaptureConfig
    event_id: str
    at: float  # epoch seconds, when the answer was ready
    inference_id: str | None
    request_body: bytes
    request_type: str | None
    response_body: bytes
    response_type: str | None

    @property
    def size(self) -> int:
        kept = (len(self.request_body) if self.config.capture_input else 0) + (
            len(self.response_body) if self.config.capture_output else 0
        )
        return kept + RECORD_OVERHEAD_BYTES


def encode_data(body: bytes, content_type: str | None, config: CaptureConfig) -> tuple[str, str]:
    """(data, encoding): text for the CSV and JSON content types (matched on the media type, so
    `text/csv; charset=utf-8` is CSV), base64 for any other type and for a body that is not UTF-8."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    encoding = "CSV" if media in config.csv_types else "JSON" if media in config.json_types else "BASE64"
    if encoding != "BASE64":
        try:
            return body.decode("utf-8"), encoding
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), "BASE64"


def _side(body: bytes, content_type: str | None, mode: str, config: CaptureConfig) -> dict[str, str]:
    data, encoding = encode_data(body, content_type, config)
    side = {"observedContentType": content_type} if content_type is not None else {}
    return {**side, "mode": mode, "data": data, "encoding": encoding}


def _timestamp(at: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(at, datetime.UTC)


def record_line(item: Captured) -> bytes:
    """The record as one line: captureData (endpointInput / endpointOutput as configured),
    eventMetadata (eventId, inferenceTime, inferenceId when the caller gave one), eventVersion "0"."""
    config = item.config
    data: dict[str, Any] = {}
    if config.capture_input:
        data["endpointInput"] = _side(item.request_body, item.request_type, "INPUT", config)
    if config.capture_output:
        data["endpointOutput"] = _side(item.response_body, item.response_type, "OUTPUT", config)
    metadata = {
        "eventId": item.event_id,
        "inferenceTime": _timestamp(item.at).strftime("%Y-%m-%dT%H:%M:%SZ"),  # as the documented sample
    }
    if item.inference_id is not None:
        metadata["inferenceId"] = item.inference_id
    record = {"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def hour_prefix(item: Captured) -> str:
    """`<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh`: where the record's file goes (UTC hour)."""
    hour = _timestamp(item.at).strftime("%Y/%m/%d/%H")
    parts = [item.config.prefix] if item.config.prefix else []
    return "/".join([*parts, item.endpoint, item.variant, hour])
