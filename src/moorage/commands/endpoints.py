"""`moorage endpoints` and `moorage describe ENDPOINT`: what runs on the server, for people and scripts.

The table reads DescribeEndpoint for each endpoint ListEndpoints names (a local server answers at
once), since only Describe has the variants and instance counts. `--output json` prints AWS's own
shapes (DescribeEndpoint's answer, times in ISO 8601), so a script written for `aws sagemaker` reads it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from moorage.commands._output import (
    HelpFormatter,
    add_output_option,
    age,
    local_time,
    print_json,
    table,
    without_metadata,
)
from moorage.commands._progress import instances
from moorage.commands._session import add_server_option, connect, endpoint_missing, user_errors

if TYPE_CHECKING:
    from moorage.sdk import Connection

__all__ = ["describe_all", "register", "variants_cell"]

EXIT_OK = 0

ENDPOINTS_EPILOG = """\
examples:
  moorage endpoints
  moorage endpoints --output json | jq -r '.Endpoints[].EndpointName'

VARIANTS shows each production variant as "name w=<weight> n=<instances>"; INSTANCES counts those
that can answer now against those wanted, over all variants. An endpoint with a FailureReason (it
failed, an update failed, or its instances cannot start) has it printed below the table.
"""

DESCRIBE_EPILOG = """\
examples:
  moorage describe my-endpoint
  moorage describe my-endpoint --output json | jq -r .EndpointStatus
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = commands.add_parser(
        "endpoints",
        help="list the endpoints: status, variants, instances, age",
        description="List the server's endpoints with their status, variants, instances and age.",
        epilog=ENDPOINTS_EPILOG,
        formatter_class=HelpFormatter,
    )
    add_server_option(listing)
    add_output_option(listing, ("table", "json"))
    listing.set_defaults(func=_endpoints)

    describe = commands.add_parser(
        "describe",
        help="show one endpoint: status, failure reason, variants, models",
        description=(
            "Show ENDPOINT: its status (and FailureReason), its config, each variant's weight, "
            "instances, instance type and model data, and an update in progress."
        ),
        epilog=DESCRIBE_EPILOG,
        formatter_class=HelpFormatter,
    )
    describe.add_argument("endpoint", metavar="ENDPOINT")
    add_server_option(describe)
    add_output_option(describe)
    describe.set_defaults(func=_describe)


def describe_all(connection: Connection) -> list[dict[str, Any]]:
    """DescribeEndpoint of every endpoint, in ListEndpoints' order (newest first)."""
    from moorage.sdk import ServiceError

    names: list[str] = []
    request: dict[str, Any] = {"MaxResults": 100}
    while True:
        page = connection.call("ListEndpoints", **request)
        names.extend(str(summary["EndpointName"]) for summary in page["Endpoints"])
        if not page.get("NextToken"):
            break
        request["NextToken"] = page["NextToken"]
    described = []
    for name in names:
        try:
            described.append(without_metadata(connection.call("DescribeEndpoint", EndpointName=name)))
        except ServiceError as exc:
            if not endpoint_missing(exc):  # deleted since it was listed: not there any more
                raise
    return described


def variants_cell(described: dict[str, Any]) -> str:
    return ", ".join(
        f"{variant['VariantName']} w={float(variant.get('CurrentWeight', 0)):g} "
        f"n={int(variant.get('DesiredInstanceCount', 0))}"
        for variant in described.get("ProductionVariants", [])
    )


def _endpoints(args: argparse.Namespace) -> int:
    connection = connect(args)
    with user_errors():
        described = describe_all(connection)
    if args.output == "json":
        print_json({"Endpoints": described})
        return EXIT_OK
    if not described:
        print(f"No endpoints on {connection.url}. Create one with: moorage deploy MODEL_DATA --name ENDPOINT")
        return EXIT_OK
    rows = []
    for endpoint in described:
        current, desired = instances(endpoint)
        rows.append(
            [
                str(endpoint["EndpointName"]),
                str(endpoint["EndpointStatus"]),
                variants_cell(endpoint) or "-",
                f"{current}/{desired}",
                age(endpoint["CreationTime"]),
            ]
        )
    print(table(["NAME", "STATUS", "VARIANTS", "INSTANCES", "AGE"], rows))
    for endpoint in described:
        if endpoint.get("FailureReason"):
            reason = str(endpoint["FailureReason"]).splitlines()[0]
            print(f"{endpoint['EndpointName']}: {reason}")
    return EXIT_OK


def _describe(args: argparse.Namespace) -> int:
    connection = connect(args)
    with user_errors(args.endpoint):
        described = without_metadata(connection.call("DescribeEndpoint", EndpointName=args.endpoint))
        if args.output == "json":
            print_json(described)
            return EXIT_OK
        config = _optional(
            connection, "DescribeEndpointConfig", EndpointConfigName=described.get("EndpointConfigName")
        )
        print(_render(connection, described, config))
    return EXIT_OK


def _optional(connection: Connection, operation: str, **params: Any) -> dict[str, Any] | None:
    """An answer that may be missing: configs and models can be deleted while an endpoint uses them."""
    from moorage.sdk import ServiceError

    if any(value is None for value in params.values()):
        return None
    try:
        return connection.call(operation, **params)
    except ServiceError as exc:
        if exc.error_code == "ValidationException":
            return None
        raise


def _render(connection: Connection, described: dict[str, Any], config: dict[str, Any] | None) -> str:
    name = str(described["EndpointName"])
    current, desired = instances(described)
    lines = [
        f"Endpoint    {name}",
        f"ARN         {described['EndpointArn']}",
        f"Status      {described['EndpointStatus']} ({current}/{desired} instances in service)",
    ]
    if described.get("FailureReason"):
        # The reason's later lines are the worker log's last lines: indented under it.
        first, *rest = str(described["FailureReason"]).splitlines() or [""]
        lines.append(f"Failure     {first}")
        lines += [f"            {line}" for line in rest]
    lines += [
        f"Config      {described.get('EndpointConfigName', '-')}",
        f"Created     {local_time(described['CreationTime'])} ({age(described['CreationTime'])} ago)",
        f"Modified    {local_time(described['LastModifiedTime'])} ({age(described['LastModifiedTime'])} ago)",
        "Variants",
    ]
    specs = {v["VariantName"]: v for v in (config or {}).get("ProductionVariants", [])}
    for variant in described.get("ProductionVariants", []):
        spec = specs.get(variant["VariantName"], {})
        lines.append(
            f"  {variant['VariantName']}: weight {float(variant.get('CurrentWeight', 0)):g}, "
            f"instances {variant.get('CurrentInstanceCount', 0)}/{variant.get('DesiredInstanceCount', 0)}"
            + (f", {spec['InstanceType']}" if spec.get("InstanceType") else "")
        )
        if spec.get("ModelName"):
            model = _optional(connection, "DescribeModel", ModelName=spec["ModelName"])
            data = ((model or {}).get("PrimaryContainer") or {}).get("ModelDataUrl", "(model deleted)")
            lines.append(f"    model {spec['ModelName']}: {data}")
    pending = described.get("PendingDeploymentSummary")
    if pending:
        lines.append(f"Updating to {pending.get('EndpointConfigName')}:")
        for variant in pending.get("ProductionVariants", []):
            lines.append(
                f"  {variant['VariantName']}: weight {float(variant.get('DesiredWeight', 0)):g}, "
                f"instances {variant.get('DesiredInstanceCount', 0)}"
            )
    if described["EndpointStatus"] == "InService":
        lines.append(f"Invoke it:  moorage invoke {name} --json '{{...}}'")
    return "\n".join(lines)
