"""`PyTorchModel`: SageMaker's `PyTorchModel(...).deploy(...)`, against a moorage server.

`deploy` does what SageMaker's SDK 2.x does (spec §6.2), minus its 30 s sleep: repack entry_point /
source_dir into code/ of a new model.tar.gz and store it where the server can read it
(`moorage.sdk.staging`), then CreateModel (with the environment the SDK sets, spec §1.3),
CreateEndpointConfig and CreateEndpoint under SageMaker's names, and wait for InService polling
every second. It returns a `PyTorchPredictor` (NumPy both ways), as SageMaker's does.

The constructor makes no call; `role` is accepted for compatibility and never needed (moorage assumes
no role). An ARN is recorded as the model's ExecutionRoleArn; a role name is recorded as the ARN that
the server's IAM GetRole would give it. `framework_version` and `py_version` are recorded only: the
model runs on the server's own PyTorch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3

from moorage.sdk.connection import Connection
from moorage.sdk.deserializers import Deserializer, NumpyDeserializer
from moorage.sdk.display import DeployDisplay, Progress, deploy_display
from moorage.sdk.errors import InvalidArgument, ServiceError
from moorage.sdk.predictor import PyTorchPredictor
from moorage.sdk.repack import CodeSpec, code_spec
from moorage.sdk.serializers import NumpySerializer, Serializer
from moorage.sdk.staging import stage_model_data
from moorage.sdk.waiting import wait_for_endpoint

__all__ = ["PyTorchModel", "name_from_base"]

BASE_NAME = "pytorch-inference"  # SageMaker names PyTorch models after the image: pytorch-inference-<ts>
CODE_DIR_IN_CONTAINER = "/opt/ml/model/code"
MAX_NAME = 63


def name_from_base(base: str, now: datetime | None = None) -> str:
    """SageMaker's unique names: `<base>-YYYY-MM-DD-HH-MM-SS-mmm` (UTC), cut to 63 characters."""
    moment = now or datetime.now(UTC)
    stamp = moment.strftime("%Y-%m-%d-%H-%M-%S-") + f"{moment.microsecond // 1000:03d}"
    return f"{base[: MAX_NAME - len(stamp) - 1]}-{stamp}"


