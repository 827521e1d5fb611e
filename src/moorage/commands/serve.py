"""`moorage serve` and `moorage serve-model`: the long-running commands."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from moorage.errors import ConfigError
from moorage.settings import Settings

if TYPE_CHECKING:
    from moorage.backends.local import ForkServer

__all__ = ["check_bind", "register"]

EXIT_OK = 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_serve(commands)
    _add_serve_model(commands)


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the SageMaker-compatible service (control plane, runtime, S3 store)",
        description=(
            "Run moorage: SageMaker's control plane and InvokeEndpoint on --port, an S3-compatible store "
            "on --s3-port, state in --data-dir. Point clients at it with "
            "AWS_ENDPOINT_URL_SAGEMAKER / AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME / AWS_ENDPOINT_URL_S3."
        ),
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="port of the SageMaker API (default 8080; 0 picks a free one)"
    )
    parser.add_argument("--s3-port", type=int, help="port of the embedded S3 store (default 9000)")
    parser.add_argument("--no-s3", action="store_true", help="do not run the embedded S3 store")
    parser.add_argument("--data-dir", help="state, artifact cache and logs (default ~/.local/share/moorage)")
    parser.add_argument("--backend", choices=("local", "ray"), help="where instances run (default local)")
    parser.add_argument("--ray-address", help="Ray cluster to join with --backend ray (default: start one)")
    parser.add_argument("--auth", choices=("none", "sigv4"), help="request authentication (default none)")
    parser.add_argument(
        "--allow-public-bind",
        action="store_true",
        default=None,
        help="allow a non-loopback --host while --auth is none",
    )
    parser.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    settings = Settings.from_environ(
        os.environ,
        host=args.host,
        port=args.port,
        s3_port=args.s3_port,
        data_dir=args.data_dir,
        backend=args.backend,
        ray_address=args.ray_address,
        auth=args.auth,
        allow_public_bind=args.allow_public_bind,
    )
    if args.no_s3:
        settings = dataclasses.replace(settings, s3_port=None)
    check_bind(settings.host, settings.allow_public_bind, auth_on=settings.auth != "none")
    environ = dict(os.environ)
    _harden()
    _hold_aws_keys(environ)
    from moorage.launch.lock import data_dir_lock

    # The lock first: a second server on a busy data dir is refused before torch starts importing.
    with data_dir_lock(settings.data_dir):
        forkserver = _launch_fork_server(settings, environ) if settings.backend == "local" else None

        from moorage.launch.loop import run_until_signalled
        from moorage.launch.serve import serve

        run_until_signalled(lambda stop: serve(settings, environ, stop, forkserver))
    return EXIT_OK


def _add_serve_model(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve-model",
        help="serve one model on /ping and /invocations, as a SageMaker container does",
        description=(
            "Serve one model.tar.gz (or an extracted model directory) exactly as SageMaker's PyTorch "
            "container does: GET /ping and POST /invocations. MODEL_DATA is a local path, file://, "
            "s3:// or https:// URL."
        ),
    )
    parser.add_argument("model_data", metavar="MODEL_DATA")
    parser.add_argument(
        "--multi-model",
        action="store_true",
        help="MODEL_DATA is a directory or s3:// prefix of models, loaded and unloaded through SageMaker's "
        "multi-model API (POST/GET/DELETE /models, POST /models/NAME/invoke)",
    )
    parser.add_argument("--entry-point", help="the handler file (default: code/inference.py in the archive)")
    parser.add_argument("--source-dir", help="directory holding the entry point and its modules")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: SAGEMAKER_BIND_TO_PORT, else 8080)")
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes (default: SAGEMAKER_MODEL_SERVER_WORKERS, else one per CPU core)",
    )
    parser.add_argument("--data-dir", help="where the artifact cache lives (default: ~/.local/share/moorage)")
    parser.add_argument("--log-file", type=Path, help="write the workers' output here instead of stderr")
    parser.add_argument(
        "--allow-public-bind",
        action="store_true",
        help="allow listening on a non-loopback address (there is no authentication)",
    )
    parser.set_defaults(func=_serve_model)


def _serve_model(args: argparse.Namespace) -> int:
    settings = Settings.from_environ(os.environ, data_dir=args.data_dir)
    check_bind(args.host, args.allow_public_bind or settings.allow_public_bind, auth_on=False)
    environ = dict(os.environ)
    _harden()
    _hold_aws_keys(environ)
    forkserver = _launch_fork_server(settings, environ)

    from moorage.launch.loop import run_until_signalled
    from moorage.launch.serve_model import ServeModelOptions, serve_model

    options = ServeModelOptions(
        model_data=args.model_data,
        entry_point=args.entry_point,
        source_dir=args.source_dir,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_file=args.log_file,
        multi_model=args.multi_model,
    )
    run_until_signalled(lambda stop: serve_model(settings, options, environ, stop, forkserver))
    return EXIT_OK


def _harden() -> None:
    """Non-dumpable from the start: no worker may read this process's environ or memory (docs/security.md)."""
    from moorage.sandbox import harden_server

    harden_server()


def _hold_aws_keys(environ: dict[str, str]) -> None:
    """The server's own AWS keys leave its environment, so no process it starts inherits them; its AWS
    clients get them from `server_credentials` (docs/security.md)."""
    from moorage import server_credentials

    server_credentials.take_from(os.environ)
    for name in server_credentials.SECRET_VARIABLES:
        environ.pop(name, None)


def _launch_fork_server(settings: Settings, environ: Mapping[str, str]) -> ForkServer | None:
    """Start the workers' fork server before the server's own imports (half a second here).

    Importing torch in the fork server is the longest part of a cold start; begun first, it overlaps
    with everything else instead of following it. The server adopts it once its event loop runs.
    """
    from moorage.backends.local import make_fork_server

    forkserver = make_fork_server(settings, environ)
    if forkserver is not None:
        forkserver.launch()
    return forkserver


def check_bind(host: str, allowed: bool, *, auth_on: bool) -> None:
    """Refuse to expose an unauthenticated server beyond this machine unless told so explicitly."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not auth_on and not allowed:
        raise ConfigError(
            f"Refusing to listen on {host} without authentication: anyone who can reach it could run code "
            "through it. Use --auth sigv4, or pass --allow-public-bind if you really mean it."
        )
