"""`moorage upload FILE [s3://bucket/key]`: put a model.tar.gz where a model can be created from it.

Like `aws s3 cp`, to the S3 endpoint boto3 is configured with (AWS_ENDPOINT_URL_S3, a profile), else
to the store the server reads model data from (moorage's embedded one by default). Given no
destination, the file goes to that store's `moorage-artifacts` bucket under a fresh prefix. A missing
bucket is created only on the store the server reads; other S3 endpoints' buckets are their owners'.
The s3:// URL is the one line on stdout, so `MODEL=$(moorage upload model.tar.gz)` works.
"""

from __future__ import annotations

import argparse
import urllib.parse
from pathlib import Path

from moorage.commands._output import HelpFormatter, add_output_option, print_json
from moorage.commands._progress import Reporter, add_progress_option
from moorage.commands._session import add_server_option, connect, user_errors
from moorage.errors import ConfigError, MoorageError

__all__ = ["parse_destination", "register"]

EXIT_OK = 0

EPILOG = """\
examples:
  moorage upload model.tar.gz                                  # to moorage's own store
  moorage upload model.tar.gz s3://pytorch-sagemaker-example/  # keeps the name: .../model.tar.gz
  MODEL=$(moorage upload model.tar.gz) && moorage deploy "$MODEL" --name my-endpoint
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "upload",
        help="upload a file to S3 or to moorage's embedded store, like `aws s3 cp`",
        description=(
            "Upload FILE to DEST (s3://bucket/key; a key ending in / keeps the file's name). The S3 "
            "endpoint is the one boto3 is configured with (AWS_ENDPOINT_URL_S3, ...), else the store "
            "the moorage server reads model data from. Without DEST the file goes to that store's "
            "moorage-artifacts bucket. Prints the s3:// URL."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument(
        "destination", nargs="?", metavar="DEST", help="s3://bucket/key or s3://bucket/prefix/"
    )
    add_server_option(parser)
    add_progress_option(parser)
    add_output_option(parser)
    parser.set_defaults(func=_upload)


def parse_destination(destination: str, file_name: str) -> tuple[str, str]:
    """s3://bucket/key → (bucket, key); no key, or a key ending in "/", takes the file's name."""
    parts = urllib.parse.urlsplit(destination)
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise ConfigError(f"the destination {destination!r} is not an s3://bucket/key URL")
    key = urllib.parse.unquote(parts.path.lstrip("/"))
    if not key or key.endswith("/"):
        key += file_name
    return parts.netloc, key


def _upload(args: argparse.Namespace) -> int:
    from moorage.commands._staging import ensure_bucket, server_store, upload
    from moorage.sdk.model import name_from_base
    from moorage.sdk.staging import ARTIFACT_BUCKET

    path: Path = args.file
    if not path.is_file():
        raise MoorageError(f"{path} is not a file")
    if args.destination is not None:
        bucket, key = parse_destination(args.destination, path.name)
    reporter = Reporter.for_args(args)
    connection = connect(args)
    with user_errors():
        if args.destination is None:
            s3 = server_store(connection)
            bucket, key = ARTIFACT_BUCKET, f"{name_from_base('upload')}/{path.name}"
        else:
            s3 = connection.s3_for_model_data()
        ensure_bucket(connection, s3, bucket, reporter)
        uri = upload(connection, s3, path, bucket, key, reporter)
    if args.output == "json":
        print_json({"S3Uri": uri, "EndpointUrl": s3.meta.endpoint_url, "Size": path.stat().st_size})
    else:
        print(uri)
    return EXIT_OK