class PyTorchModel:
    def __init__(
        self,
        model_data: str | Path,
        role: str | None = None,
        entry_point: str | Path | None = None,
        framework_version: str | None = None,
        py_version: str | None = None,
        *,
        source_dir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        image_uri: str | None = None,
        model_server_workers: int | None = None,
        endpoint_url: str | None = None,
        session: boto3.Session | None = None,
    ) -> None:
        """The positional order is SageMaker's. `model_data`: s3://, https://, a local path or file://.
        `endpoint_url`: the moorage server (else MOORAGE_URL, AWS_ENDPOINT_URL_SAGEMAKER, or
        http://127.0.0.1:8080); `session`: a boto3.Session for credentials and region (when boto3
        finds no credentials, dummy ones are used: the default server does not check them)."""
        self.model_data = str(model_data)
        self.role = role
        self.entry_point = entry_point
        self.framework_version = framework_version
        self.py_version = py_version
        self.source_dir = source_dir
        self.env = dict(env or {})
        self.name = name
        self.image_uri = image_uri
        self.model_server_workers = model_server_workers
        self.endpoint_name: str | None = None
        self._endpoint_url = endpoint_url
        self._session = session
        self._name_given = name is not None

    def __repr__(self) -> str:
        return f"PyTorchModel(model_data={self.model_data!r}, entry_point={self.entry_point!r})"

    @cached_property
    def connection(self) -> Connection:
        return Connection(self._endpoint_url, self._session)

    def deploy(
        self,
        initial_instance_count: int | None = None,
        instance_type: str | None = None,
        serializer: Serializer | None = None,
        deserializer: Deserializer | None = None,
        *,
        endpoint_name: str | None = None,
        tags: list[dict[str, str]] | None = None,
        wait: bool = True,
        progress: Progress = None,
    ) -> PyTorchPredictor:
        """Create the model, its endpoint config and the endpoint; with `wait`, return once it is
        InService (DeploymentFailed, with the server's FailureReason, if it fails to start).
        `progress`: a function told each step in a short sentence; True/False: a bar or nothing; by
        default a bar in Jupyter (a widget) or on a terminal, nothing in scripts (`sdk.display`)."""
        if instance_type is None or initial_instance_count is None:
            raise InvalidArgument(
                "deploy() needs instance_type and initial_instance_count, "
                "e.g. deploy(initial_instance_count=1, instance_type='ml.m5.large')."
            )
        if isinstance(initial_instance_count, bool) or not isinstance(initial_instance_count, int):
            raise InvalidArgument(
                f"initial_instance_count must be a whole number, not {initial_instance_count!r}."
            )
        code = code_spec(self.entry_point, self.source_dir)
        connection = self.connection
        base = self.name if self._name_given and self.name else BASE_NAME
        model_name = self.name if self._name_given and self.name else name_from_base(base)
        endpoint = endpoint_name or name_from_base(base)

        with deploy_display(progress) as display:
            self._deploy(
                display,
                connection,
                code,
                model_name,
                endpoint,
                base,
                initial_instance_count,
                instance_type,
                tags,
                wait,
            )
        return PyTorchPredictor(
            endpoint,
            serializer=serializer or NumpySerializer(),
            deserializer=deserializer or NumpyDeserializer(),
            connection=connection,
        )

    def _deploy(
        self,
        display: DeployDisplay,
        connection: Connection,
        code: CodeSpec,
        model_name: str,
        endpoint: str,
        base: str,
        initial_instance_count: int,
        instance_type: str,
        tags: list[dict[str, str]] | None,
        wait: bool,
    ) -> None:
        say = display.say
        model_data_url = stage_model_data(connection, self.model_data, code, name_from_base(base), say)
        self._create_model(connection, model_name, model_data_url, code, tags, say)
        say(f"Creating endpoint {endpoint} ({initial_instance_count} x {instance_type})")
        connection.call(
            "CreateEndpointConfig",
            EndpointConfigName=endpoint,  # SageMaker's SDK names the config after the endpoint
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model_name,
                    "InitialVariantWeight": 1,
                    "InitialInstanceCount": initial_instance_count,
                    "InstanceType": instance_type,
                }
            ],
            **({"Tags": tags} if tags else {}),
        )
        connection.call("CreateEndpoint", EndpointName=endpoint, EndpointConfigName=endpoint, Tags=tags or [])
        self.name, self.endpoint_name = model_name, endpoint
        if wait:
            started = time.monotonic()
            wait_for_endpoint(connection, endpoint, say, watch=display.watch)
            say(f"Endpoint {endpoint} is ready ({time.monotonic() - started:.0f} s)")

    def delete_model(self) -> None:
        """Delete the model this object created (its endpoints are not touched)."""
        if self.name is None:
            raise InvalidArgument("This model has not been created yet: call deploy() first.")
        self.connection.call("DeleteModel", ModelName=self.name)

    def _create_model(
        self,
        connection: Connection,
        model_name: str,
        model_data_url: str,
        code: CodeSpec,
        tags: list[dict[str, str]] | None,
        say: Callable[[str], None],
    ) -> None:
        container: dict[str, Any] = {
            "ModelDataUrl": model_data_url,
            "Environment": self._environment(code, connection.region),
        }
        if self.image_uri:
            container["Image"] = self.image_uri
        request: dict[str, Any] = {"ModelName": model_name, "PrimaryContainer": container}
        role_arn = self._role_arn(connection)
        if role_arn is not None:
            request["ExecutionRoleArn"] = role_arn
        if tags:
            request["Tags"] = tags
        say(f"Creating model {model_name} from {model_data_url}")
        try:
            connection.call("CreateModel", **request)
        except ServiceError as exc:
            # SageMaker's SDK reuses a model that already exists under an explicit name.
            if not (self._name_given and "already existing model" in exc.message):
                raise
            say(f"Model {model_name} already exists; using it")

    def _environment(self, code: CodeSpec, region: str) -> dict[str, str]:
        """The user's env, then what SageMaker's SDK sets over it (spec §1.3)."""
        environment = dict(self.env)
        if code.program is not None:
            environment["SAGEMAKER_PROGRAM"] = code.program
            environment["SAGEMAKER_SUBMIT_DIRECTORY"] = CODE_DIR_IN_CONTAINER
        environment["SAGEMAKER_CONTAINER_LOG_LEVEL"] = "20"
        environment["SAGEMAKER_REGION"] = region
        if self.model_server_workers:
            environment["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(self.model_server_workers)
        return environment

    def _role_arn(self, connection: Connection) -> str | None:
        if not self.role:
            return None
        if _is_role_arn(self.role):
            return self.role
        info = connection.server_info() if "/" not in self.role else None
        if info is None or not info.account_id:
            return None
        return f"arn:aws:iam::{info.account_id}:role/{self.role}"


def _is_role_arn(role: str) -> bool:
    """arn:<partition>:iam::<account>:role/<name>."""
    parts = role.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and parts[2] == "iam" and parts[5].startswith("role/")
