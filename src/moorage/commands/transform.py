"""`moorage transform create|describe|list|stop`: batch transform jobs from the command line.

The calls are SageMaker's own (CreateTransformJob, ...); `describe` and `--wait` also show the
progress moorage adds to DescribeTransformJob (`MoorageProgress`), which boto3 does not parse, so it is
read from the raw answer. `--wait` prints a progress line until the job ends and exits 1 if it Failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from moorage.commands._output import (
    HelpFormatter,
    add_output_option,
    age,
    print_json,
    table,
    without_metadata,
)
from moorage.commands._session import add_server_option, connect, parse_environment, user_errors

if TYPE_CHECKING:
    from moorage.sdk import Connection

__all__ = ["register"]

EXIT_OK = 0
EXIT_FAILED = 1
_FINAL = ("Completed", "Failed", "Stopped")

EPILOG = """\
examples:
  moorage transform create nightly --model my-model --input s3://data/in/ --output s3://data/out \\
      --content-type text/csv --split-type Line --wait
  moorage transform describe nightly
  moorage transform list --output json | jq -r '.TransformJobSummaries[].TransformJobName'
  moorage transform stop nightly --wait
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "transform",
        help="batch transform jobs: create, describe, list, stop",
        description="Run SageMaker batch transform jobs on the server and watch their progress.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="start a job (CreateTransformJob)")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--model", required=True, help="the model (CreateModel) to transform with")
    create.add_argument("--input", required=True, help="s3:// prefix of the inputs (or of a manifest)")
    create.add_argument("--output", dest="output_path", required=True, help="s3:// prefix of the outputs")
    create.add_argument("--manifest", action="store_true", help="--input is a manifest file")
    create.add_argument("--content-type")
    create.add_argument("--accept")
    create.add_argument("--split-type", choices=("None", "Line", "RecordIO", "TFRecord"), default="None")
    create.add_argument("--compression", choices=("None", "Gzip"), default="None")
    create.add_argument("--strategy", choices=("MultiRecord", "SingleRecord"), default="MultiRecord")
    create.add_argument("--assemble-with", choices=("None", "Line"), default="None")
    create.add_argument("--instance-type", default="ml.m5.large")
    create.add_argument("--instance-count", type=int, default=1)
    create.add_argument("--max-concurrent", type=int, help="MaxConcurrentTransforms (per instance)")
    create.add_argument("--max-payload", type=int, help="MaxPayloadInMB (default 6)")
    create.add_argument("--env", action="append", metavar="KEY=VALUE", help="Environment for the handler")
    create.add_argument("--wait", action="store_true", help="show progress until the job ends")
    create.set_defaults(func=_create)

    describe = actions.add_parser("describe", help="show a job, with its progress")
    describe.add_argument("name", metavar="NAME")
    add_output_option(describe)
    describe.set_defaults(func=_describe)

    listing = actions.add_parser("list", help="list the jobs, newest first")
    add_output_option(listing, ("table", "json"))
    listing.set_defaults(func=_list)

    stop = actions.add_parser("stop", help="stop a job (StopTransformJob); published outputs stay")
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--wait", action="store_true", help="wait until it is Stopped")
    stop.set_defaults(func=_stop)

    for sub in (create, describe, listing, stop):
        add_server_option(sub)


def _create(args: argparse.Namespace) -> int:
    connection = connect(args)
    data_type = "ManifestFile" if args.manifest else "S3Prefix"
    transform_input: dict[str, Any] = {
        "DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": args.input}},
        "SplitType": args.split_type,
        "CompressionType": args.compression,
    }
    if args.content_type:
        transform_input["ContentType"] = args.content_type
    output: dict[str, Any] = {"S3OutputPath": args.output_path, "AssembleWith": args.assemble_with}
    if args.accept:
        output["Accept"] = args.accept
    request: dict[str, Any] = {
        "TransformJobName": args.name,
        "ModelName": args.model,
        "BatchStrategy": args.strategy,
        "TransformInput": transform_input,
        "TransformOutput": output,
        "TransformResources": {"InstanceType": args.instance_type, "InstanceCount": args.instance_count},
    }
    if args.max_concurrent is not None:
        request["MaxConcurrentTransforms"] = args.max_concurrent
    if args.max_payload is not None:
        request["MaxPayloadInMB"] = args.max_payload
    environment = parse_environment(args.env)
    if environment:
        request["Environment"] = environment
    with user_errors():
        arn = connection.call("CreateTransformJob", **request)["TransformJobArn"]
    print(arn)
    return _wait(connection, args.name) if args.wait else EXIT_OK


