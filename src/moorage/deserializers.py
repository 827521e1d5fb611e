"""Response deserializers, where SageMaker's SDK keeps them (`sagemaker.deserializers`)."""

from moorage.sdk.deserializers import (
    BytesDeserializer,
    CSVDeserializer,
    Deserializer,
    JSONDeserializer,
    NumpyDeserializer,
    StringDeserializer,
)

__all__ = [
    "BytesDeserializer",
    "CSVDeserializer",
    "Deserializer",
    "JSONDeserializer",
    "NumpyDeserializer",
    "StringDeserializer",
]
