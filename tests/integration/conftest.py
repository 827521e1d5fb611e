"""Artifacts and helper servers shared by the integration tests, built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from moorage.examples.builders import pack, seed_model_dir, test_image, tiny_model_dir
from support.handlers import FAULT_HANDLER
from support.servers import static_files


@dataclass(frozen=True)
class Artifacts:
    root: Path
    image_png: Path
    image_jpg: Path
    tiny_dir: Path
    tiny_tar: Path
    seed_dir: Path
    seed_tar: Path
    fault_tar: Path


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    root = tmp_path_factory.mktemp("artifacts")
    png = test_image(root / "images" / "predict.png")
    jpg = test_image(root / "images" / "predict.jpg")
    tiny = tiny_model_dir(root / "tiny")
    seed = seed_model_dir(root / "seed", images=[png, jpg])
    fault = root / "fault"
    (fault / "code").mkdir(parents=True)
    (fault / "code" / "inference.py").write_text(FAULT_HANDLER)
    (fault / "README").write_text("a model with no weights; its handler misbehaves on request\n")
    return Artifacts(
        root=root,
        image_png=png,
        image_jpg=jpg,
        tiny_dir=tiny,
        tiny_tar=pack(tiny, root / "tiny.tar.gz"),
        seed_dir=seed,
        seed_tar=pack(seed, root / "seed.tar.gz"),
        fault_tar=pack(fault, root / "fault.tar.gz"),
    )


@pytest.fixture(scope="session")
def image_server(artifacts: Artifacts) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 handing out the test images (the seed's input_fn downloads URLs)."""
    with static_files(artifacts.image_png.parent) as url:
        yield url
