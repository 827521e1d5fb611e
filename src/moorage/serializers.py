"""Request serializers, where SageMaker's SDK keeps them (`sagemaker.serializers`): `moorage.serializers`."""

from moorage.sdk.serializers import (
    CSVSerializer,
    IdentitySerializer,
    JSONSerializer,
    NumpySerializer,
    Serializer,
)

__all__ = ["CSVSerializer", "IdentitySerializer", "JSONSerializer", "NumpySerializer", "Serializer"]
