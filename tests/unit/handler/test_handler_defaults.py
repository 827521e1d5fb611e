"""The PyTorch toolkit's default model_fn / input_fn / predict_fn / output_fn (spec §1.6, §2.8)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse
import torch

from moorage.handler.defaults import DefaultHandlers, default_device
from moorage.handler.toolkit_errors import ModelLoadError, UnsupportedFormatError

MakeTorchScript = Callable[..., torch.nn.Linear]
DEFAULTS = DefaultHandlers()
ROW = [[float(i) / 10 for i in range(16)]]


def npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# --- model_fn -------------------------------------------------------------------------------------


def test_model_pt_is_preferred(
    model_dir: Path, reference: torch.nn.Linear, make_torchscript: MakeTorchScript
) -> None:
    make_torchscript(model_dir / "other.pth", seed=1)
    model = DEFAULTS.model_fn(str(model_dir))
    x = torch.ones(1, 16)
    torch.testing.assert_close(model(x.to(default_device())).cpu(), reference(x))


def test_the_only_pt_or_pth_file_is_loaded(tmp_path: Path, make_torchscript: MakeTorchScript) -> None:
    eager = make_torchscript(tmp_path / "weights.pth", seed=3, trace=True)
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "sub.pt").mkdir()  # a directory is not a model file
    model = DEFAULTS.model_fn(str(tmp_path))
    x = torch.ones(2, 16)
    torch.testing.assert_close(model(x.to(default_device())).cpu(), eager(x))


def test_no_model_file_is_the_exact_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as caught:
        DEFAULTS.model_fn(str(tmp_path))
    assert str(caught.value) == "Exactly one .pth or .pt file is required for PyTorch models: []"


def test_two_model_files_are_listed_in_the_value_error(tmp_path: Path) -> None:
    (tmp_path / "b.pth").write_bytes(b"x")
    (tmp_path / "a.pt").write_bytes(b"x")
    with pytest.raises(ValueError) as caught:
        DEFAULTS.model_fn(str(tmp_path))
    assert str(caught.value) == (
        "Exactly one .pth or .pt file is required for PyTorch models: ['a.pt', 'b.pth']"
    )


def test_files_are_found_relative_to_model_dir_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_torchscript: MakeTorchScript
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    make_torchscript(model_dir / "only.pt")
    monkeypatch.chdir(tmp_path)  # the toolkit's bare-filename check would miss only.pt from here
    assert isinstance(DEFAULTS.model_fn(str(model_dir)), torch.jit.ScriptModule)


@pytest.mark.parametrize("save", ["state_dict", "eager"])
def test_eager_files_are_a_model_load_error(tmp_path: Path, save: str) -> None:
    module = torch.nn.Linear(16, 4)
    torch.save(module.state_dict() if save == "state_dict" else module, tmp_path / "model_0.pth")
    with pytest.raises(ModelLoadError) as caught:
        DEFAULTS.model_fn(str(tmp_path))
    path = os.path.join(str(tmp_path), "model_0.pth")
    assert str(caught.value) == f"Failed to load {path}. Please ensure model is saved using torchscript."
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_model_is_on_the_default_device(model_dir: Path) -> None:
    model = DEFAULTS.model_fn(str(model_dir))
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(model.parameters()).device.type == expected


# --- input_fn -------------------------------------------------------------------------------------


def test_json_and_csv_become_float32() -> None:
    from_json = DEFAULTS.input_fn(json.dumps(ROW), "application/json")
    assert from_json.dtype == torch.float32
    assert from_json.shape == (1, 16)
    from_csv = DEFAULTS.input_fn("1,2\n3,4\n", "text/csv")
    assert from_csv.dtype == torch.float32
    torch.testing.assert_close(from_csv.cpu(), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_csv_with_mixed_int_and_decimal_columns_is_flattened() -> None:
    tensor = DEFAULTS.input_fn("1.5,2\n3,4\n", "text/csv")
    torch.testing.assert_close(tensor.cpu(), torch.tensor([[1.5, 2.0], [3.0, 4.0]]))


def test_npy_keeps_its_dtype() -> None:
    assert DEFAULTS.input_fn(npy(np.ones((1, 16))), "application/x-npy").dtype == torch.float64
    assert DEFAULTS.input_fn(npy(np.arange(3, dtype=np.int32)), "application/x-npy").dtype == torch.int32


def test_npz_sparse_and_dense_become_tensors() -> None:
    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, scipy.sparse.coo_matrix(np.eye(2, dtype=np.float32)))
    sparse = DEFAULTS.input_fn(buffer.getvalue(), "application/x-npz")
    torch.testing.assert_close(sparse.cpu(), torch.eye(2))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, only=np.full((1, 16), 2.0))
    dense = DEFAULTS.input_fn(buffer.getvalue(), "application/x-npz")
    assert dense.shape == (1, 16)
    assert dense.dtype == torch.float64


def test_pickled_npy_is_refused_unless_allowed() -> None:
    body = npy(np.array([[1.0, 2.0]], dtype=object))
    with pytest.raises(ValueError, match="MOORAGE_NPY_ALLOW_PICKLE"):
        DEFAULTS.input_fn(body, "application/x-npy")
    with pytest.raises(TypeError):  # SageMaker's behaviour once unpickled: from_numpy rejects objects
        DefaultHandlers(npy_allow_pickle=True).input_fn(body, "application/x-npy")


def test_content_type_with_parameters_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError, match=r"^Content type application/json; charset=utf-8 "):
        DEFAULTS.input_fn(b"[[1.0]]", "application/json; charset=utf-8")


# --- predict_fn -----------------------------------------------------------------------------------


def test_predict_runs_without_grad_and_matches_the_model(model_dir: Path, reference: torch.nn.Linear) -> None:
    model = DEFAULTS.model_fn(str(model_dir))
    data = torch.tensor(ROW)
    out = DEFAULTS.predict_fn(data, model)
    assert not out.requires_grad
    torch.testing.assert_close(out.cpu(), reference(data).detach())


def test_float64_input_is_cast_to_the_model_dtype(model_dir: Path, reference: torch.nn.Linear) -> None:
    model = DEFAULTS.model_fn(str(model_dir))
    out = DEFAULTS.predict_fn(torch.tensor(ROW, dtype=torch.float64), model)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), reference(torch.tensor(ROW)).detach())


def test_predict_puts_the_model_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.9)).train()
    data = torch.ones(1, 4)
    first = DEFAULTS.predict_fn(data, model)
    assert not model.training
    assert not model[1].training
    torch.testing.assert_close(first, DEFAULTS.predict_fn(data, model))


# --- output_fn ------------------------------------------------------------------------------------


def test_tensor_output_as_json_str() -> None:
    encoded = DEFAULTS.output_fn(torch.tensor([[1.0, 2.5]]), "application/json")
    assert encoded == "[[1.0, 2.5]]"


def test_csv_output_is_bytes() -> None:
    assert DEFAULTS.output_fn(torch.tensor([[1.0, 2.5]]), "text/csv") == b"1.0,2.5\n"


def test_npy_output_is_bytes() -> None:
    encoded = DEFAULTS.output_fn(torch.tensor([[1.0, 2.5]]), "application/x-npy")
    assert isinstance(encoded, bytes)
    np.testing.assert_array_equal(np.load(io.BytesIO(encoded)), [[1.0, 2.5]])


def test_first_supported_accept_entry_wins_and_q_parameters_block_a_match() -> None:
    out = torch.tensor([[1.0]])
    assert DEFAULTS.output_fn(out, "text/csv;q=0.9, application/json") == "[[1.0]]"
    assert DEFAULTS.output_fn(out, "image/png, text/csv , application/json") == b"1.0\n"


def test_no_supported_accept_entry_is_unsupported_with_the_whole_accept() -> None:
    with pytest.raises(UnsupportedFormatError, match=r"^Content type image/png, text/csv;q=1 is not"):
        DEFAULTS.output_fn(torch.tensor([1.0]), "image/png, text/csv;q=1")
