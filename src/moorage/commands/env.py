"""`moorage env`: the shell set-up that points every AWS client at a running moorage server.

`eval "$(moorage env)"` (bash/zsh), `moorage env --format fish | source`, or `moorage env --format
dotenv > .env` (IDEs, Jupyter, docker). stdout carries only the variables; what was written or created
along the way (the SageMaker SDK's defaults file, an access key, the notebook metadata file) is said
on stderr, with how to undo it. The computation is `moorage.sdk.environment`'s, shared with
`moorage.configure()`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from typing import TYPE_CHECKING

from moorage.commands._output import HelpFormatter

if TYPE_CHECKING:  # the SDK (boto3) is imported only when the command runs
    from moorage.sdk.environment import ClientEnvironment

__all__ = ["register", "render"]

EXIT_OK = 0

EPILOG = """\
examples:
  eval "$(moorage env)"                              # bash, zsh: aws, boto3, SageMaker SDK reach moorage
  moorage env --format fish | source                 # fish
  moorage env --format dotenv > .env                 # IDEs, Jupyter, docker --env-file
  eval "$(moorage env --auth sigv4)"                 # a server started with --auth sigv4: a new key
  eval "$(moorage env --execution-role SageMakerRole)"   # also make get_execution_role() work offline

The server is found by --url, else the server.json a running server writes in --data-dir, else
MOORAGE_URL, else the default data dir's server.json, else http://127.0.0.1:8080.
"""

_DOTENV_PLAIN = re.compile(r"^[\w./:@+,=-]*$")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "env",
        help="print the variables that point AWS clients (aws, boto3, SageMaker SDK) at a server",
        description=(
            "Print the variables that point every AWS client at a running moorage server: the "
            "endpoint URL of each API it serves, its S3 store, region and credentials. Also writes the "
            "SageMaker SDK's defaults file (default bucket) in the data dir and points "
            "SAGEMAKER_USER_CONFIG_OVERRIDE at it."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--url", help="the server's URL (default: see below)")
    parser.add_argument("--data-dir", help="the data dir of the server (default ~/.local/share/moorage)")
    parser.add_argument(
        "--format",
        choices=("sh", "fish", "dotenv"),
        default="sh",
        help="sh: export lines for bash/zsh (default); fish: set -gx lines; dotenv: NAME=value lines",
    )
    parser.add_argument(
        "--auth",
        choices=("none", "sigv4"),
        default="none",
        help="sigv4: for a server started with --auth sigv4, create an access key in its data dir "
        "(or use --access-key-id); none (default): dummy keys, which the default server accepts",
    )
    parser.add_argument(
        "--access-key-id",
        help="with --auth sigv4: use this existing key of the data dir instead of a new one",
    )
    parser.add_argument(
        "--execution-role",
        metavar="ROLE",
        help="also write /opt/ml/metadata/resource-metadata.json naming ROLE (a name or ARN), so that "
        "the SageMaker SDK's get_execution_role() returns it offline; never over an existing file",
    )
    parser.set_defaults(func=_env)


def render(environment: ClientEnvironment, shell: str) -> str:
    """The variables in `shell`'s syntax, each value quoted for it."""
    lines = [f"# moorage server {environment.url}"]
    if shell == "sh":
        lines.append("unset " + " ".join(environment.unset))
        lines += [f"export {name}={shlex.quote(value)}" for name, value in environment.variables.items()]
    elif shell == "fish":
        lines += [f"set -e {name}" for name in environment.unset]
        lines += [f"set -gx {name} {_fish_quote(value)}" for name, value in environment.variables.items()]
    else:
        lines += [f"{name}={_dotenv_quote(value)}" for name, value in environment.variables.items()]
    return "\n".join(lines) + "\n"


def _fish_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _dotenv_quote(value: str) -> str:
    if _DOTENV_PLAIN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _env(args: argparse.Namespace) -> int:
    from moorage.sdk.environment import client_environment

    environment = client_environment(
        args.url,
        args.data_dir,
        auth=args.auth,
        access_key_id=args.access_key_id,
        execution_role=args.execution_role,
    )
    sys.stdout.write(render(environment, args.format))
    note = f"moorage env: {environment.url} (from {environment.url_source}); SageMaker SDK defaults in "
    print(note + str(environment.defaults_file), file=sys.stderr)
    key = environment.access_key
    if key is not None and environment.key_created:
        print(
            f"moorage env: created access key {key.access_key_id} (admin); delete it with: "
            f"moorage credentials delete {key.access_key_id}"
            + (f" --data-dir {args.data_dir}" if args.data_dir else ""),
            file=sys.stderr,
        )
    if environment.notebook_role is not None:
        print(f"moorage env: {environment.notebook_role.describe()}", file=sys.stderr)
    return EXIT_OK
