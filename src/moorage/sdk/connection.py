"""How the SDK reaches a moorage server: its URL, credentials, region, boto3 clients, and errors.

The SDK speaks to the server only through its public HTTP API, with the same boto3 clients a user
would build, so SigV4 works when the server checks signatures. Where things come from:

- the server URL: the `endpoint_url` argument, else MOORAGE_URL, else AWS_ENDPOINT_URL_SAGEMAKER,
  else http://127.0.0.1:8080 (`moorage serve`'s default). The runtime API is on the same port.
- credentials: boto3's usual chain (environment, profile, ...). When it finds none, the SDK signs with
  dummy credentials: the default server does not check them.
- region: boto3's (AWS_REGION, AWS_DEFAULT_REGION, profile), else the server's own (from
  `GET /_moorage/info`), else us-east-1.

Every botocore failure is translated here, once, into `moorage.sdk.errors`.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from moorage import __version__
from moorage.sdk.errors import InvalidArgument, PredictionError, SdkError, ServerUnreachable, ServiceError

__all__ = ["DEFAULT_URL", "Connection", "ServerInfo", "resolve_url"]

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_REGION = "us-east-1"
DUMMY_CREDENTIALS = ("moorage", "moorage")  # what the SDK signs with when boto3 finds no credentials
# The server's own invocation timeout is 60 s (spec §4.3); SageMaker's SDK reads for 80 s.
_RUNTIME_READ_TIMEOUT_S = 80
_CONTROL_READ_TIMEOUT_S = 60
_INFO_TIMEOUT_S = 10
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
# Answers that mean "who are you?": with dummy credentials, the server checks signatures.
_REFUSED_CODES = frozenset(
    {
        "403",
        "Forbidden",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "MissingAuthenticationToken",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "UnrecognizedClientException",
    }
)


@dataclass(frozen=True)
class ServerInfo:
    """What `GET /_moorage/info` says: the S3 endpoint the server reads s3:// model data from, etc."""

    version: str
    s3_url: str | None
    region: str
    account_id: str


