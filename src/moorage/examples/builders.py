"""Build example model artifacts from nothing: no download, seeded random weights, generated images.

- `tiny_model_dir`: a TorchScript Linear(16 → 4) saved as model.pt, served by the default handlers.
- `seed_model_dir`: the seed post's ResNet-50 head (model_0.pth) with its inference.py under code/.
- `test_image`: a deterministic picture to classify.
- `pack`: a model directory → model.tar.gz, as SageMaker expects it.

The seed's output_fn names only 9 classes for a 10-way head, so an image whose top 3 includes class 9
makes it raise KeyError (a bug in the post, kept as is). `seed_model_dir` therefore picks the first
weight seed for which the given images avoid class 9, as shared/peers/make_artifacts.py does.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["SEED_HANDLER", "pack", "seed_model_dir", "seed_network", "test_image", "tiny_model_dir"]

SEED_HANDLER = Path(__file__).parent / "seed" / "inference.py"


def tiny_model_dir(dest: Path, *, seed: int = 0) -> Path:
    """model.pt: TorchScript Linear(16, 4); JSON/CSV/NPY in and out through the default handlers."""
    import torch

    dest.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        # torch deprecates TorchScript, but it is what SageMaker's default model_fn loads.
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.script(torch.nn.Linear(16, 4).eval())
        model.save(str(dest / "model.pt"))  # type: ignore[no-untyped-call]
    return dest


def seed_network() -> Any:
    """The seed's architecture: ResNet-50 with a Linear/ReLU/Linear/Dropout/LogSoftmax head."""
    from torch import nn
    from torchvision import models

    model = models.resnet50(weights=None)
    model.fc = nn.Sequential(
        nn.Linear(model.fc.in_features, 2048),
        nn.ReLU(inplace=True),
        nn.Linear(2048, 10),
        nn.Dropout(0.4),
        nn.LogSoftmax(dim=1),
    )
    return model.eval()


def test_image(path: Path, *, size: tuple[int, int] = (640, 480), seed: int = 7) -> Path:
    """A deterministic picture (smooth gradients plus shapes), saved as JPEG or PNG by its suffix."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("RGB", size)
    pixels = image.load()
    assert pixels is not None
    for y in range(height):
        for x in range(width):
            pixels[x, y] = ((x * 255) // width, (y * 255) // height, ((x + y + seed * 13) * 3) % 256)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 4, width // 2, height // 2), fill=(200, 40 + seed, 40))
    draw.rectangle((width // 2, height // 2, 3 * width // 4, 3 * height // 4), fill=(30, 60, 200 - seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _top3_classes(model: Any, image: Path) -> list[int]:
    import torch
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.Resize(size=256),
            transforms.CenterCrop(size=224),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    with Image.open(image) as picture:
        batch = transform(picture.convert("RGB")).view(1, 3, 224, 224)
    with torch.no_grad():
        _, top = torch.exp(model(batch)).topk(3, dim=1)
    return [int(c) for c in top[0]]


def seed_model_dir(
    dest: Path, *, images: Sequence[Path] = (), handler: Path = SEED_HANDLER, first_seed: int = 0
) -> Path:
    """model_0.pth (the seed's head on random weights) + code/inference.py, ready to pack."""
    import torch

    dest.mkdir(parents=True, exist_ok=True)
    for seed in range(first_seed, first_seed + 50):
        torch.manual_seed(seed)
        model = seed_network()
        if all(9 not in _top3_classes(model, image) for image in images):
            break
    else:
        raise RuntimeError("no weight seed in 50 keeps class 9 out of the top 3 for these images")
    torch.save(model.state_dict(), dest / "model_0.pth")
    (dest / "code").mkdir(exist_ok=True)
    shutil.copyfile(handler, dest / "code" / "inference.py")
    (dest / "seed.txt").write_text(f"{seed}\n")
    return dest


def pack(model_dir: Path, tarball: Path, *, compresslevel: int = 1) -> Path:
    """model_dir's contents at the top level of a gzipped tar (what SageMaker extracts to /opt/ml/model)."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w:gz", compresslevel=compresslevel) as archive:
        for path in sorted(model_dir.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    return tarball


def jpeg_bytes(path: Path) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    with Image.open(path) as picture:
        picture.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
