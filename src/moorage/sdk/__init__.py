"""The Python client: `PyTorchModel`, `Predictor`, serializers. It talks to the server over HTTP only.

What SageMaker's Python SDK 2.x offers for hosting a PyTorch model, with the same names, arguments
and bytes on the wire, pointed at a moorage server (see docs/sagemaker-sdk.md):

    from moorage import PyTorchModel, JSONSerializer, JSONDeserializer
    model = PyTorchModel("s3://bucket/model.tar.gz", entry_point="inference.py")
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                             serializer=JSONSerializer(), deserializer=JSONDeserializer())
    predictor.predict({"url": "http://..."})
"""

from moorage.sdk.connection import Connection, ServerInfo
from moorage.sdk.deserializers import (
    BytesDeserializer,
    CSVDeserializer,
    JSONDeserializer,
    NumpyDeserializer,
    StringDeserializer,
)
from moorage.sdk.endpoints import EndpointRow, EndpointTable, list_endpoints
from moorage.sdk.environment import ClientEnvironment, configure
from moorage.sdk.errors import (
    DeploymentFailed,
    InvalidArgument,
    PackagingError,
    PredictionError,
    SdkError,
    ServerUnreachable,
    ServiceError,
)
from moorage.sdk.model import PyTorchModel
from moorage.sdk.predictor import Predictor, PyTorchPredictor
from moorage.sdk.serializers import CSVSerializer, IdentitySerializer, JSONSerializer, NumpySerializer
from moorage.sdk.waiting import wait_for_endpoint

__all__ = [
    "BytesDeserializer",
    "CSVDeserializer",
    "CSVSerializer",
    "ClientEnvironment",
    "Connection",
    "DeploymentFailed",
    "EndpointRow",
    "EndpointTable",
    "IdentitySerializer",
    "InvalidArgument",
    "JSONDeserializer",
    "JSONSerializer",
    "NumpyDeserializer",
    "NumpySerializer",
    "PackagingError",
    "PredictionError",
    "Predictor",
    "PyTorchModel",
    "PyTorchPredictor",
    "SdkError",
    "ServerInfo",
    "ServerUnreachable",
    "ServiceError",
    "StringDeserializer",
    "configure",
    "list_endpoints",
    "wait_for_endpoint",
]
