"""`moorage models ENDPOINT`: what a multi-model endpoint has loaded now, on which instance, with each
model's memory, load and download times.

SageMaker shows only LoadedModelCount in CloudWatch; moorage publishes one gauge per loaded model on
`/metrics` (docs/multi-model.md), so the command reads them there, signed like any other call (as
`moorage queue` does), after DescribeEndpoint has said the endpoint exists.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from moorage.artifacts.sources import format_bytes
from moorage.commands._metrics import read_metrics, samples
from moorage.commands._output import HelpFormatter, add_output_option, print_json, table, without_metadata
from moorage.commands._session import add_server_option, connect, user_errors

__all__ = ["loaded_models", "register"]

EXIT_OK = 0
# The per-model gauges (moorage.multimodel.metrics.MODEL_GAUGES), with the JSON key each is printed under.
GAUGES = {
    "moorage_mme_model_bytes": "SizeBytes",
    "moorage_mme_model_load_seconds": "LoadSeconds",
    "moorage_mme_model_download_seconds": "DownloadSeconds",
    "moorage_mme_model_loaded_at_seconds": "LoadedAt",
}

EPILOG = """\
examples:
  moorage models my-mme-endpoint
  moorage models my-mme-endpoint --output json | jq '.LoadedModels[].TargetModel'

Models load on their first InvokeEndpoint with TargetModel and unload when the instance's memory budget
needs room (least recently used first), or after each call with ModelCacheSetting Disabled.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "models",
        help="show what a multi-model endpoint has loaded, where, with sizes and load times",
        description="Show the models ENDPOINT (a multi-model endpoint) has loaded now: their instance, "
        "memory, and how long downloading and loading them took.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("endpoint", metavar="ENDPOINT")
    add_server_option(parser)
    add_output_option(parser)
    parser.set_defaults(func=_models)


def loaded_models(text: str, endpoint: str) -> list[dict[str, Any]]:
    """The loaded models of `endpoint` in Prometheus text: one dict per model and instance."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name, labels, value in samples(text, GAUGES):
        if labels.get("EndpointName") != endpoint:
            continue
        key = (labels.get("VariantName", ""), labels.get("InstanceId", ""), labels.get("TargetModel", ""))
        entry = found.setdefault(key, {"VariantName": key[0], "InstanceId": key[1], "TargetModel": key[2]})
        entry[GAUGES[name]] = int(value) if name == "moorage_mme_model_bytes" else value
    return [found[key] for key in sorted(found)]


def _models(args: argparse.Namespace) -> int:
    connection = connect(args)
    with user_errors(args.endpoint):
        described = without_metadata(connection.call("DescribeEndpoint", EndpointName=args.endpoint))
    models = loaded_models(read_metrics(connection), args.endpoint)
    if args.output == "json":
        print_json(
            {
                "EndpointName": args.endpoint,
                "EndpointStatus": described["EndpointStatus"],
                "LoadedModels": models,
            }
        )
        return EXIT_OK
    if not models:
        print(f"{args.endpoint} ({described['EndpointStatus']}) has no model loaded now.")
        return EXIT_OK
    now = time.time()
    rows = [
        (
            model["InstanceId"],
            model["TargetModel"],
            format_bytes(model.get("SizeBytes", 0)),
            f"{model.get('LoadSeconds', 0.0):.2f} s",
            f"{model.get('DownloadSeconds', 0.0):.2f} s",
            f"{now - model.get('LoadedAt', now):.0f} s ago",
        )
        for model in models
    ]
    print(table(("INSTANCE", "TARGET MODEL", "MEMORY", "LOAD", "DOWNLOAD", "LOADED"), rows))
    return EXIT_OK
