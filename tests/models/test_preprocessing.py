"""The weights' preprocessing: equal to their libraries', recorded, and reproducible from an
exported program in plain PyTorch."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.conftest import run_cli
from torchstyle.data.augment import ResizePolicy
from torchstyle.errors import UserError
from torchstyle.models import preprocessing


def _image(w: int = 301, h: int = 233) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _one_image_folder(root: Path) -> Path:
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            _image().save(root / split / c / "0.png")
    return root


def _model_input(run, image: torch.Tensor) -> torch.Tensor:
    """What the run's model sees for a batch of ``image``: after its installed normalisation."""
    seen = []
    handle = run.model.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        run.model.eval()(image[None])
    handle.remove()
    return seen[0][0]


def _eval_chain(tmp_path: Path, model: str, weights: Path) -> tuple[object, torch.Tensor]:
    """A run built in-process, as `train` builds it, and its model's input for the test image."""
    from torchstyle.config import TrainConfig
    from torchstyle.engine.run import build_run

    cfg = TrainConfig(
        model=model,
        weights=str(weights),
        data=str(_one_image_folder(tmp_path / "data")),
        run_dir=str(tmp_path / "run"),
        batch_size=2,
        progress=False,
    )
    run = build_run(cfg)
    image, _ = run.data.test[0]
    return run, _model_input(run, image)


def test_torchvision_eval_chain_equals_the_weights_transforms(tmp_path):
    """Resize, crop, interpolation and normalisation, read from a file as the run reads it."""
    import torchvision
    from torchvision.models import ResNet18_Weights

    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    run, ours = _eval_chain(tmp_path, "torchvision:resnet18", weights)
    theirs = ResNet18_Weights.DEFAULT.transforms()(_image())
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert run.data.spec.image_size == 224  # no --image-size: the weights' crop
    assert "224 from the weights' crop (torchvision ResNet18_Weights" in run.data.info["image_size"]
    pre = run.preprocessing
    assert (pre.resize, pre.size, pre.resize_args()) == (256, 224, (256, 224, "bilinear"))
    assert pre.size_from.startswith("the weights' crop")


def test_timm_eval_chain_equals_timms_eval_transform(tmp_path):
    timm = pytest.importorskip("timm")
    from timm.data import create_transform, resolve_data_config

    weights = tmp_path / "atto.pth"
    net = timm.create_model("convnext_atto", pretrained=False)
    torch.save(net.state_dict(), weights)
    run, ours = _eval_chain(tmp_path, "timm:convnext_atto", weights)
    config = resolve_data_config({}, model=net)
    assert config["interpolation"] == "bicubic"  # not the bilinear of torchstyle's own path
    theirs = create_transform(**config, is_training=False)(_image())
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert run.preprocessing.resize_args() == (math.floor(224 / config["crop_pct"]), 224, "bicubic")


def test_image_size_overrides_the_weights_crop_and_keeps_their_ratio():
    from torchstyle.config import TrainConfig
    from torchstyle.engine import finetune

    own = finetune.input_size(TrainConfig(model="torchvision:resnet18", weights="w.pth"))
    assert (own.size, own.policy.resize, own.policy.interpolation) == (224, 256, "bilinear")
    cfg = TrainConfig(model="torchvision:resnet18", weights="w.pth", image_size=64)
    sized = finetune.input_size(cfg)
    assert (sized.size, sized.resize) == (64, ResizePolicy(73, 64, "bilinear"))
    assert sized.origin.startswith("--image-size")
    # Without --weights (training from scratch) or for other models: torchstyle's own square.
    assert finetune.input_size(TrainConfig(model="torchvision:resnet18")).policy is None
    assert finetune.input_size(TrainConfig(model="classifier", weights="w.pth")).policy is None


def test_a_resume_applies_the_runs_recorded_policy_whatever_the_flags_say():
    from torchstyle.config import TrainConfig
    from torchstyle.engine import finetune

    recorded = preprocessing.resolve(
        "torchvision:resnet18",
        weights="w.pth",
        normalize=None,
        channels=3,
        size=64,
        applied=preprocessing.WeightsPolicy(73, 64, "bilinear", "torchvision"),
        size_from="--image-size",
    )
    state = {"preprocessing": recorded.to_dict()}
    # The resume names no --weights (it may drop them): the run's policy still applies.
    resumed = finetune.input_size(TrainConfig(model="torchvision:resnet18"), state)
    assert (resumed.size, resumed.resize) == (64, ResizePolicy(73, 64, "bilinear"))
    # A run recorded before the policy was applied keeps its centred square.
    old = {"preprocessing": {**recorded.to_dict(), "resize": 0}}
    cfg = TrainConfig(model="torchvision:resnet18", weights="w.pth")
    assert finetune.input_size(cfg, old).policy is None


