"""Fixtures for the handler tests: tiny TorchScript models in tmp dirs and user modules on sys.path."""

from __future__ import annotations

import importlib
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from moorage.handler.pipeline import Handler, HandlerOptions, HandlerRequest


def seeded_linear(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(16, 4).eval()


def save_torchscript(module: torch.nn.Module, path: Path, *, trace: bool = False) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream
        scripted = (
            torch.jit.trace(module, torch.zeros(1, 16))  # type: ignore[no-untyped-call]
            if trace
            else torch.jit.script(module)
        )
    scripted.save(str(path))


@pytest.fixture
def make_torchscript() -> Callable[..., torch.nn.Linear]:
    """Save a seeded Linear(16, 4) as TorchScript at a path; returns the eager module it came from."""

    def make(path: Path, seed: int = 0, trace: bool = False) -> torch.nn.Linear:
        module = seeded_linear(seed)
        save_torchscript(module, path, trace=trace)
        return module

    return make


@pytest.fixture
def reference() -> torch.nn.Linear:
    """The eager twin of the model in model_dir."""
    return seeded_linear()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model directory holding model.pt: a scripted, seeded Linear(16, 4)."""
    directory = tmp_path / "model"
    directory.mkdir()
    save_torchscript(seeded_linear(), directory / "model.pt")
    return directory


@pytest.fixture
def write_module(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Write a user module into model_dir/code and make it importable; forget it afterwards."""
    code_dir = model_dir / "code"
    code_dir.mkdir()
    monkeypatch.syspath_prepend(str(code_dir))
    written: list[str] = []

    def write(source: str, name: str = "inference") -> str:
        (code_dir / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        importlib.invalidate_caches()
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


@pytest.fixture
def load_handler(model_dir: Path) -> Callable[..., Handler]:
    """Handler.load on the model_dir fixture; `program` defaults to a module that does not exist."""

    def load(program: str = "moorage_test_no_such_module", **options: object) -> Handler:
        return Handler.load(
            model_dir=model_dir,
            program=program,
            options=HandlerOptions(**options),  # type: ignore[arg-type]
        )

    return load


@pytest.fixture
def make_request() -> Callable[..., HandlerRequest]:
    """Build a HandlerRequest; Content-Type and Accept are also forwarded as headers, as the worker does."""

    def build(
        body: bytes | str,
        content_type: str | None = "application/json",
        accept: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        request_id: str = "req-1",
    ) -> HandlerRequest:
        data = body.encode("utf-8") if isinstance(body, str) else body
        forwarded = headers
        if content_type is not None:
            forwarded = (("Content-Type", content_type), *forwarded)
        if accept is not None:
            forwarded = (("Accept", accept), *forwarded)
        return HandlerRequest(
            body=data, content_type=content_type, accept=accept, headers=forwarded, request_id=request_id
        )

    return build
