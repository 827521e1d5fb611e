"""The `moorage` command: parse flags, call the package, print; the only place that picks exit codes.

Each command group lives in `moorage.commands.<name>` and registers its sub-parsers here.
Exit codes: 0 success, 1 the operation failed (the message says why), 2 bad usage or configuration,
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from moorage import __version__
from moorage.errors import ConfigError, MoorageError

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Command groups, in the order `moorage --help` lists them.
COMMAND_MODULES = (
    "serve",
    "package",
    "upload",
    "deploy",
    "invoke",
    "endpoints",
    "update",
    "delete",
    "transform",
    "queue",
    "models",
    "logs",
    "capture",
    "credentials",
    "env",
)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moorage",
        description="Self-hosted, SageMaker-compatible hosting for PyTorch models.",
    )
    parser.add_argument("--version", action="version", version=f"moorage {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"moorage.commands.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"moorage: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except MoorageError as exc:
        print(f"moorage: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
