"""code/requirements.txt installed by real pip into a per-requirements directory, offline.

The local package is built without build isolation and pip may not use an index, so nothing here
needs the internet (PIP_NO_INDEX, PIP_NO_BUILD_ISOLATION reach pip through the environment).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moorage.artifacts import ModelSource, PreparedModel, prepare_model
from moorage.errors import RequirementsError
from moorage.settings import ArtifactPolicy

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def offline_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip reads this as "build isolation: off"
    # These requirements name a local package by path, which only an operator's trust allows.
    monkeypatch.setenv("MOORAGE_PIP_TRUST_REQUIREMENTS", "true")


def tiny_package(root: Path, version: str = "1.2.3") -> Path:
    (root / "moorage_tinypkg").mkdir(parents=True)
    (root / "moorage_tinypkg" / "__init__.py").write_text("VALUE = 42\n")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "moorage-tinypkg"\nversion = "{version}"\n'
    )
    return root


def model_dir_with(tmp_path: Path, requirements: str) -> Path:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "model.pt").write_bytes(b"w")
    (model / "code" / "requirements.txt").write_text(requirements)
    return model


def run(model: Path, cache: Path, logs: list[str]) -> PreparedModel:
    return prepare_model(
        ModelSource(str(model)),
        submit_directory=None,
        cache_dir=cache,
        policy=ArtifactPolicy(),
        log=logs.append,
        timeout_s=120,
    )


def test_local_package_lands_in_deps_dir_and_satisfied_ones_are_not_installed(tmp_path: Path) -> None:
    package = tiny_package(tmp_path / "pkg")
    model = model_dir_with(tmp_path, f"{package.as_uri()}\nrequests\n")
    logs: list[str] = []

    prepared = run(model, tmp_path / "cache", logs)

    assert prepared.deps_dir is not None
    assert prepared.deps_dir.parent == tmp_path / "cache" / "deps"
    installed = sorted(path.name for path in prepared.deps_dir.iterdir())
    assert installed == ["moorage_tinypkg", "moorage_tinypkg-1.2.3.dist-info"]  # requests: already there
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import moorage_tinypkg, sys; print(moorage_tinypkg.VALUE, moorage_tinypkg.__file__)",
        ],
        env={"PYTHONPATH": str(prepared.deps_dir)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert imported[0] == "42" and imported[1].startswith(str(prepared.deps_dir))
    assert "requirements.txt: installing moorage-tinypkg==1.2.3" in logs
    assert any(line.startswith("pip: ") for line in logs)
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []

    logs.clear()
    again = run(model, tmp_path / "cache", logs)

    assert again.deps_dir == prepared.deps_dir
    assert logs[-1] == f"requirements.txt: already installed in {prepared.deps_dir}"


def test_requirements_that_are_all_satisfied_install_nothing(tmp_path: Path) -> None:
    model = model_dir_with(tmp_path, "requests\n")
    logs: list[str] = []

    prepared = run(model, tmp_path / "cache", logs)

    assert prepared.deps_dir is not None and list(prepared.deps_dir.iterdir()) == []
    assert "requirements.txt: every requirement is already satisfied, nothing to install" in logs


def test_broken_requirement_gives_pip_output(tmp_path: Path) -> None:
    model = model_dir_with(tmp_path, "moorage-no-such-package-anywhere==9.9.9\n")

    with pytest.raises(RequirementsError) as caught:
        run(model, tmp_path / "cache", [])

    assert caught.value.message.startswith("failed to install required packages from code/requirements.txt")
    assert (
        "No matching distribution found for moorage-no-such-package-anywhere==9.9.9" in caught.value.message
    )
    assert list((tmp_path / "cache" / "deps").iterdir()) == []
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
