"""The Python client: `PyTorchModel`, `Predictor`, serializers. It talks to the server over HTTP only."""
