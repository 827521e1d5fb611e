"""`moorage delete ENDPOINT`: the endpoint, its endpoint config and its models, as a notebook's
`predictor.delete_endpoint(); predictor.delete_model()` would remove them.

The config and models are learnt before the endpoint goes (afterwards nothing names them), and the
command waits until the server no longer knows the endpoint, so a `moorage endpoints` right after
does not show it. After a `moorage update`, the config `moorage deploy` named after the endpoint is
no longer the current one; it goes too (with its models), so the name can be deployed again. A
config or model someone else already removed is not an error.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from moorage.commands._output import HelpFormatter, add_output_option, print_json
from moorage.commands._progress import Reporter, add_progress_option, wait_gone
from moorage.commands._session import add_server_option, connect, user_errors

if TYPE_CHECKING:
    from moorage.sdk import Connection

__all__ = ["register"]

EXIT_OK = 0

EPILOG = """\
examples:
  moorage delete my-endpoint
  moorage delete my-endpoint --keep-model     # keep the model to deploy it again later
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "delete",
        help="delete an endpoint with its endpoint config and models",
        description=(
            "Delete ENDPOINT, then its endpoint config and the models that config names (unless "
            "--keep-config / --keep-model), and wait until the endpoint is gone. After `moorage update`, "
            "the config `moorage deploy` made (named after the endpoint) is deleted too, with its models."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("endpoint", metavar="ENDPOINT")
    parser.add_argument("--keep-config", action="store_true", help="do not delete the endpoint config")
    parser.add_argument("--keep-model", action="store_true", help="do not delete the models")
    parser.add_argument("--no-wait", action="store_true", help="return once the endpoint is Deleting")
    add_server_option(parser)
    add_progress_option(parser)
    add_output_option(parser)
    parser.set_defaults(func=_delete)


def _delete(args: argparse.Namespace) -> int:
    reporter = Reporter.for_args(args)
    connection = connect(args)
    endpoint: str = args.endpoint
    deleted: dict[str, list[str]] = {"Endpoints": [endpoint], "EndpointConfigs": [], "Models": []}
    with user_errors(endpoint):
        described = connection.call("DescribeEndpoint", EndpointName=endpoint)
        configs = [str(described["EndpointConfigName"])] if described.get("EndpointConfigName") else []
        if endpoint not in configs and _models(connection, endpoint) is not None:
            configs.append(endpoint)  # deploy's own config, superseded by `moorage update`
        models: list[str] = []
        for config in configs if not args.keep_model else []:
            models += [name for name in _models(connection, config) or [] if name not in models]
        connection.call("DeleteEndpoint", EndpointName=endpoint)
        for config in configs if not args.keep_config else []:
            if _gone_or_deleted(connection, "DeleteEndpointConfig", config):
                deleted["EndpointConfigs"].append(config)
        for model in models:
            if _gone_or_deleted(connection, "DeleteModel", model):
                deleted["Models"].append(model)
        if not args.no_wait:
            wait_gone(connection, endpoint, reporter)
    if args.output == "json":
        print_json(deleted)
        return EXIT_OK
    kept = [what for what, flag in (("config", args.keep_config), ("model", args.keep_model)) if flag]
    print(f"Deleted endpoint {endpoint}" + ("" if not args.no_wait else " (still Deleting)"))
    for config_name in deleted["EndpointConfigs"]:
        print(f"Deleted endpoint config {config_name}")
    for model_name in deleted["Models"]:
        print(f"Deleted model {model_name}")
    if kept:
        print(f"Kept the {' and '.join(kept)}, as asked.")
    return EXIT_OK


def _models(connection: Connection, config: str) -> list[str] | None:
    """The models `config` names; None when there is no such config (it may be deleted while in use)."""
    from moorage.sdk import ServiceError

    try:
        described = connection.call("DescribeEndpointConfig", EndpointConfigName=config)
    except ServiceError as exc:
        if exc.error_code == "ValidationException":
            return None
        raise
    return [str(v["ModelName"]) for v in described.get("ProductionVariants", []) if "ModelName" in v]


def _gone_or_deleted(connection: Connection, operation: str, name: str) -> bool:
    """True when this call deleted it; False when it was already gone."""
    from moorage.sdk import ServiceError

    key = "EndpointConfigName" if operation == "DeleteEndpointConfig" else "ModelName"
    try:
        connection.call(operation, **{key: name})
    except ServiceError as exc:
        if exc.error_code == "ValidationException" and "could not find" in exc.message.lower():
            return False
        raise
    return True
