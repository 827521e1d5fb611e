"""The PyTorch toolkit's default model_fn, input_fn, predict_fn and output_fn (spec §1.6, §2.8).

They run whenever the user module leaves one out (or there is no user module). Each has exactly the
toolkit's positional parameters, so the loader calls them by the same parameter-count rule as user
functions. Deviations, on purpose:
- model files are found relative to model_dir rather than the working directory (the toolkit's
  bare-filename check only works because TorchServe starts workers in the model directory), and the
  candidates in the "Exactly one" message are sorted (the toolkit lists them in directory order);
- NPZ and pickled NPY follow `codecs` (densified; pickle only when allowed);
- CSV whose columns mix integers and decimals (a record array from np.genfromtxt(dtype=None)) is
  flattened to numbers; SageMaker's default input_fn fails on it;
- predict_fn casts a floating input to the model's floating dtype, so the SDK's NumpySerializer
  (float64) works with a float32 model instead of failing "expected Float but found Double";
- predict_fn moves the model and calls eval() once, on its first request, instead of on every
  request: both are no-ops after the default model_fn, yet cost milliseconds per request on a large
  model (and walking the parameters to find out costs tens of microseconds on a small one).
"""

from __future__ import annotations

import functools
import itertools
import os
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.lib import recfunctions

from moorage.handler import codecs, content_types
from moorage.handler.toolkit_errors import ModelLoadError, UnsupportedFormatError

__all__ = ["DEFAULT_MODEL_FILENAME", "DefaultHandlers", "default_device"]

DEFAULT_MODEL_FILENAME = "model.pt"
_MODEL_EXTENSIONS = (".pt", ".pth")
_UNSEEN: Any = object()


@functools.cache
def default_device() -> torch.device:
    """The toolkit's device: the bare `cuda` (GPU 0 of what the worker sees), else the CPU.

    Read once per process (the toolkit asks on every call): a worker's devices do not change.
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class DefaultHandlers:
    """The four defaults, bound to the one setting that changes them (pickle in NPY requests)."""

    npy_allow_pickle: bool = False
    # model → the dtype of its first floating parameter, once predict_fn has prepared it.
    _dtypes: weakref.WeakKeyDictionary[torch.nn.Module, torch.dtype | None] = field(
        default_factory=weakref.WeakKeyDictionary, compare=False, repr=False
    )

    def model_fn(self, model_dir: str) -> Any:
        """Load `model.pt`, or the only *.pt / *.pth file at the top of model_dir, as TorchScript."""
        device = default_device()
        model_path = os.path.join(model_dir, DEFAULT_MODEL_FILENAME)
        if not os.path.exists(model_path):
            candidates = sorted(name for name in os.listdir(model_dir) if _is_model_file(model_dir, name))
            if len(candidates) != 1:
                raise ValueError(f"Exactly one .pth or .pt file is required for PyTorch models: {candidates}")
            model_path = os.path.join(model_dir, candidates[0])
        try:
            with warnings.catch_warnings():
                # TorchScript is deprecated upstream, but it is the format SageMaker's default
                # model_fn accepts; the warning would only tell users what they cannot change.
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated")
                model = torch.jit.load(model_path, map_location=device)  # type: ignore[no-untyped-call]
        except RuntimeError as exc:
            raise ModelLoadError(
                f"Failed to load {model_path}. Please ensure model is saved using torchscript."
            ) from exc
        return model.to(device)

    def input_fn(self, input_data: bytes | str, content_type: str | None) -> torch.Tensor:
        """JSON and CSV become float32 tensors; NPY (and NPZ) keep their dtype."""
        array = codecs.decode(input_data, content_type, allow_pickle=self.npy_allow_pickle)
        if array.dtype.names is not None and _numeric_fields(array.dtype):
            # CSV whose columns mix ints and floats decodes to a record array, which SageMaker's
            # default input_fn then fails to convert; flatten it to plain numbers instead.
            array = recfunctions.structured_to_unstructured(array, dtype=np.float64)
        if content_type in content_types.UTF8_TYPES:
            if array.dtype.kind not in _NUMERIC_KINDS:
                # Text (a CSV header line, a JSON list of strings), objects or records: let torch
                # refuse it, so the 500 carries the toolkit's words ("can't convert np.ndarray of type
                # numpy.str_. The only supported types are: ...", the list being this torch's).
                return torch.from_numpy(array)
            # Same float32 tensor as the toolkit's torch.FloatTensor(array), built the fast way.
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        else:
            tensor = torch.from_numpy(array)
        device = default_device()
        return tensor if device.type == "cpu" else tensor.to(device)

    def predict_fn(self, data: torch.Tensor, model: Any) -> Any:
        """Run the model on the data without autograd, in eval mode, on the default device."""
        device = default_device()
        with torch.no_grad():
            if isinstance(model, torch.nn.Module):
                dtype = self._dtypes.get(model, _UNSEEN)
                if dtype is _UNSEEN:
                    # First request on this model: move it and switch it to eval once; a model's
                    # device and dtype do not change between requests, so the answer is kept.
                    model, dtype = _prepared(model, device)
                    self._dtypes[model] = dtype
                if (
                    isinstance(data, torch.Tensor)
                    and data.is_floating_point()
                    and dtype not in (None, data.dtype)
                ):
                    data = data.to(dtype)
            if isinstance(data, torch.Tensor) and data.device != device:
                data = data.to(device)
            return model(data)

    def output_fn(self, prediction: Any, accept: str) -> bytes | str:
        """Encode for the first Accept entry with an encoder; the body only, never a tuple."""
        if type(prediction) is torch.Tensor:
            prediction = prediction.detach().cpu().numpy().tolist()
        for entry in content_types.accept_entries(accept):
            if entry in codecs.ENCODABLE_TYPES:
                encoded = codecs.encode(prediction, entry)
                if entry == content_types.CSV and isinstance(encoded, str):
                    return encoded.encode("utf-8")
                return encoded
        raise UnsupportedFormatError(accept)


_NUMERIC_KINDS = frozenset("biuf")  # bool, signed, unsigned, floating: what float32 holds


def _numeric_fields(dtype: np.dtype[Any]) -> bool:
    return all(dtype[name].kind in _NUMERIC_KINDS for name in dtype.names or ())


def _is_model_file(model_dir: str, name: str) -> bool:
    path = os.path.join(model_dir, name)
    return os.path.isfile(path) and os.path.splitext(name)[1] in _MODEL_EXTENSIONS


def _prepared(model: torch.nn.Module, device: torch.device) -> tuple[torch.nn.Module, torch.dtype | None]:
    """The toolkit calls model.to(device) and model.eval() on every request; skip them when no-ops.

    Also returns the dtype of the first floating parameter or buffer, found in the same single pass.
    """
    first_device: torch.device | None = None
    floating: torch.dtype | None = None
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        first_device = first_device or tensor.device
        if tensor.is_floating_point():
            floating = tensor.dtype
            break
    if first_device is not None and not _same_device(first_device, device):
        model = model.to(device)
    if model.training:
        model.eval()
    return model, floating


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    if actual.type != wanted.type:
        return False
    if wanted.index is None and wanted.type == "cuda":
        return actual.index == torch.cuda.current_device()
    return wanted.index is None or actual.index == wanted.index
