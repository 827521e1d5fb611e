"""`moorage update ENDPOINT`: a new model (blue/green), or new weights and instance counts in place.

- `--model-data`: a new model and a new endpoint config, then UpdateEndpoint. The config keeps every
  variant as it runs today (its current weight and instance count) and puts the new model in one
  of them (--variant; a name the endpoint lacks adds a variant, e.g. a canary). The new model keeps
  the replaced model's environment, with --env and --entry-point applied over it. The server starts
  the new instances beside the old and switches when they are ready; if they cannot start, the
  endpoint keeps serving the old config with a FailureReason, and this command exits 1 saying so.
- `--weights` / `--instance-count` alone: UpdateEndpointWeightsAndCapacities, no new containers.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from moorage.commands._output import HelpFormatter, add_output_option, print_json, without_metadata
from moorage.commands._progress import Reporter, add_progress_option, wait_settled
from moorage.commands._session import add_server_option, connect, parse_environment, user_errors
from moorage.commands.deploy import add_code_options, deployment_failed
from moorage.commands.endpoints import variants_cell
from moorage.errors import ConfigError, MoorageError

if TYPE_CHECKING:
    from moorage.sdk import Connection
    from moorage.sdk.repack import CodeSpec

__all__ = ["parse_weights", "register"]

EXIT_OK = 0
DEFAULT_INSTANCE_TYPE = "ml.m5.large"

EPILOG = """\
examples:
  # blue/green: a new model for the endpoint's only variant
  moorage update my-endpoint --model-data model-v2.tar.gz --entry-point inference.py
  # a canary beside it, then shift traffic
  moorage update my-endpoint --model-data model-v2.tar.gz --variant canary --weight 0.1
  moorage update my-endpoint --weights AllTraffic=0,canary=1
  # scale in place
  moorage update my-endpoint --instance-count 3
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "update",
        help="deploy a new model to an endpoint (blue/green), or change weights and instance counts",
        description=(
            "Change ENDPOINT. With --model-data: create a new model and endpoint config and switch to "
            "them once the new instances are ready (the endpoint serves throughout). Without it: "
            "change variants' weights (--weights) or instance count (--instance-count) in place."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("endpoint", metavar="ENDPOINT")
    parser.add_argument(
        "--model-data", metavar="MODEL_DATA", help="the new model.tar.gz: a path, s3:// or https://"
    )
    add_code_options(parser)
    parser.add_argument(
        "--variant",
        help="the variant to change (default: the endpoint's only one); with --model-data, a new name "
        "adds a variant",
    )
    parser.add_argument(
        "--instance-type", metavar="TYPE", help="with --model-data: the variant's instance type"
    )
    parser.add_argument("--instance-count", type=int, metavar="N", help="the variant's instance count")
    parser.add_argument("--weight", type=float, metavar="W", help="with --model-data: its weight")
    parser.add_argument(
        "--weights", metavar="VARIANT=W,...", help="set these variants' weights in place, e.g. blue=1,green=3"
    )
    parser.add_argument("--no-wait", action="store_true", help="return once the endpoint is Updating")
    add_server_option(parser)
    add_progress_option(parser)
    add_output_option(parser)
    parser.set_defaults(func=_update)


def parse_weights(text: str) -> dict[str, float]:
    """ "blue=1,green=3" → {"blue": 1.0, "green": 3.0}."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, equals, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not equals or not name.strip() or weight < 0:
            raise ConfigError(f"--weights {text!r}: each item must be VARIANT=WEIGHT, a weight of 0 or more")
        weights[name.strip()] = weight
    return weights


def _check(args: argparse.Namespace) -> dict[str, float]:
    weights = parse_weights(args.weights) if args.weights else {}
    if args.instance_count is not None and args.instance_count < 1:
        raise ConfigError("--instance-count must be at least 1")
    if args.weight is not None and args.weight < 0:
        raise ConfigError("--weight must be 0 or more")
    if args.model_data is None:
        with_model = [
            flag
            for flag, value in (
                ("--entry-point", args.entry_point),
                ("--source-dir", args.source_dir),
                ("--env", args.env),
                ("--instance-type", args.instance_type),
                ("--weight", args.weight),
            )
            if value is not None
        ]
        if with_model:
            raise ConfigError(f"{', '.join(with_model)}: only with --model-data (a new model and config)")
        if args.instance_count is None and not weights:
            raise ConfigError("nothing to update: give --model-data, --weights or --instance-count")
    elif weights:
        raise ConfigError("--weights changes the running variants in place; run it apart from --model-data")
    return weights


def _update(args: argparse.Namespace) -> int:
    from moorage.sdk.repack import code_spec

    weights = _check(args)
    code = code_spec(args.entry_point, args.source_dir)
    reporter = Reporter.for_args(args)
    connection = connect(args)
    endpoint: str = args.endpoint
    with user_errors(endpoint):
        described = connection.call("DescribeEndpoint", EndpointName=endpoint)
        if args.model_data is not None:
            config = _new_config(connection, described, code, args, reporter)
            reporter.say(f"Updating endpoint {endpoint} to config {config}")
            connection.call("UpdateEndpoint", EndpointName=endpoint, EndpointConfigName=config)
        else:
            config = str(described.get("EndpointConfigName"))
            changes = _capacities(described, weights, args.variant, args.instance_count)
            reporter.say(f"Updating endpoint {endpoint}: {_describe_changes(changes)}")
            connection.call(
                "UpdateEndpointWeightsAndCapacities",
                EndpointName=endpoint,
                DesiredWeightsAndCapacities=changes,
            )
        if args.no_wait:
            described = connection.call("DescribeEndpoint", EndpointName=endpoint)
        else:
            described = wait_settled(connection, endpoint, reporter)
            if described["EndpointStatus"] != "InService":
                raise deployment_failed(endpoint, described)
            if described.get("FailureReason") or described.get("EndpointConfigName") != config:
                serving = described.get("EndpointConfigName")
                reason = described.get("FailureReason", "no reason given")
                raise MoorageError(
                    f"the update of {endpoint!r} failed; it still serves config {serving}: {reason}\n"
                    f"Its logs: moorage logs {endpoint}"
                )
    if args.output == "json":
        print_json(without_metadata(described))
        return EXIT_OK
    status, serving = described["EndpointStatus"], described.get("EndpointConfigName")
    print(f"Endpoint {endpoint} is {status} with config {serving}: {variants_cell(described)}")
    return EXIT_OK


def _target(described: dict[str, Any], variant: str | None) -> str:
    if variant:
        return variant
    names = [str(v["VariantName"]) for v in described.get("ProductionVariants", [])]
    if len(names) == 1:
        return names[0]
    raise ConfigError(f"the endpoint has the variants {', '.join(names)}: choose one with --variant")


def _capacities(
    described: dict[str, Any], weights: dict[str, float], variant: str | None, count: int | None
) -> list[dict[str, Any]]:
    changes: dict[str, dict[str, Any]] = {
        name: {"VariantName": name, "DesiredWeight": weight} for name, weight in weights.items()
    }
    if count is not None:
        name = _target(described, variant)
        changes.setdefault(name, {"VariantName": name})["DesiredInstanceCount"] = count
    return list(changes.values())


def _describe_changes(changes: list[dict[str, Any]]) -> str:
    parts = []
    for change in changes:
        settings = []
        if "DesiredWeight" in change:
            settings.append(f"weight {change['DesiredWeight']:g}")
        if "DesiredInstanceCount" in change:
            settings.append(f"{change['DesiredInstanceCount']} instances")
        parts.append(f"{change['VariantName']} → {', '.join(settings)}")
    return "; ".join(parts)


def _new_config(
    connection: Connection,
    described: dict[str, Any],
    code: CodeSpec,
    args: argparse.Namespace,
    reporter: Reporter,
) -> str:
    """Create the new model and the endpoint config that puts it in the target variant; its name."""
    from moorage.commands._staging import program_environment, stage
    from moorage.sdk.model import name_from_base

    endpoint: str = args.endpoint
    old = connection.call("DescribeEndpointConfig", EndpointConfigName=described["EndpointConfigName"])
    target = _target(described, args.variant)
    live = {v["VariantName"]: v for v in described.get("ProductionVariants", [])}
    variants = []
    replaced: dict[str, Any] | None = None
    for spec in old["ProductionVariants"]:
        variant = dict(spec)
        running = live.get(spec["VariantName"], {})
        # What runs today: UpdateEndpointWeightsAndCapacities may have changed it since the config.
        if "DesiredWeight" in running:
            variant["InitialVariantWeight"] = running["DesiredWeight"]
        if "DesiredInstanceCount" in running:
            variant["InitialInstanceCount"] = running["DesiredInstanceCount"]
        if spec["VariantName"] == target:
            replaced = variant
        variants.append(variant)
    if replaced is None:
        replaced = {
            "VariantName": target,
            "InstanceType": variants[0]["InstanceType"] if variants else DEFAULT_INSTANCE_TYPE,
            "InitialInstanceCount": 1,
            "InitialVariantWeight": 1.0,
        }
        variants.append(replaced)
        reporter.say(f"Adding the variant {target}")
    environment = _inherited_environment(connection, replaced.get("ModelName"))
    environment.update(parse_environment(args.env))
    environment.update(program_environment(code))
    environment.update(SAGEMAKER_CONTAINER_LOG_LEVEL="20", SAGEMAKER_REGION=connection.region)

    model_name = name_from_base(endpoint)
    model_data = stage(connection, args.model_data, code, model_name, reporter)
    reporter.say(f"Creating model {model_name} from {model_data}")
    connection.call(
        "CreateModel",
        ModelName=model_name,
        PrimaryContainer={"ModelDataUrl": model_data, "Environment": environment},
    )
    replaced["ModelName"] = model_name
    if args.instance_type:
        replaced["InstanceType"] = args.instance_type
    if args.instance_count is not None:
        replaced["InitialInstanceCount"] = args.instance_count
    if args.weight is not None:
        replaced["InitialVariantWeight"] = args.weight
    config = name_from_base(endpoint)
    reporter.say(f"Creating endpoint config {config}: {_summary(variants)}")
    connection.call("CreateEndpointConfig", EndpointConfigName=config, ProductionVariants=variants)
    return config


def _inherited_environment(connection: Connection, model_name: str | None) -> dict[str, str]:
    from moorage.sdk import ServiceError

    if model_name is None:
        return {}
    try:
        model = connection.call("DescribeModel", ModelName=model_name)
    except ServiceError as exc:
        if exc.error_code == "ValidationException":  # deleted meanwhile: nothing to keep
            return {}
        raise
    return dict((model.get("PrimaryContainer") or {}).get("Environment") or {})


def _summary(variants: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{v['VariantName']} w={float(v.get('InitialVariantWeight', 1)):g} n={v['InitialInstanceCount']}"
        for v in variants
    )