def _describe(args: argparse.Namespace) -> int:
    connection = connect(args)
    with user_errors():
        described = _described(connection, args.name)
    if args.output == "json":
        print_json(described)
        return EXIT_OK
    lines = [
        f"Job         {described['TransformJobName']}",
        f"ARN         {described['TransformJobArn']}",
        f"Status      {described['TransformJobStatus']}",
    ]
    if described.get("FailureReason"):
        lines.append(f"Failure     {described['FailureReason']}")
    source = described["TransformInput"]["DataSource"]["S3DataSource"]
    lines += [
        f"Model       {described['ModelName']}",
        f"Input       {source['S3Uri']} ({source['S3DataType']})",
        f"Output      {described.get('TransformOutput', {}).get('S3OutputPath', '-')}",
        f"Created     {age(described['CreationTime'])} ago",
    ]
    progress = described.get("MoorageProgress")
    if progress:
        lines.append(f"Progress    {_progress_line(progress)}")
    print("\n".join(lines))
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    connection = connect(args)
    summaries: list[dict[str, Any]] = []
    request: dict[str, Any] = {"MaxResults": 100}
    with user_errors():
        while True:
            page = connection.call("ListTransformJobs", **request)
            summaries += page["TransformJobSummaries"]
            if not page.get("NextToken"):
                break
            request["NextToken"] = page["NextToken"]
    if args.output == "json":
        print_json({"TransformJobSummaries": summaries})
        return EXIT_OK
    if not summaries:
        print(f"No transform jobs on {connection.url}. Start one with: moorage transform create")
        return EXIT_OK
    rows = [
        [str(job["TransformJobName"]), str(job["TransformJobStatus"]), age(job["CreationTime"])]
        for job in summaries
    ]
    print(table(["NAME", "STATUS", "AGE"], rows))
    return EXIT_OK


def _stop(args: argparse.Namespace) -> int:
    connection = connect(args)
    with user_errors():
        connection.call("StopTransformJob", TransformJobName=args.name)
    return _wait(connection, args.name) if args.wait else EXIT_OK


def _described(connection: Connection, name: str) -> dict[str, Any]:
    """DescribeTransformJob with moorage's MoorageProgress, which boto3's parser leaves out."""
    raw: dict[str, Any] = {}

    def keep(http_response: Any, **_: Any) -> None:
        with contextlib.suppress(ValueError):
            raw.update(json.loads(http_response.content))

    event = "after-call.sagemaker.DescribeTransformJob"
    connection.sagemaker.meta.events.register(event, keep)
    try:
        described = without_metadata(connection.call("DescribeTransformJob", TransformJobName=name))
    finally:
        connection.sagemaker.meta.events.unregister(event, keep)
    if "MoorageProgress" in raw:
        described["MoorageProgress"] = raw["MoorageProgress"]
    return described


def _progress_line(progress: dict[str, Any]) -> str:
    line = (
        f"objects {progress.get('ObjectsDone', 0)}/{progress.get('ObjectsTotal', 0)}"
        + (f" ({progress['ObjectsFailed']} failed)" if progress.get("ObjectsFailed") else "")
        + f", records {progress.get('RecordsDone', 0)}"
    )
    if "RecordsPerSecond" in progress:
        line += f", {progress['RecordsPerSecond']:g} records/s"
    if "EstimatedSecondsLeft" in progress:
        line += f", about {progress['EstimatedSecondsLeft']:.0f} s left"
    return line


def _wait(connection: Connection, name: str) -> int:
    """Poll once a second with a progress line on stderr; the exit code says how the job ended."""
    while True:
        with user_errors():
            described = _described(connection, name)
        status = described["TransformJobStatus"]
        progress = described.get("MoorageProgress") or {}
        sys.stderr.write(f"\r{status}: {_progress_line(progress)}\033[K")
        sys.stderr.flush()
        if status in _FINAL:
            sys.stderr.write("\n")
            if described.get("FailureReason"):
                print(f"{name}: {described['FailureReason']}")
            return EXIT_FAILED if status == "Failed" else EXIT_OK
        time.sleep(1.0)
