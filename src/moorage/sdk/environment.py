"""Point every AWS client at a running moorage server: the variables, the SageMaker SDK's defaults file,
and, on request, the notebook metadata file behind `get_execution_role()`.

One computation, two front doors: `moorage env` prints the variables for a shell (or a .env file),
`moorage.configure()` sets them in the current process, so a notebook needs one cell. Either way:

- every API the server answers on its port gets its `AWS_ENDPOINT_URL_<SERVICE>` (botocore >= 1.31
  sends each service to the URL its variable names), S3 gets the store the server reads from;
- region: the server's own; credentials: without `auth="sigv4"`, fixed dummy keys (the default
  server checks none); with it, a key created in the server's data dir, or `access_key_id`'s;
- the SageMaker SDK 2.x gets a defaults file naming its default bucket, so it never asks STS (at a
  fixed AWS address no variable redirects) for the account to derive one from.

The server is found by `url`, else `data_dir`'s server.json (what a running server writes there),
else MOORAGE_URL / AWS_ENDPOINT_URL_SAGEMAKER, else the default data dir's server.json, else
http://127.0.0.1:8080; `GET /_moorage/info` then gives its S3 store, region and account.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from moorage.credentials import AccessKey, create_key, ensure_data_dir, list_keys
from moorage.errors import ConfigError
from moorage.sdk.connection import DUMMY_CREDENTIALS, Connection, resolve_url
from moorage.sdk.notebook_role import NotebookRole, role_arn, write_notebook_metadata
from moorage.settings import Settings

__all__ = [
    "DEFAULTS_FILE",
    "SERVED_ON_API_PORT",
    "ClientEnvironment",
    "client_environment",
    "configure",
    "endpoint_variable",
]

# Service ids (botocore's names) of the APIs `moorage serve` answers on its main port.
SERVED_ON_API_PORT = (
    "SageMaker",
    "SageMaker Runtime",
    "IAM",
    "CloudWatch Logs",
    "Application Auto Scaling",
    "CloudWatch",
)
DEFAULTS_FILE = "sagemaker-config.yaml"
SECRET_VARIABLE = "AWS_SECRET_ACCESS_KEY"
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]"})


def endpoint_variable(service_id: str) -> str:
    """botocore's rule: `AWS_ENDPOINT_URL_` + the service id, upper case, spaces as underscores."""
    return "AWS_ENDPOINT_URL_" + service_id.replace(" ", "_").upper()


@dataclass(frozen=True)
class ClientEnvironment:
    """The variables that point clients at one server, and what was written or created for them."""

    url: str
    url_source: str
    variables: dict[str, str]
    defaults_file: Path
    access_key: AccessKey | None = None  # a real key (--auth sigv4): created here, or named by the user
    key_created: bool = False
    notebook_role: NotebookRole | None = field(default=None)
    # A session token from another AWS login would be sent along with these keys: drop it.
    unset: tuple[str, ...] = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

    def __repr__(self) -> str:
        """One `NAME=value` a line, the secret hidden: safe to leave in a notebook's output."""
        lines = [f"moorage server {self.url} (from {self.url_source})"]
        for name, value in self.variables.items():
            shown = "…" if name == SECRET_VARIABLE and self.access_key is not None else value
            lines.append(f"  {name}={shown}")
        if self.notebook_role is not None:
            lines.append(f"  get_execution_role() → {self.notebook_role.role_arn}")
        return "\n".join(lines)


