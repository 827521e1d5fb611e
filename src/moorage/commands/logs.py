"""`moorage logs ENDPOINT`: print an endpoint's logs, optionally following them, like `aws logs tail`.

`moorage logs --transform-job NAME` prints a batch transform job's instead: its streams `NAME/<instance>`
of the group /aws/sagemaker/TransformJobs (the workers' output and the job's `[sagemaker logs]` lines).

It talks to the server only through the CloudWatch Logs API, with an unchanged boto3 `logs` client,
so it reads a remote server as well as a local one and exercises the same path the aws CLI uses.
Each stream is read forward with GetLogEvents (its forward token is CloudWatch's way to say "caught
up"), and the streams are merged by time stamp, so output from several instances interleaves in order.
"""

from __future__ import annotations

import argparse
import datetime
import heapq
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from moorage.errors import ConfigError, MoorageError
from moorage.logs.layout import GROUP_PREFIX, TRANSFORM_GROUP

__all__ = ["check_transform_job", "find_group", "parse_since", "register", "server_url"]

EXIT_OK = 0
DEFAULT_URL = "http://127.0.0.1:8080"
POLL_INTERVAL_S = 1.0

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "logs",
        help="print an endpoint's or a transform job's logs (its instances' output), optionally following",
        description=(
            "Print the logs of ENDPOINT's instances, one '<variant>/<instance-id> <line>' per line, "
            "interleaved by time, read through the server's CloudWatch Logs API "
            f"(log group {GROUP_PREFIX}ENDPOINT). Works for deleted endpoints while their files remain. "
            f"With --transform-job NAME, the job's streams NAME/<instance-id> of {TRANSFORM_GROUP}."
        ),
    )
    parser.add_argument("endpoint", metavar="ENDPOINT", nargs="?")
    parser.add_argument("--transform-job", metavar="NAME", help="a batch transform job's logs instead")
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines (every second) until Ctrl+C"
    )
    parser.add_argument("--since", help="only lines from this long ago (30s, 10m, 2h, 1d) or this ISO time")
    parser.add_argument("--variant", help="only this production variant's instances")
    parser.add_argument(
        "--url",
        help="the moorage server (default: MOORAGE_URL, else AWS_ENDPOINT_URL_SAGEMAKER, else "
        f"{DEFAULT_URL})",
    )
    parser.set_defaults(func=_logs)


def server_url(flag: str | None, environ: Mapping[str, str]) -> str:
    return flag or environ.get("MOORAGE_URL") or environ.get("AWS_ENDPOINT_URL_SAGEMAKER") or DEFAULT_URL


def parse_since(text: str | None, now: float) -> int | None:
    """--since as ms since the epoch: a duration back from `now` (seconds), or an ISO 8601 time."""
    if text is None:
        return None
    match = _DURATION.fullmatch(text.strip())
    if match:
        return int((now - float(match[1]) * _UNIT_S[match[2]]) * 1000)
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is neither a duration (30s, 10m, 2h, 1d, 1w) nor an ISO 8601 time"
        ) from None
    return int(moment.timestamp() * 1000)  # a naive time is local time, as the logs show it


def _client(url: str) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.Session()
    # The server may not check signatures; botocore still insists on some credentials and a region.
    keys = {} if session.get_credentials() else {"aws_access_key_id": "moorage", "aws_secret_access_key": "-"}
    return session.client(
        "logs",
        endpoint_url=url,
        region_name=session.region_name or "us-east-1",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60),
        **keys,
    )


def find_group(client: Any, endpoint: str) -> str:
    """The endpoint's log group; endpoint names are case-insensitive, so a unique other-case match counts."""
    wanted = GROUP_PREFIX + endpoint
    similar = []
    for page in client.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=GROUP_PREFIX):
        for group in page["logGroups"]:
            if group["logGroupName"] == wanted:
                return wanted
            if group["logGroupName"].lower() == wanted.lower():
                similar.append(group["logGroupName"])
    if len(similar) == 1:
        return str(similar[0])
    raise MoorageError(
        f"Endpoint {endpoint!r} has no logs on this server: none of its instances ever ran here "
        "(or its log files were removed). Check the name with `aws sagemaker list-endpoints`."
    )


