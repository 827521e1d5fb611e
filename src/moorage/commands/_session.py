"""What every command that talks to a server shares: which server, how it is reached, and what its
errors mean to someone at a shell.

Commands reach the server only through moorage's SDK (`moorage.sdk.Connection`: the same boto3
clients a user would build), found by --url, else MOORAGE_URL, else AWS_ENDPOINT_URL_SAGEMAKER, else
http://127.0.0.1:8080 (what `moorage logs` does too). Errors are turned here into messages that say
what to do next; cli.py then picks the exit code (1 for these, 2 for a bad argument).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from moorage.errors import ConfigError, MoorageError

if TYPE_CHECKING:
    from moorage.sdk import Connection, ServiceError

__all__ = [
    "add_server_option",
    "connect",
    "endpoint_missing",
    "no_such_endpoint",
    "parse_environment",
    "user_errors",
]

_CHATTY_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


def add_server_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="the moorage server (default: MOORAGE_URL, else AWS_ENDPOINT_URL_SAGEMAKER, "
        "else http://127.0.0.1:8080)",
    )


def connect(args: argparse.Namespace) -> Connection:
    """A connection to the server the user pointed at, checked to answer before any work is done."""
    from moorage.sdk import Connection, ServerUnreachable
    from moorage.sdk.connection import resolve_url

    if not args.verbose:  # botocore announces where it found credentials: not the user's business here
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.url:
        url, source = args.url.rstrip("/"), "--url"
    else:
        url, source = resolve_url(None, os.environ)
    connection = Connection(url)
    try:
        connection.server_info()
    except ServerUnreachable:
        raise MoorageError(
            f"cannot reach a moorage server at {url} (from {source}). Is `moorage serve` running there? "
            "Point to another server with --url URL or MOORAGE_URL=URL."
        ) from None
    return connection


def no_such_endpoint(name: str) -> MoorageError:
    return MoorageError(f"endpoint {name!r} does not exist; `moorage endpoints` lists them")


def endpoint_missing(error: ServiceError) -> bool:
    """The control plane's and the runtime's "no such endpoint" (spec §3.5, §4.2), told apart from a
    missing endpoint *configuration*, whose message starts the same way."""
    message = error.response.get("Error", {}).get("Message", "")
    lowered = str(message).lower()
    if error.error_code == "ValidationException":
        return lowered.startswith('could not find endpoint "')
    if error.error_code == "ValidationError":
        return lowered.startswith("endpoint ") and lowered.endswith("not found.")
    return False


@contextlib.contextmanager
def user_errors(endpoint: str | None = None) -> Iterator[None]:
    """botocore's and the server's refusals, as messages a user can act on."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    from moorage.sdk import ServiceError

    try:
        yield
    except ServiceError as exc:
        if endpoint is not None and endpoint_missing(exc):
            raise no_such_endpoint(endpoint) from None
        raise
    except ClientError as exc:  # a call made outside the SDK's translation (an S3 one, say)
        error = exc.response.get("Error", {})
        raise MoorageError(f"{error.get('Message') or error.get('Code')} ({error.get('Code')})") from None
    except ParamValidationError as exc:  # botocore checks names and values before sending anything
        raise ConfigError(str(exc).replace("\n", " ")) from None
    except (BotoCoreError, Boto3Error) as exc:  # Boto3Error: S3 transfers wrap failures in their own
        raise MoorageError(str(exc)) from None


def parse_environment(pairs: Sequence[str] | None) -> dict[str, str]:
    """--env K=V ... → {K: V}; a later K wins."""
    environment: dict[str, str] = {}
    for pair in pairs or ():
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"--env {pair!r} is not KEY=VALUE")
        environment[key.strip()] = value
    return environment
