"""moorage: self-hosted, SageMaker-compatible hosting for PyTorch models."""

__version__ = "0.1.0"