def check_transform_job(client: Any, job: str) -> None:
    """Fail with a clear message unless the job (named as it was created) has log streams."""
    try:
        page = client.describe_log_streams(
            logGroupName=TRANSFORM_GROUP, logStreamNamePrefix=f"{job}/", limit=1
        )
    except client.exceptions.ResourceNotFoundException:
        page = {"logStreams": []}
    if not page["logStreams"]:
        raise MoorageError(
            f"Transform job {job!r} has no logs on this server: none of its instances ever ran here "
            "(or its log files were removed). Check the name with `aws sagemaker list-transform-jobs`."
        )


class _Tail:
    """Per-stream forward tokens: each poll returns what every stream gained since the last one."""

    def __init__(self, client: Any, group: str, prefix: str | None, since: int | None) -> None:
        self.client = client
        self.group = group
        self.prefix = prefix
        self.since = since
        self.tokens: dict[str, str] = {}

    def _streams(self) -> list[str]:
        kwargs: dict[str, Any] = {"logGroupName": self.group}
        if self.prefix:
            kwargs["logStreamNamePrefix"] = self.prefix
        pages = self.client.get_paginator("describe_log_streams").paginate(**kwargs)
        return [stream["logStreamName"] for page in pages for stream in page["logStreams"]]

    def _events(self, stream: str) -> Iterator[tuple[int, str, str]]:
        token = self.tokens.get(stream)
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": self.group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                kwargs["nextToken"] = token
            if self.since is not None:
                kwargs["startTime"] = self.since
            try:
                page = self.client.get_log_events(**kwargs)
            except self.client.exceptions.ResourceNotFoundException:
                self.tokens.pop(stream, None)  # its files were removed since it was listed
                return
            for event in page["events"]:
                yield event["timestamp"], stream, event["message"]
            if page["nextForwardToken"] == token:  # CloudWatch's "nothing more for now"
                return
            token = self.tokens[stream] = page["nextForwardToken"]

    def poll(self) -> Iterator[tuple[int, str, str]]:
        """New events of every stream, merged by time stamp (each stream keeps its own order)."""
        return heapq.merge(*(self._events(stream) for stream in self._streams()), key=lambda e: e[0])


def _open_tail(client: Any, args: argparse.Namespace, since: int | None) -> _Tail:
    if (args.endpoint is None) == (args.transform_job is None):
        raise ConfigError("name either an ENDPOINT or --transform-job NAME (one of the two)")
    if args.transform_job is not None:
        if args.variant:
            raise ConfigError("--variant applies to endpoints; a transform job has one stream per instance")
        check_transform_job(client, args.transform_job)
        return _Tail(client, TRANSFORM_GROUP, f"{args.transform_job}/", since)
    prefix = f"{args.variant}/" if args.variant else None
    return _Tail(client, find_group(client, args.endpoint), prefix, since)


def _logs(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    if not args.verbose:  # botocore announces where it found credentials; not the user's business here
        logging.getLogger("botocore").setLevel(logging.WARNING)
    url = server_url(args.url, os.environ)
    since = parse_since(args.since, time.time())
    client = _client(url)
    try:
        tail = _open_tail(client, args, since)
        _print(tail.poll())
        while args.follow:
            time.sleep(POLL_INTERVAL_S)
            _print(tail.poll())
    except KeyboardInterrupt:
        if not args.follow:
            raise
    except EndpointConnectionError:
        raise MoorageError(
            f"Cannot reach a moorage server at {url}. Is `moorage serve` running there? "
            "Point to it with --url or MOORAGE_URL."
        ) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise MoorageError(f"{url} answered {error.get('Code')}: {error.get('Message')}") from None
    except BotoCoreError as exc:
        raise MoorageError(f"Reading the logs from {url} failed: {exc}") from None
    except BrokenPipeError:  # `moorage logs ep | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _print(events: Iterator[tuple[int, str, str]]) -> None:
    write = sys.stdout.write
    for _, stream, message in events:
        write(f"{stream} {message}\n")
    sys.stdout.flush()
