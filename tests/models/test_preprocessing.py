"""The weights' preprocessing: equal to their libraries', recorded, and reproducible from an
exported program in plain PyTorch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.conftest import run_cli
from torchstyle.errors import UserError
from torchstyle.models import preprocessing


def _image(w: int = 301, h: int = 233) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_torchvision_preprocessing_equals_the_weights_transforms():
    from torchvision.models import ResNet18_Weights

    policy, mean, std = preprocessing.torchvision_policy("resnet18")
    assert (policy.resize, policy.crop, policy.interpolation) == (256, 224, "bilinear")
    ours = policy.transform(_image(), mean, std)
    theirs = ResNet18_Weights.DEFAULT.transforms()(_image())
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_timm_preprocessing_equals_timms_eval_transform():
    timm = pytest.importorskip("timm")
    from timm.data import create_transform, resolve_data_config

    net = timm.create_model("convnext_atto", pretrained=False, num_classes=3)
    policy, mean, std = preprocessing.timm_policy(net, "convnext_atto")
    config = resolve_data_config({}, model=net)
    assert policy.interpolation == config["interpolation"] and list(mean) == list(config["mean"])
    ours = policy.transform(_image(), mean, std)
    theirs = create_transform(**config, is_training=False)(_image())
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_weights_give_their_normalisation_and_normalize_overrides():
    net = torch.nn.Linear(2, 2)
    kw = {"channels": 3, "size": 32}
    pre = preprocessing.resolve("torchvision:resnet18", net, weights="w.pt", normalize=None, **kw)
    assert pre.normalize == "weights" and pre.mean == list(preprocessing.IMAGENET_MEAN)
    plain = preprocessing.resolve("torchvision:resnet18", net, weights=None, normalize=None, **kw)
    assert plain.neutral and plain.flag_value() == "none"
    own = preprocessing.resolve("mlp", net, weights=None, normalize="0.5,0.25", **kw)
    assert own.mean == [0.5] * 3 and own.std == [0.25] * 3
    gray = preprocessing.resolve("mlp", net, weights=None, normalize="imagenet", channels=1, size=8)
    assert gray.mean == [pytest.approx(sum(preprocessing.IMAGENET_MEAN) / 3)]
    with pytest.raises(UserError, match="--normalize"):
        preprocessing.resolve("mlp", net, weights=None, normalize="1,2,3,4", channels=3, size=8)


def test_the_installed_hook_normalises_torchstyle_images():
    pre = preprocessing.Preprocessing(4, "RGB", [0.4, 0.5, 0.6], [0.2, 0.3, 0.4], "custom")
    seen = []
    model = torch.nn.Identity()
    model.register_forward_hook(lambda m, a, out: seen.append(out))
    preprocessing.install(model, pre)
    pixels = torch.rand(1, 3, 4, 4)
    model(pixels * 2 - 1)  # torchstyle's [-1, 1]
    expected = (pixels - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(
        1, 3, 1, 1
    )
    assert torch.allclose(seen[0], expected, atol=1e-6)
    preprocessing.remove(model)
    assert torch.equal(model(pixels), pixels)


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for split, n in (("train", 6), ("test", 2)):
        for c in range(2):
            (root / split / str(c)).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)
                pixels[..., c] = 255  # a class is a saturated channel
                Image.fromarray(pixels).save(root / split / str(c) / f"{i}.png")
    return root


def _plain_pytorch_input(path: Path, pre: dict, *, baked: bool) -> torch.Tensor:
    """What the docs tell a user to do: PIL, the centred square, resize, /255, mean/std."""
    pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())
    x = pixels.permute(2, 0, 1).float()[None] / 255  # (1, 3, H, W)
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    x = F.interpolate(x, size=(pre["size"], pre["size"]), mode="bilinear", antialias=True)
    if baked:
        return x
    mean, std = (
        torch.tensor(pre["mean"]).view(1, -1, 1, 1),
        torch.tensor(pre["std"]).view(1, -1, 1, 1),
    )
    return (x - mean) / std


@pytest.mark.slow
def test_an_exported_program_reproduces_the_runs_predictions_in_plain_pytorch(tmp_path):
    import torchvision

    weights = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), weights)
    data, run = _folder(tmp_path / "data"), tmp_path / "run"
    train = run_cli(
        "train", "--model", "torchvision:resnet18", "--weights", str(weights), "--data",
        str(data), "--image-size", "16", "--batch-size", "4", "--max-steps", "1", "--epochs",
        "1", "--no-progress", "--run-dir", str(run),
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert json.loads((run / "preprocessing.json").read_text())["normalize"] == "weights"
    image = data / "test" / "1" / "0.png"
    pred = run_cli("predict", str(run), str(image), "--output", str(tmp_path / "p.csv"))
    assert pred.returncode == 0, pred.stderr
    row = next(csv.DictReader((tmp_path / "p.csv").open()))
    for baked in (False, True):
        out = tmp_path / f"m{int(baked)}.pt2"
        flags = ["--with-preprocessing"] if baked else []
        exported = run_cli("export", str(run), "--format", "pt2", "--output", str(out), *flags)
        assert exported.returncode == 0, exported.stderr
        pre = json.loads(out.with_name(f"{out.stem}.preprocessing.json").read_text())
        assert (
            pre["mean"] == list(preprocessing.IMAGENET_MEAN) and pre["baked_into_program"] is baked
        )
        program = torch.export.load(str(out)).module()
        with torch.no_grad():
            probs = program(_plain_pytorch_input(image, pre, baked=baked)).softmax(dim=1)[0]
        assert int(probs.argmax()) == int(row["class"])
        assert float(probs.max()) == pytest.approx(float(row["probability"]), abs=2e-5)