def test_training_crops_at_the_crop_size_with_the_weights_interpolation():
    from torchstyle.data.augment import resized_crop, rrc_params, transform_images

    image = torch.from_numpy(np.array(_image())).permute(2, 0, 1).contiguous()
    idx = torch.tensor([7])
    policy = ResizePolicy(73, 64, "bicubic")
    x = transform_images([image], "rrc-flip", 64, 3, 1, idx, True, policy)
    assert x.shape == (1, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    box = rrc_params(torch.tensor([233]), torch.tensor([301]), 3, 1, idx)
    bicubic = resized_crop([image.float() / 127.5 - 1], box, 64, "bicubic")
    bilinear = resized_crop([image.float() / 127.5 - 1], box, 64, "bilinear")
    assert torch.equal(x, bicubic) or torch.equal(x, bicubic.flip(-1))
    assert not torch.allclose(bicubic, bilinear, atol=1e-3)
    with pytest.raises(ValueError, match="crops to 64"):
        transform_images([image], "none", 32, 0, 0, idx, False, policy)


def test_device_paths_read_with_the_weights_policy(tmp_path):
    """--data-on-device holds the policy's uint8 images; --decode gpu resamples on the device
    (here the CPU, whose tensor resize is within 2/255 of PIL's)."""
    from torchstyle.data import DataOptions, EpochBatchSampler, build_data, make_loader
    from torchstyle.data.jpeg import DecodeOnDevice, EncodedImageFolder, collate_encoded

    policy = ResizePolicy(73, 64, "bicubic")
    root = _one_image_folder(tmp_path / "data")
    bundle = build_data(DataOptions(name=str(root), image_size=64, resize=policy, augment="flip"))
    stock = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])
    held = bundle.test.to_tensor_dataset()
    assert held.images.dtype == torch.uint8 and held.images.shape == (2, 3, 64, 64)
    assert torch.equal(held.batch(torch.arange(2), 0)[0], stock)
    sampler = EpochBatchSampler(len(bundle.test), batch_size=2, shuffle=False)
    sampler.set_epoch(0)
    batch = next(
        iter(make_loader(EncodedImageFolder(bundle.test), sampler, collate_fn=collate_encoded))
    )
    decoded, _ = DecodeOnDevice(bundle.test, torch.device("cpu"))(batch)
    assert decoded.shape == stock.shape and torch.equal(decoded, stock)  # PNGs: PIL on the CPU


def test_weights_give_their_normalisation_and_normalize_overrides():
    kw = {"channels": 3, "size": 32}
    pre = preprocessing.resolve("torchvision:resnet18", weights="w.pt", normalize=None, **kw)
    assert pre.normalize == "weights" and pre.mean == list(preprocessing.IMAGENET_MEAN)
    plain = preprocessing.resolve("torchvision:resnet18", weights=None, normalize=None, **kw)
    assert plain.neutral and plain.flag_value() == "none"
    own = preprocessing.resolve("mlp", weights=None, normalize="0.5,0.25", **kw)
    assert own.mean == [0.5] * 3 and own.std == [0.25] * 3
    gray = preprocessing.resolve("mlp", weights=None, normalize="imagenet", channels=1, size=8)
    assert gray.mean == [pytest.approx(sum(preprocessing.IMAGENET_MEAN) / 3)]
    with pytest.raises(UserError, match="--normalize"):
        preprocessing.resolve("mlp", weights=None, normalize="1,2,3,4", channels=3, size=8)


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
    """What the docs tell a user to do: PIL's resize of the shorter side to ``resize`` and the
    centre crop (or, without ``resize``, the centred square), /255, mean/std."""
    image, s = Image.open(path).convert("RGB"), pre["size"]
    w, h = image.size
    if pre["resize"]:
        r = pre["resize"]
        resample = getattr(Image.Resampling, pre["interpolation"].split(",")[0].upper())
        image = image.resize((r, int(r * h / w)) if w <= h else (int(r * w / h), r), resample)
        w, h = image.size
        left, top = round((w - s) / 2), round((h - s) / 2)
        image = image.crop((left, top, left + s, top + s))
    pixels = torch.from_numpy(np.array(image))
    x = pixels.permute(2, 0, 1).float()[None] / 255  # (1, 3, H, W)
    if not pre["resize"]:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = x[..., top : top + side, left : left + side]
        x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True)
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
    # What `torchstyle test` and a resume read back from the checkpoint: the weights' policy.
    from torchstyle.engine.checkpoint import load_checkpoint
    from torchstyle.engine.finetune import resize_policy

    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert resize_policy(preprocessing.from_state(state)) == ResizePolicy(18, 16, "bilinear")
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
        # --image-size 16 with the weights' 256/224: shorter side to 18, centre 16x16.
        assert (pre["resize"], pre["size"], pre["size_from"]) == (
            18,
            16,
            "--image-size (the weights' 224)",
        )
        program = torch.export.load(str(out)).module()
        with torch.no_grad():
            probs = program(_plain_pytorch_input(image, pre, baked=baked)).softmax(dim=1)[0]
        assert int(probs.argmax()) == int(row["class"])
        assert float(probs.max()) == pytest.approx(float(row["probability"]), abs=2e-6)
    # A resume applies the run's recorded policy (from the checkpoint, not re-resolved from
    # the flags); another --image-size is refused.
    refused = run_cli("train", "--resume", str(run), "--image-size", "20", "--no-progress")
    assert refused.returncode == 2 and "--image-size" in refused.stderr, refused.stderr
    more = ("--epochs", "2", "--max-steps", "2", "--no-progress")
    resumed = run_cli("train", "--resume", str(run), *more)
    assert resumed.returncode == 0, resumed.stderr
    assert "image_size: 16 from --image-size (the weights' 224)" in resumed.stdout + resumed.stderr
    assert json.loads((run / "preprocessing.json").read_text())["resize"] == 18
