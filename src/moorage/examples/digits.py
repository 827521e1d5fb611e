"""A model whose answers mean something, trained in seconds on data that ships with scikit-learn.

The seed's ResNet-50 can only run on random weights here (nothing may be downloaded), so its top-3 is
a demonstration of plumbing, not of vision. This example closes that gap: a small MLP learns the 8×8
handwritten digits bundled with scikit-learn, is saved as TorchScript `model.pt` (served by SageMaker's
default handlers, no inference.py at all), and its accuracy is then measured through an endpoint.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DigitsData", "load_digits_split", "train_digits_model"]


@dataclass(frozen=True)
class DigitsData:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_digits_split(*, test_fraction: float = 0.2, seed: int = 0) -> DigitsData:
    """scikit-learn's digits (1,797 images of 8×8 pixels), scaled to [0, 1], split once with a fixed seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - test_fraction))
    return DigitsData(x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]])


def train_digits_model(dest: Path, data: DigitsData, *, epochs: int = 40, seed: int = 0) -> float:
    """Train, save `dest/model.pt` (TorchScript: 64 pixels in, 10 scores out); return training accuracy."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for batch in torch.split(torch.randperm(len(x)), 64):
            optimiser.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(dim=1) == y).float().mean())
    dest.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch deprecates TorchScript, but it is what SageMaker's default model_fn loads.
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model).save(str(dest / "model.pt"))  # type: ignore[no-untyped-call]
    return accuracy
