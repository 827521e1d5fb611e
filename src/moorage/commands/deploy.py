"""`moorage deploy MODEL_DATA --name ENDPOINT`: the seed's `PyTorchModel(...).deploy(...)` from a shell.

It goes through `moorage.PyTorchModel`, as a notebook would: the model, an endpoint config named
after the endpoint, the endpoint (spec §6.2). A local model.tar.gz is first repacked with the code
and uploaded with a byte counter (`_staging`); then the command waits for InService, showing the
status, unless --no-wait. An endpoint that fails to start ends the command with its FailureReason.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moorage.commands._output import HelpFormatter, add_output_option, print_json, without_metadata
from moorage.commands._progress import Reporter, add_progress_option, instances, wait_settled
from moorage.commands._session import add_server_option, connect, parse_environment, user_errors
from moorage.errors import ConfigError, MoorageError

if TYPE_CHECKING:
    from moorage.sdk import Connection

__all__ = ["add_code_options", "deployment_failed", "how_to_invoke", "register"]

EXIT_OK = 0
DEFAULT_INSTANCE_TYPE = "ml.m5.large"

EPILOG = """\
examples:
  moorage deploy model.tar.gz --name my-endpoint
  moorage deploy s3://pytorch-sagemaker-example/model.tar.gz --name my-endpoint \\
      --entry-point inference.py --instance-type ml.t2.medium --instance-count 2
  moorage deploy model.tar.gz --name my-endpoint --env SAGEMAKER_MODEL_SERVER_WORKERS=1 --no-wait

MODEL_DATA is a local file (uploaded to the server's S3 store), s3://bucket/key or https://...
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "deploy",
        help="create an endpoint from a model.tar.gz, as PyTorchModel(...).deploy(...) does",
        description=(
            "Create a model from MODEL_DATA, an endpoint config and the endpoint ENDPOINT, as "
            "SageMaker's PyTorchModel(...).deploy(...) does, and wait until it is InService. With "
            "--entry-point or --source-dir the code is repacked into code/ of a new model.tar.gz first."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "model_data", metavar="MODEL_DATA", help="model.tar.gz: a path, s3:// or https:// URL"
    )
    parser.add_argument("--name", required=True, metavar="ENDPOINT", help="the endpoint's name")
    add_code_options(parser)
    parser.add_argument(
        "--instance-type",
        default=DEFAULT_INSTANCE_TYPE,
        metavar="TYPE",
        help=f"the instance type to record (default {DEFAULT_INSTANCE_TYPE}); moorage runs the model locally",
    )
    parser.add_argument(
        "--instance-count",
        type=int,
        default=1,
        metavar="N",
        help="copies of the model to run (default 1)",
    )
    parser.add_argument("--no-wait", action="store_true", help="return once the endpoint is Creating")
    add_server_option(parser)
    add_progress_option(parser)
    add_output_option(parser)
    parser.set_defaults(func=_deploy)


def add_code_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--entry-point",
        type=Path,
        metavar="FILE",
        help="the handler to put in code/ (with --source-dir: a path inside it); sets SAGEMAKER_PROGRAM",
    )
    parser.add_argument("--source-dir", type=Path, metavar="DIR", help="a directory to become code/")
    parser.add_argument(
        "--env",
        action="append",
        metavar="KEY=VALUE",
        help="an environment variable for the model (repeat for several)",
    )


def _deploy(args: argparse.Namespace) -> int:
    from moorage.commands._staging import program_environment, stage
    from moorage.sdk import PyTorchModel
    from moorage.sdk.model import name_from_base
    from moorage.sdk.repack import code_spec

    environment = parse_environment(args.env)
    if args.instance_count < 1:
        raise ConfigError("--instance-count must be at least 1")
    code = code_spec(args.entry_point, args.source_dir)
    reporter = Reporter.for_args(args)
    connection = connect(args)
    endpoint: str = args.name
    with user_errors():
        _refuse_existing(connection, endpoint)
        model_name = name_from_base(endpoint)
        model_data = stage(connection, args.model_data, code, model_name, reporter)
        model = PyTorchModel(
            model_data,
            env={**environment, **program_environment(code)},
            name=model_name,
            endpoint_url=connection.url,
        )
        model.connection = connection
        model.deploy(
            initial_instance_count=args.instance_count,
            instance_type=args.instance_type,
            endpoint_name=endpoint,
            wait=False,
            progress=reporter.say,
        )
    with user_errors(endpoint):
        if args.no_wait:
            described = connection.call("DescribeEndpoint", EndpointName=endpoint)
        else:
            described = wait_settled(connection, endpoint, reporter)
            if described["EndpointStatus"] != "InService":
                raise deployment_failed(endpoint, described)
    if args.output == "json":
        print_json(without_metadata(described))
        return EXIT_OK
    status = described["EndpointStatus"]
    print(f"Endpoint {endpoint} is {status} ({args.instance_count} x {args.instance_type}).")
    if status == "InService":
        print(how_to_invoke(endpoint))
    else:
        print(f"Follow it with:  moorage describe {endpoint}")
    return EXIT_OK


def _refuse_existing(connection: Connection, endpoint: str) -> None:
    """Before anything is uploaded: the endpoint, and the config deploy would name after it, are new."""
    from moorage.commands._session import endpoint_missing
    from moorage.sdk import ServiceError

    try:
        connection.call("DescribeEndpoint", EndpointName=endpoint)
    except ServiceError as exc:
        if not endpoint_missing(exc):
            raise
    else:
        raise MoorageError(
            f"endpoint {endpoint!r} already exists; change it with `moorage update {endpoint} "
            f"--model-data ...`, or remove it first with `moorage delete {endpoint}`"
        )
    try:
        connection.call("DescribeEndpointConfig", EndpointConfigName=endpoint)
    except ServiceError as exc:
        if exc.error_code != "ValidationException":
            raise
    else:
        raise MoorageError(
            f"an endpoint config named {endpoint!r} already exists (deploy names the config after the "
            f"endpoint); remove it with `aws sagemaker delete-endpoint-config --endpoint-config-name "
            f"{endpoint}`, or choose another --name"
        )


def deployment_failed(endpoint: str, described: dict[str, Any]) -> MoorageError:
    reason = described.get("FailureReason") or "the server gave no reason"
    current, desired = instances(described)
    return MoorageError(
        f"endpoint {endpoint!r} is {described['EndpointStatus']} ({current}/{desired} instances): {reason}\n"
        f"Its logs: moorage logs {endpoint}   Remove it: moorage delete {endpoint}"
    )


def how_to_invoke(endpoint: str) -> str:
    return (
        f"Invoke it:  moorage invoke {endpoint} --json '{{...}}'\n"
        f"            moorage invoke {endpoint} --body-file request.json -o answer.json\n"
        f"Its logs:   moorage logs {endpoint}"
    )
