"""`moorage invoke ENDPOINT --stream`: one InvokeEndpointWithResponseStream, each part printed as it
arrives.

Each PayloadPart's bytes go to stdout (or -o FILE) the moment they arrive, flushed, so a handler that
yields tokens is watched token by token. An in-stream error (ModelStreamError: the handler raised after
its first part) is printed after the parts that came before it, and the command exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from moorage.commands._session import connect, user_errors
from moorage.errors import ConfigError, MoorageError

__all__ = ["invoke_stream"]


def invoke_stream(args: argparse.Namespace, request: dict[str, Any]) -> int:
    """Send `request` (InvokeEndpoint's parameters, as `moorage invoke` built them) and write the parts as
    they come; returns the exit code."""
    from moorage.sdk import PredictionError

    if "TargetModel" in request:
        raise ConfigError("InvokeEndpointWithResponseStream has no TargetModel; leave --target-model out")
    connection = connect(args)
    out = args.out.open("wb") if args.out is not None else sys.stdout.buffer
    written = 0
    try:
        with user_errors(args.endpoint):
            for part in connection.invoke_stream(**request):
                out.write(part)
                out.flush()
                written += len(part)
    except PredictionError as exc:
        message = exc.response.get("Error", {}).get("Message") or exc.message
        raise MoorageError(
            f"\nthe model failed while streaming, after {written} bytes: {message}\n"
            f"See its logs: moorage logs {args.endpoint}"
        ) from None
    except BrokenPipeError:  # `moorage invoke --stream ... | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        if args.out is not None:
            out.close()
            print(f"Wrote {written} bytes to {args.out}", file=sys.stderr)
    return 0