def client_environment(
    url: str | None = None,
    data_dir: str | Path | None = None,
    *,
    auth: str | None = None,
    access_key_id: str | None = None,
    execution_role: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientEnvironment:
    """Find the server, ask it where its S3 store is, write the SDK's defaults file (in the data dir),
    make or look up a key for `auth="sigv4"`, and, with `execution_role`, write the notebook metadata
    file (never over an existing one). Returns the variables; sets nothing."""
    env = os.environ if environ is None else environ
    if auth not in (None, "none", "sigv4"):
        raise ConfigError(f"auth={auth!r} must be 'none' or 'sigv4'")
    if access_key_id and auth != "sigv4":
        raise ConfigError("an access key id is only used with --auth sigv4 (auth='sigv4')")
    settings = Settings.from_environ(env, data_dir=data_dir)
    server_url, source = _locate(url, settings.data_dir, explicit_dir=data_dir is not None, environ=env)
    connection = Connection(server_url, environ=env)
    connection.url_source = source  # its messages say where the URL came from
    info = connection.server_info()
    if info is None:
        raise ConfigError(f"{server_url} (from {source}) answers, but it is not a moorage server.")
    region = info.region  # the server's: its ARNs, and SigV4's scope when it checks signatures

    key: AccessKey | None = None
    created = False
    if auth == "sigv4":
        key, created = _access_key(settings.data_dir, server_url, access_key_id)
    key_id, secret = (key.access_key_id, key.secret_access_key) if key else DUMMY_CREDENTIALS

    variables = {"MOORAGE_URL": server_url}
    variables.update({endpoint_variable(service): server_url for service in SERVED_ON_API_PORT})
    if info.s3_url:
        variables[endpoint_variable("S3")] = info.s3_url
    variables.update(
        {
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_ACCESS_KEY_ID": key_id,
            SECRET_VARIABLE: secret,
        }
    )
    defaults = _write_defaults_file(settings.data_dir, f"sagemaker-{region}-{info.account_id}")
    variables["SAGEMAKER_USER_CONFIG_OVERRIDE"] = str(defaults)
    variables["SAGEMAKER_SUPPRESS_V2_WARNING"] = "1"  # SDK 2.x warns at every import that v3 exists
    role = None
    if execution_role:
        role = write_notebook_metadata(role_arn(execution_role, info.account_id))
    return ClientEnvironment(server_url, source, variables, defaults, key, created, role)


def configure(
    url: str | None = None,
    *,
    data_dir: str | Path | None = None,
    auth: str | None = None,
    access_key_id: str | None = None,
    execution_role: str | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> ClientEnvironment:
    """`eval "$(moorage env)"` for this process: boto3, the aws CLI run from here, and the SageMaker SDK
    all reach the moorage server from now on. A notebook's one set-up cell:

        import moorage
        moorage.configure()                     # or configure(execution_role="SageMakerRole")

    `execution_role` (a role name or ARN) also writes the notebook metadata file, so the SageMaker
    SDK's `get_execution_role()` returns that role offline; it is never written over an existing file.
    """
    target = os.environ if environ is None else environ
    result = client_environment(
        url,
        data_dir,
        auth=auth,
        access_key_id=access_key_id,
        execution_role=execution_role,
        environ=target,
    )
    for name in result.unset:
        target.pop(name, None)
    target.update(result.variables)
    return result


def _locate(
    url: str | None, data_dir: Path, *, explicit_dir: bool, environ: Mapping[str, str]
) -> tuple[str, str]:
    """The server URL and where it came from (for messages)."""
    if url:
        return resolve_url(url, {})[0], "--url"
    if not explicit_dir and any(
        environ.get(v, "").strip() for v in ("MOORAGE_URL", "AWS_ENDPOINT_URL_SAGEMAKER")
    ):
        return resolve_url(None, environ)
    from moorage.launch.serve import SERVER_INFO, server_info

    info = server_info(data_dir)
    if info and isinstance(info.get("url"), str):
        return _loopback_if_wildcard(str(info["url"])), f"{data_dir / SERVER_INFO}"
    if explicit_dir:
        raise ConfigError(
            f"No moorage server runs on the data dir {data_dir} (it has no {SERVER_INFO}). "
            f"Start one with: moorage serve --data-dir {data_dir}"
        )
    return resolve_url(None, environ)


def _loopback_if_wildcard(url: str) -> str:
    """A server bound to every interface writes 0.0.0.0; from this machine, loopback reaches it."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname not in _WILDCARD_HOSTS and f"[{parts.hostname}]" not in _WILDCARD_HOSTS:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port}"))


def _access_key(data_dir: Path, server_url: str, access_key_id: str | None) -> tuple[AccessKey, bool]:
    """The key named by `access_key_id`, or a new admin key, in the data dir of the server at the URL."""
    from moorage.launch.serve import server_info

    info = server_info(data_dir)
    running = _loopback_if_wildcard(str(info["url"])) if info and isinstance(info.get("url"), str) else None
    if running != server_url:
        raise ConfigError(
            f"--auth sigv4 uses the keys in the server's data dir, and the server at {server_url} "
            f"does not run on {data_dir}. Pass the data dir it was started with (--data-dir)."
        )
    if access_key_id is None:
        return create_key(data_dir, "admin"), True
    for key in list_keys(data_dir):
        if key.access_key_id == access_key_id:
            return key, False
    raise ConfigError(
        f"The access key {access_key_id} is not one of {data_dir}'s; `moorage credentials list "
        f"--data-dir {data_dir}` lists them."
    )


def _write_defaults_file(data_dir: Path, bucket: str) -> Path:
    """The SageMaker SDK's defaults (its config.yaml schema): the default bucket, so that the SDK never
    derives one from STS, and no telemetry (other SDK features send some to AWS)."""
    ensure_data_dir(data_dir)
    path = data_dir / DEFAULTS_FILE
    text = (
        "# Written by `moorage env` / moorage.configure(): the SageMaker Python SDK's defaults for\n"
        "# this moorage server (SAGEMAKER_USER_CONFIG_OVERRIDE points here).\n"
        "SchemaVersion: '1.0'\n"
        "SageMaker:\n"
        "  PythonSDK:\n"
        "    Modules:\n"
        "      TelemetryOptOut: true\n"
        "      Session:\n"
        f"        DefaultS3Bucket: {bucket}\n"
    )
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)
    return path
