"""A generated classifier that fine-tunes a pretrained torchvision model reads and normalises
its images as the weights' library evaluates them (in-process: no training)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from torchstyle.errors import UserError
from torchstyle.scaffold.project import write_project


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (233, 301, 3), dtype=np.uint8))


@pytest.fixture
def project(tmp_path: Path) -> Iterator[dict[str, ModuleType]]:
    """The generated project's data and model modules, imported as its scripts import them."""
    root, _ = write_project("digit_net", "classifier", tmp_path / "digit_net")
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        yield {name: importlib.import_module(name) for name in ("data", "digit_net")}
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:  # its top-level modules (data, networks, ...)
            if (getattr(sys.modules[name], "__file__", None) or "").startswith(str(root)):
                del sys.modules[name]


def _folder(root: Path) -> Path:
    for split in ("train", "val", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            _image().save(root / split / c / "0.png")
    return root


def test_a_generated_fine_tuning_project_feeds_the_weights_their_own_preprocessing(
    project, tmp_path
):
    import torchvision
    from torchvision.models import ResNet18_Weights

    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    data = project["data"].build_loaders(
        data=str(_folder(tmp_path / "images")),
        data_dir=None,
        download=False,
        image_size=None,
        batch_size=2,
        val_fraction=0.1,
        skip_bad_images=False,
        workers=0,
        seed=0,
        pin_memory=False,
        pretrained="torchvision:resnet18",  # what train.py passes with --backbone --weights
    )
    assert data.spec.image_size == 224 and data.pretrained.resize == (256, 224, "bilinear")
    images, _ = next(iter(data.test))
    model = project["digit_net"].DigitNet(
        in_channels=3,
        num_classes=2,
        backbone="torchvision:resnet18",
        image_size=data.spec.image_size,
        mean=data.pretrained.mean,
        std=data.pretrained.std,
    )
    lines = " ".join(model.load_pretrained(str(weights)))
    assert "weights: 120 tensors" in lines and "new classification head" in lines
    seen = []
    model.net.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        logits = model.eval()(images)
    theirs = ResNet18_Weights.DEFAULT.transforms()(_image())
    assert logits.shape == (2, 2)
    assert torch.allclose(seen[0][0], theirs, atol=1e-6)
    # test.py rebuilds the model, normalisation included, from the checkpoint's hparams.
    clone = project["digit_net"].DigitNet(**model.hparams)
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(clone.eval()(images), logits)
    with pytest.raises(UserError, match="torchvision:NAME or timm:NAME"):
        project["data"].pretrained_input("resnet18", None)
