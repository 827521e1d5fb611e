"""`moorage invoke ENDPOINT`: one InvokeEndpoint, the body from --json, a file or stdin (with --async:
one InvokeEndpointAsync, commands/invoke_async.py).

The answer's body goes to stdout (or -o FILE) byte for byte, so it can be piped; what SageMaker says
about it (ContentType, the variant that served it) goes to stderr with -v. When the model's handler
fails, SageMaker answers ModelError (spec §4.2): its message, which quotes the container's answer,
and the container's status are printed, and the command exits 1.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

from moorage.commands._output import HelpFormatter
from moorage.commands._session import add_server_option, connect, user_errors
from moorage.errors import ConfigError, MoorageError

__all__ = ["content_type_for", "register"]

EXIT_OK = 0
STDIN = "-"
JSON = "application/json"
_BY_SUFFIX = {
    ".json": JSON,
    ".jsonl": "application/jsonlines",
    ".npy": "application/x-npy",
    ".csv": "text/csv",
}

EPILOG = """\
examples:
  moorage invoke my-endpoint --json '{"url": "http://127.0.0.1:8000/cat.jpg"}'
  moorage invoke my-endpoint --body-file cat.jpg --content-type image/jpeg --accept application/json
  echo '[[0.1, 0.2]]' | moorage invoke my-endpoint - -o answer.json
  moorage -v invoke my-endpoint --json '[1, 2]' --target-variant canary
  moorage invoke my-mme-endpoint --json '[1, 2]' --target-model customer-42.tar.gz
  moorage invoke my-async-endpoint --async --input s3://bucket/in/request.json --wait
  moorage invoke my-llm --json '{"prompt": "Once"}' --stream

The content type is application/json for --json and stdin, and guessed from the file name for
--body-file (.json, .csv, .npy, .jpg, .png, ...; else application/octet-stream).
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "invoke",
        help="send one request to an endpoint and print the answer",
        description=(
            "Call InvokeEndpoint on ENDPOINT and write the answer's body to stdout (or -o FILE). "
            "Give the body with --json TEXT, --body-file FILE, or - to read it from stdin."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("endpoint", metavar="ENDPOINT")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("stdin", nargs="?", metavar="-", help="read the body from stdin")
    source.add_argument("--json", metavar="TEXT", help="the body: a JSON document (checked before sending)")
    source.add_argument("--body-file", type=Path, metavar="FILE", help="the body: this file's bytes")
    source.add_argument("--input", metavar="S3_URL", help="with --async: the input object (s3://bucket/key)")
    parser.add_argument("--content-type", help="the body's media type (default: see below)")
    parser.add_argument("--accept", help="the media type to ask the model for (default: none sent)")
    parser.add_argument("--target-variant", metavar="VARIANT", help="send to this production variant")
    parser.add_argument(
        "--target-model", metavar="NAME", help="on a multi-model endpoint: the model, a path under its prefix"
    )
    parser.add_argument("--custom-attributes", metavar="TEXT", help="passed to the handler as is")
    parser.add_argument("--inference-id", metavar="ID", help="an id to record with the request")
    parser.add_argument("-o", "--out", type=Path, metavar="FILE", help="write the answer's body here")
    parser.add_argument(
        "--async",
        dest="async_",
        action="store_true",
        help="InvokeEndpointAsync on an asynchronous endpoint: print the InferenceId and result locations",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="InvokeEndpointWithResponseStream: print each part as it arrives (a handler that yields)",
    )
    parser.add_argument("--wait", action="store_true", help="with --async: wait for the result and print it")
    parser.add_argument(
        "--wait-timeout", type=float, default=3600.0, metavar="SECONDS", help="with --wait: give up after"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="show_metadata",
        action="store_true",
        help="also print the answer's ContentType and the variant that served it, on stderr",
    )
    add_server_option(parser)
    parser.set_defaults(func=_invoke)


def content_type_for(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def _body(args: argparse.Namespace) -> tuple[bytes, str]:
    if args.json is not None:
        try:
            json.loads(args.json)
        except ValueError as exc:
            raise ConfigError(f"--json is not valid JSON: {exc}") from None
        return args.json.encode(), JSON
    if args.body_file is not None and str(args.body_file) != STDIN:
        try:
            return args.body_file.read_bytes(), content_type_for(args.body_file)
        except OSError as exc:
            raise MoorageError(f"cannot read --body-file {args.body_file}: {exc.strerror}") from None
    if args.stdin is not None and args.stdin != STDIN:
        raise ConfigError(
            f"unexpected argument {args.stdin!r}: give the body with --json TEXT, --body-file FILE "
            "or - (stdin)"
        )
    return sys.stdin.buffer.read(), JSON


def _invoke(args: argparse.Namespace) -> int:
    from moorage.sdk import PredictionError

    if args.input is not None and not args.async_:
        raise ConfigError("--input names an async request's input object: add --async")
    if args.async_ and args.stream:
        raise ConfigError("--async and --stream are two different calls: choose one")
    if args.async_:
        from moorage.commands.invoke_async import invoke_async

        result = invoke_async(args, *((None, None) if args.input is not None else _body(args)))
        if result is None:
            return EXIT_OK
        return _write(args, result[0], {"ContentType": result[1]})
    body, default_type = _body(args)
    request: dict[str, Any] = {
        "EndpointName": args.endpoint,
        "Body": body,
        "ContentType": args.content_type or default_type,
    }
    optional = {
        "Accept": args.accept,
        "TargetVariant": args.target_variant,
        "TargetModel": args.target_model,
        "CustomAttributes": args.custom_attributes,
        "InferenceId": args.inference_id,
    }
    request.update({key: value for key, value in optional.items() if value is not None})
    if args.stream:
        from moorage.commands.invoke_stream import invoke_stream

        return invoke_stream(args, request)
    connection = connect(args)
    try:
        with user_errors(args.endpoint):
            answer = connection.invoke(**request)
            data: bytes = answer["Body"].read()
    except PredictionError as exc:
        status = exc.original_status if exc.original_status is not None else "unknown"
        message = exc.response.get("Error", {}).get("Message") or exc.message
        raise MoorageError(
            f"the model failed (its container answered {status}): {message}\n"
            f"See its logs: moorage logs {args.endpoint}"
        ) from None
    if args.show_metadata or args.verbose:
        print(f"ContentType: {answer.get('ContentType', '')}", file=sys.stderr)
        print(f"InvokedProductionVariant: {answer.get('InvokedProductionVariant', '')}", file=sys.stderr)
        if answer.get("CustomAttributes"):
            print(f"CustomAttributes: {answer['CustomAttributes']}", file=sys.stderr)
    return _write(args, data, answer)


def _write(args: argparse.Namespace, data: bytes, answer: dict[str, Any]) -> int:
    """The answer's body to -o FILE or stdout, byte for byte."""
    if args.out is not None:
        args.out.write_bytes(data)
        content_type = answer.get("ContentType") or "no content type"
        print(f"Wrote {len(data)} bytes ({content_type}) to {args.out}", file=sys.stderr)
        return EXIT_OK
    try:
        sys.stdout.buffer.write(data)
        if sys.stdout.isatty() and not data.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `moorage invoke ... | head -c 10`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK
