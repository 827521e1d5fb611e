"""`moorage queue ENDPOINT`: an async endpoint's queue now (backlog, oldest request's age, in flight).

SageMaker has no API for this: it publishes the figures to CloudWatch. moorage publishes the same
gauges on `/metrics` (docs/async.md), so the command reads them there, signed like any other call (a
server with `--auth sigv4` checks it), after DescribeEndpoint has said the endpoint exists and is
asynchronous. `--output json` prints the figures under their metric names.
"""

from __future__ import annotations

import argparse
import re
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from moorage.commands._output import HelpFormatter, add_output_option, print_json, without_metadata
from moorage.commands._session import add_server_option, connect, user_errors
from moorage.errors import ConfigError, MoorageError

if TYPE_CHECKING:
    from moorage.sdk import Connection

__all__ = ["parse_gauges", "register"]

EXIT_OK = 0
_TIMEOUT_S = 10.0
# The gauges shown, by their /metrics name, with the JSON key each is printed under.
GAUGES = {
    "sagemaker_ApproximateBacklogSize": "ApproximateBacklogSize",
    "sagemaker_ApproximateBacklogSizePerInstance": "ApproximateBacklogSizePerInstance",
    "sagemaker_ApproximateAgeOfOldestRequest": "ApproximateAgeOfOldestRequest",
    "sagemaker_HasBacklogWithoutCapacity": "HasBacklogWithoutCapacity",
    "moorage_async_requests_in_flight": "InFlight",
}
_LINE = re.compile(r'^(?P<name>\w+)\{EndpointName="(?P<endpoint>(?:[^"\\]|\\.)*)"\} (?P<value>\S+)$')

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
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None or match["name"] not in GAUGES:
            continue
        name = match["endpoint"].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        if name == endpoint:
            found[GAUGES[match["name"]]] = float(match["value"])
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
    gauges = parse_gauges(_metrics(connection), args.endpoint)
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


def _metrics(connection: Connection) -> str:
    """GET /metrics, signed with the connection's credentials (SigV4, as the SDK signs its calls)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    url = f"{connection.url}/metrics"
    request = AWSRequest(method="GET", url=url)
    credentials: Any = connection.session.get_credentials()
    if credentials is not None:
        SigV4Auth(credentials.get_frozen_credentials(), "sagemaker", connection.region).add_auth(request)
    headers = {key: str(value) for key, value in request.headers.items()}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S
        ) as answer:
            return str(answer.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise MoorageError(f"the server refused to show its metrics ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise MoorageError(f"cannot read {url}: {exc}") from None