def resolve_url(endpoint_url: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """The server URL and, for error messages, where it came from."""
    url, source = DEFAULT_URL, "the default; set MOORAGE_URL to change it"
    if endpoint_url:
        url, source = endpoint_url.strip(), "the endpoint_url argument"
    else:
        for variable in ("MOORAGE_URL", "AWS_ENDPOINT_URL_SAGEMAKER"):
            if environ.get(variable, "").strip():
                url, source = environ[variable].strip(), variable
                break
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise InvalidArgument(f"The server URL {url!r} (from {source}) must start with http:// or https://.")
    return url.rstrip("/"), source


class Connection:
    """One server, one boto3 session; clients are made on first use."""

    def __init__(
        self,
        endpoint_url: str | None = None,
        session: boto3.Session | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.url, self.url_source = resolve_url(endpoint_url, os.environ if environ is None else environ)
        given = session or boto3.Session()
        self.session = _with_credentials(given)
        self.dummy_credentials = self.session is not given
        self._info: ServerInfo | None = None
        self._info_fetched = False

    def __repr__(self) -> str:
        return f"Connection({self.url!r})"

    # -- what the server says about itself ----------------------------------------------------------
    def server_info(self) -> ServerInfo | None:
        """The server's `/_moorage/info`, or None when the server does not have one (not moorage)."""
        if not self._info_fetched:
            self._info = self._fetch_info()
            self._info_fetched = True
        return self._info

    def _fetch_info(self) -> ServerInfo | None:
        try:
            with urllib.request.urlopen(f"{self.url}/_moorage/info", timeout=_INFO_TIMEOUT_S) as answer:
                data = json.loads(answer.read())
        except urllib.error.HTTPError:
            return None
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(self.url, exc) from None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        s3_url = data.get("s3_url")
        return ServerInfo(
            version=str(data.get("version", "")),
            s3_url=_reachable_from_here(str(s3_url), self.url) if s3_url else None,
            region=str(data.get("region") or DEFAULT_REGION),
            account_id=str(data.get("account_id", "")),
        )

    @cached_property
    def region(self) -> str:
        if self.session.region_name:
            return str(self.session.region_name)
        info = self.server_info()
        return info.region if info is not None else DEFAULT_REGION

    # -- clients --------------------------------------------------------------------------------------
    @cached_property
    def sagemaker(self) -> Any:
        return self.session.client(
            "sagemaker",
            endpoint_url=self.url,
            region_name=self.region,
            config=_config(_CONTROL_READ_TIMEOUT_S),
        )

    @cached_property
    def runtime(self) -> Any:
        return self.session.client(
            "sagemaker-runtime",
            endpoint_url=self.url,
            region_name=self.region,
            config=_config(_RUNTIME_READ_TIMEOUT_S),
        )

    def s3(self, endpoint_url: str | None = None) -> Any:
        """An S3 client for `endpoint_url`, or boto3's own resolution (AWS_ENDPOINT_URL_S3, ...) for None."""
        config = _config(_CONTROL_READ_TIMEOUT_S)
        if endpoint_url is not None:
            config = config.merge(Config(s3={"addressing_style": "path"}))
        return self.session.client("s3", endpoint_url=endpoint_url, region_name=self.region, config=config)

    def s3_for_model_data(self) -> Any:
        """Where `s3://` model data lives: the S3 endpoint boto3 is configured with, if any; otherwise
        the store the server reads from (its embedded one), and only then AWS itself."""
        configured = self.s3()
        unconfigured = self.session.client(
            "s3", region_name=self.region, config=Config(ignore_configured_endpoint_urls=True)
        )
        if configured.meta.endpoint_url != unconfigured.meta.endpoint_url:
            return configured
        info = self.server_info()
        if info is not None and info.s3_url:
            return self.s3(info.s3_url)
        return configured

    # -- calls ------------------------------------------------------------------------------------------
    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """A SageMaker control-plane operation by its API name (e.g. "CreateModel")."""
        with self.translated(self.url):
            result: dict[str, Any] = getattr(self.sagemaker, xform_name(operation))(**params)
        return result

    def invoke(self, **params: Any) -> dict[str, Any]:
        with self.translated(self.url):
            result: dict[str, Any] = self.runtime.invoke_endpoint(**params)
        return result

    def invoke_stream(self, **params: Any) -> Iterator[bytes]:
        """InvokeEndpointWithResponseStream: each PayloadPart's bytes as it arrives; an in-stream error
        (ModelStreamError, InternalStreamFailure) raises as the SDK's error, after the parts before it."""
        with self.translated(self.url):
            response = self.runtime.invoke_endpoint_with_response_stream(**params)
            with contextlib.closing(response["Body"]) as events:
                for event in events:
                    if "PayloadPart" in event:
                        yield event["PayloadPart"]["Bytes"]

    @contextlib.contextmanager
    def translated(self, where: str, what: str | None = None) -> Iterator[None]:
        """botocore's exceptions → the SDK's; `what` (e.g. "Could not read s3://b/k") prefixes messages."""
        try:
            yield
        except SdkError:
            raise  # already translated (our ServiceError is a ClientError too)
        except ClientError as exc:
            response: dict[str, Any] = exc.response
            error = response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            text = str(error.get("Message") or code)
            message = f"{what}: {text} ({code})" if what else f"{text} ({code} from {exc.operation_name})"
            if code in _REFUSED_CODES and self.dummy_credentials:
                message += (
                    ". No AWS credentials were found, so the SDK signed with dummy ones; this server checks "
                    "them: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to a key from "
                    "`moorage credentials create`."
                )
            kind = PredictionError if code in ("ModelError", "ModelStreamError") else ServiceError
            raise kind(response, exc.operation_name, message) from None
        except S3UploadFailedError as exc:
            # boto3's transfer manager flattens the S3 answer into a string; keep it, as a ServiceError.
            text = f"{what}: {exc}" if what else str(exc)
            raise ServiceError(
                {"Error": {"Code": "S3UploadFailed", "Message": str(exc)}}, "PutObject", text
            ) from None
        except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError) as exc:
            raise self._unreachable(where, exc) from None
        except ReadTimeoutError as exc:
            raise ServerUnreachable(f"{where} took too long to answer: {exc}") from None

    def _unreachable(self, where: str, exc: BaseException) -> ServerUnreachable:
        if where == self.url:
            return ServerUnreachable(
                f"Could not reach the moorage server at {self.url} (from {self.url_source}): {exc}. "
                "Is `moorage serve` running? Point MOORAGE_URL (or endpoint_url=) at it."
            )
        return ServerUnreachable(f"Could not reach {where}: {exc}")


def _config(read_timeout: int) -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=10,
        read_timeout=read_timeout,
        user_agent_extra=f"moorage-sdk/{__version__}",
    )


def _with_credentials(session: boto3.Session) -> boto3.Session:
    """The session itself when boto3 finds credentials; else the same region with dummy ones."""
    if session.get_credentials() is not None:
        return session
    key, secret = DUMMY_CREDENTIALS
    return boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=session.region_name)


def _reachable_from_here(s3_url: str, server_url: str) -> str:
    """A server listening on every interface reports 0.0.0.0; reach its store by the host we used."""
    s3 = urllib.parse.urlsplit(s3_url)
    if (s3.hostname or "") not in _WILDCARD_HOSTS:
        return s3_url
    server_host = urllib.parse.urlsplit(server_url).hostname or "127.0.0.1"
    host = f"[{server_host}]" if ":" in server_host else server_host
    return urllib.parse.urlunsplit(s3._replace(netloc=f"{host}:{s3.port}" if s3.port else host))
