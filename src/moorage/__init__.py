"""moorage: self-hosted, SageMaker-compatible hosting for PyTorch models.

The public Python API is the SDK's (`moorage.sdk`): `PyTorchModel`, `Predictor` and the serializers.
They are imported on first use, not here: the server and its workers import `moorage.*` too and
should not pay for boto3 and the SDK at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from moorage.sdk import (
        BytesDeserializer,
        CSVDeserializer,
        CSVSerializer,
        DeploymentFailed,
        IdentitySerializer,
        JSONDeserializer,
        JSONSerializer,
        NumpyDeserializer,
        NumpySerializer,
        PredictionError,
        Predictor,
        PyTorchModel,
        PyTorchPredictor,
        SdkError,
        StringDeserializer,
        configure,
        list_endpoints,
    )

__all__ = [
    "BytesDeserializer",
    "CSVDeserializer",
    "CSVSerializer",
    "DeploymentFailed",
    "IdentitySerializer",
    "JSONDeserializer",
    "JSONSerializer",
    "NumpyDeserializer",
    "NumpySerializer",
    "PredictionError",
    "Predictor",
    "PyTorchModel",
    "PyTorchPredictor",
    "SdkError",
    "StringDeserializer",
    "__version__",
    "configure",
    "list_endpoints",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("moorage.sdk"), name)
    raise AttributeError(f"module 'moorage' has no attribute {name!r}")
