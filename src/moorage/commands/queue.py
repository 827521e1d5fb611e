"""`moorage queue ENDPOINT`: an async endpoint's queue now (backlog, oldest request's age, in flight).

SageMaker has no API for this: it publishes the figures to CloudWatch. moorage publishes the same
gauges on `/metrics` (docs/async.md), so the command reads them there, signed like any other call (a
server with `--auth sigv4` checks it), after DescribeEndpoint has said the endpoint exists and is
asynchronous. `--output json` prints the figures under their metric names.
"""

from __future__ import annotations

import argparse

from moorage.commands._metrics import read_metrics, samples
from moorage.commands._output import HelpFormatter, add_output_option, print_json, without_metadata
from moorage.commands._session import add_server_option, connect, user_errors
from moorage.errors import ConfigError

__all__ = ["parse_gauges", "register"]

EXIT_OK = 0
# The gauges shown, by their /metrics name, with the JSON key each is printed under.
GAUGES = {
    "sagemaker_ApproximateBacklogSize": "ApproximateBacklogSize",
    "sagemaker_ApproximateBacklogSizePerInstance": "ApproximateBacklogSizePerInstance",
    "sagemaker_ApproximateAgeOfOldestRequest": "ApproximateAgeOfOldestRequest",
    "sagemaker_HasBacklogWithoutCapacity": "HasBacklogWithoutCapacity",
    "moorage_async_requests_in_flight": "InFlight",
}

EPILOG = """\
examples:
  moorage queue my-async-endpoint
  moorage queue my-async-endpoint --output json | jq .ApproximateBacklogSize

BACKLOG counts requests queued or running (SageMaker's ApproximateBacklogSize); IN FLIGHT those
running now; OLDEST is the age of the oldest of them. An endpoint with nothing queued shows zeros.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "queue",
        help="show an async endpoint's queue: backlog, oldest request's age, in flight",
        description="Show ENDPOINT's async queue now: requests queued or running, the oldest one's age, "
        "those running, and whether any wait without an instance to run them.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("endpoint", metavar="ENDPOINT")
    add_server_option(parser)
    add_output_option(parser)
    parser.set_defaults(func=_queue)


def parse_gauges(text: str, endpoint: str) -> dict[str, float]:
    """The GAUGES of `endpoint` in Prometheus text, under their JSON keys; absent ones are 0."""
    found = dict.fromkeys(GAUGES.values(), 0.0)
    for name, labels, value in samples(text, GAUGES):
        if labels == {"EndpointName": endpoint}:
            found[GAUGES[name]] = value
    return found


def _queue(args: argparse.Namespace) -> int:
    connection = connect(args)
    with user_errors(args.endpoint):
        described = without_metadata(connection.call("DescribeEndpoint", EndpointName=args.endpoint))
    if "AsyncInferenceConfig" not in described:
        raise ConfigError(
            f"{args.endpoint} is a real-time endpoint: it has no queue. Only endpoints whose config has "
            "AsyncInferenceConfig queue requests (docs/async.md)."
        )
    gauges = parse_gauges(read_metrics(connection), args.endpoint)
    if args.output == "json":
        print_json({"EndpointName": args.endpoint, "EndpointStatus": described["EndpointStatus"], **gauges})
        return EXIT_OK
    backlog, in_flight = int(gauges["ApproximateBacklogSize"]), int(gauges["InFlight"])
    lines = [
        f"Endpoint     {args.endpoint} ({described['EndpointStatus']})",
        f"Backlog      {backlog} ({backlog - in_flight} queued, {in_flight} in flight)",
        f"Oldest       {gauges['ApproximateAgeOfOldestRequest']:.1f} s",
        f"Per instance {gauges['ApproximateBacklogSizePerInstance']:g}",
    ]
    if gauges["HasBacklogWithoutCapacity"]:
        lines.append("Waiting      requests are queued and no instance can take them")
    print("\n".join(lines))
    return EXIT_OK
