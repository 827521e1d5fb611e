"""Example models and artifacts: the seed's ResNet-50 handler, a tiny TorchScript model, a digits model.

Used by `make demo`, the tests and the benchmark. Builders import torch only when called.
"""
