"""`moorage capture ENDPOINT`: the endpoint's most recent captured records (data capture).

The destination comes from DescribeEndpoint's DataCaptureConfig; the files are read from the S3 the
server writes them to (its embedded store, or the S3 it was pointed at). Keys sort by time
(`<dest>/<endpoint>/<variant>/yyyy/mm/dd/hh/mm-ss-mmm-<uuid>.jsonl`), so the newest files are read
first. Records still in the server's buffer (MOORAGE_CAPTURE_FLUSH) are not shown yet.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import TYPE_CHECKING, Any

from moorage.commands._output import HelpFormatter, add_output_option
from moorage.commands._session import add_server_option, connect, user_errors
from moorage.errors import MoorageError

if TYPE_CHECKING:
    from moorage.sdk import Connection

__all__ = ["register"]

EXIT_OK = 0
_SHOWN_CHARS = 60

EPILOG = """\
examples:
  moorage capture my-endpoint
  moorage capture my-endpoint --last 100 --output json > captured.jsonl
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "capture",
        help="print an endpoint's most recent captured requests and responses",
        description=(
            "Print the most recent records that data capture (DataCaptureConfig) wrote for ENDPOINT, "
            "oldest first: one line each, or the records themselves with --output json."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("endpoint", metavar="ENDPOINT")
    parser.add_argument("--last", type=int, default=20, metavar="N", help="how many records (default 20)")
    add_server_option(parser)
    add_output_option(parser)
    parser.set_defaults(func=_capture)


def _capture(args: argparse.Namespace) -> int:
    connection = connect(args)
    endpoint: str = args.endpoint
    with user_errors(endpoint):
        described = connection.call("DescribeEndpoint", EndpointName=endpoint)
        summary = described.get("DataCaptureConfig")
        if not summary:
            raise MoorageError(
                f"endpoint {endpoint!r} has no DataCaptureConfig: deploy it with one (in the SageMaker SDK: "
                "data_capture_config=DataCaptureConfig(...)) or predictor.enable_data_capture()"
            )
        records = _recent(connection, str(summary["DestinationS3Uri"]), endpoint, max(args.last, 1))
    if args.output == "json":
        for record in records:
            sys.stdout.write(json.dumps(record) + "\n")
        return EXIT_OK
    if not records:
        print(f"No captured records for {endpoint} yet (capture is {summary['CaptureStatus']}).")
    for record in records:
        print(_line(record))
    return EXIT_OK


def _recent(connection: Connection, destination: str, endpoint: str, wanted: int) -> list[dict[str, Any]]:
    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    info = connection.server_info()
    s3 = connection.s3(info.s3_url if info is not None and info.s3_url else None)
    under = "/".join(part for part in (prefix.strip("/"), endpoint) if part) + "/"
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=under):
        keys += [str(item["Key"]) for item in page.get("Contents", []) if str(item["Key"]).endswith(".jsonl")]
    # Newest first, across variants: by the part after the variant (yyyy/mm/dd/hh/mm-ss-mmm-uuid).
    keys.sort(key=lambda key: key[len(under) :].split("/", 1)[-1], reverse=True)
    records: list[dict[str, Any]] = []
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        found = [json.loads(line) for line in body.splitlines() if line.strip()]
        records = found + records
        if len(records) >= wanted:
            break
    records.sort(key=lambda record: str(record.get("eventMetadata", {}).get("inferenceTime", "")))
    return records[-wanted:]


def _line(record: dict[str, Any]) -> str:
    metadata = record.get("eventMetadata", {})
    data = record.get("captureData", {})
    parts = [str(metadata.get("inferenceTime", "")), str(metadata.get("eventId", ""))]
    if "inferenceId" in metadata:
        parts.append(f"inferenceId={metadata['inferenceId']}")
    for side, arrow in (("endpointInput", "in"), ("endpointOutput", "out")):
        if side in data:
            parts.append(f"{arrow}={_shown(data[side])}")
    return "  ".join(parts)


def _shown(side: dict[str, Any]) -> str:
    """The data as text when it is CSV or JSON, else the decoded size; cut at _SHOWN_CHARS."""
    if side.get("encoding") == "BASE64":
        size = len(base64.b64decode(str(side.get("data", ""))))
        return f"<{size} bytes {side.get('observedContentType', 'unknown type')}>"
    text = str(side.get("data", "")).replace("\n", "\\n")
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"
