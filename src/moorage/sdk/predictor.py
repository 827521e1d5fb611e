"""`Predictor`: calls a deployed endpoint, and cleans it up; SageMaker's `Predictor`, over moorage.

`Predictor(endpoint_name)` attaches to any endpoint on the server (no call is made until one is
needed). `predict()` sends `serializer.serialize(data)` with `serializer.CONTENT_TYPE` and Accept
`", ".join(deserializer.ACCEPT)`, and returns `deserializer.deserialize(body, content_type)`, exactly
as SageMaker's does (spec §6.5). The base class sends bytes as they are and returns bytes;
`PyTorchPredictor`, what `PyTorchModel.deploy` returns, speaks NumPy (.npy) both ways.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3

from moorage.sdk.connection import Connection
from moorage.sdk.deserializers import BytesDeserializer, Deserializer, NumpyDeserializer
from moorage.sdk.errors import SdkError
from moorage.sdk.serializers import IdentitySerializer, NumpySerializer, Serializer

__all__ = ["Predictor", "PyTorchPredictor"]


class Predictor:
    def __init__(
        self,
        endpoint_name: str,
        *,
        endpoint_url: str | None = None,
        session: boto3.Session | None = None,
        serializer: Serializer | None = None,
        deserializer: Deserializer | None = None,
        connection: Connection | None = None,
    ) -> None:
        """`endpoint_url`/`session`: which server and credentials (see `moorage.sdk.connection`);
        `connection` shares an existing one instead."""
        self.endpoint_name = endpoint_name
        self.serializer: Serializer = serializer or self._default_serializer()
        self.deserializer: Deserializer = deserializer or self._default_deserializer()
        self.connection = connection or Connection(endpoint_url, session)
        self._endpoint_config_name: str | None = None
        self._model_names: list[str] | None = None

    def __repr__(self) -> str:
        """What a notebook shows for `predictor`: the endpoint, the server, and what goes in and out."""
        return (
            f"{type(self).__name__}({self.endpoint_name!r}, server={self.connection.url!r}, "
            f"content_type={self.content_type!r}, accept={self.accept!r})"
        )

    @staticmethod
    def _default_serializer() -> Serializer:
        return IdentitySerializer()

    @staticmethod
    def _default_deserializer() -> Deserializer:
        return BytesDeserializer()

    @property
    def content_type(self) -> str:
        return _joined(self.serializer.CONTENT_TYPE)

    @property
    def accept(self) -> str:
        return _joined(self.deserializer.ACCEPT)

    def predict(
        self,
        data: Any,
        initial_args: dict[str, Any] | None = None,
        target_model: str | None = None,
        target_variant: str | None = None,
        inference_id: str | None = None,
        custom_attributes: str | None = None,
    ) -> Any:
        """One InvokeEndpoint. `initial_args` may set any of its parameters (ContentType, Accept, ...)."""
        request = self._request(
            data, initial_args, target_model, target_variant, inference_id, custom_attributes
        )
        response = self.connection.invoke(**request)
        return self.deserializer.deserialize(
            response["Body"], response.get("ContentType", "application/octet-stream")
        )

    def predict_stream(
        self,
        data: Any,
        initial_args: dict[str, Any] | None = None,
        target_variant: str | None = None,
        inference_id: str | None = None,
        custom_attributes: str | None = None,
    ) -> Iterator[bytes]:
        """InvokeEndpointWithResponseStream, as SageMaker's `predict_stream` with its ByteIterator: the
        bytes of each PayloadPart as it arrives (a handler that yields sends one per item; docs/streaming.md).
        The deserializer is not applied: a part need not be a whole document. A handler error after the
        first part raises PredictionError (ModelStreamError) once the parts before it were yielded."""
        request = self._request(data, initial_args, None, target_variant, inference_id, custom_attributes)
        return self.connection.invoke_stream(**request)

    def _request(
        self,
        data: Any,
        initial_args: dict[str, Any] | None,
        target_model: str | None,
        target_variant: str | None,
        inference_id: str | None,
        custom_attributes: str | None,
    ) -> dict[str, Any]:
        request = dict(initial_args or {})
        request.setdefault("EndpointName", self.endpoint_name)
        request.setdefault("ContentType", self.content_type)
        request.setdefault("Accept", self.accept)
        optional = {
            "TargetModel": target_model,
            "TargetVariant": target_variant,
            "InferenceId": inference_id,
            "CustomAttributes": custom_attributes,
        }
        request.update({key: value for key, value in optional.items() if value is not None})
        request["Body"] = self.serializer.serialize(data)
        return request

    def delete_endpoint(self, delete_endpoint_config: bool = True) -> None:
        """Delete the endpoint and, by default, its endpoint config (as SageMaker's SDK does). The
        models stay; `delete_model()` still finds them afterwards."""
        if delete_endpoint_config:
            config = self._config_name()
            self._models()  # learn them while the config still exists
            self.connection.call("DeleteEndpointConfig", EndpointConfigName=config)
        self.connection.call("DeleteEndpoint", EndpointName=self.endpoint_name)

    def delete_model(self) -> None:
        """Delete every model the endpoint's config names; tries all before reporting a failure."""
        failures = []
        for name in self._models():
            try:
                self.connection.call("DeleteModel", ModelName=name)
            except SdkError as exc:
                failures.append(f"{name}: {exc.message}")
        if failures:
            raise SdkError("Could not delete every model: " + "; ".join(failures))

    def _config_name(self) -> str:
        if self._endpoint_config_name is None:
            described = self.connection.call("DescribeEndpoint", EndpointName=self.endpoint_name)
            self._endpoint_config_name = str(described["EndpointConfigName"])
        return self._endpoint_config_name

    def _models(self) -> list[str]:
        if self._model_names is None:
            config = self.connection.call("DescribeEndpointConfig", EndpointConfigName=self._config_name())
            self._model_names = [
                str(variant["ModelName"])
                for variant in config["ProductionVariants"]
                if "ModelName" in variant
            ]
        return self._model_names


class PyTorchPredictor(Predictor):
    """SageMaker's PyTorchPredictor: NumPy in (.npy), NumPy out, unless told otherwise."""

    @staticmethod
    def _default_serializer() -> Serializer:
        return NumpySerializer()

    @staticmethod
    def _default_deserializer() -> Deserializer:
        return NumpyDeserializer()


def _joined(value: str | Any) -> str:
    """SageMaker joins a tuple of media types with ", " for the header."""
    return value if isinstance(value, str) else ", ".join(value)
