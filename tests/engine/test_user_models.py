"""Training what users bring, end to end: model files, torchvision and timm models, the Python
API, validation-driven best checkpoints, fine-tuning from weights files and exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import run_cli
from tests.engine.conftest import read_jsonl

pytestmark = pytest.mark.slow

NET = """
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 5, width: int = 16):
        super().__init__()
        self.width = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))
"""

FAST = ("--no-progress", "--batch-size", "64")


def _ok(proc) -> None:
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def _digit_png(path: Path) -> Path:
    from sklearn.datasets import load_digits

    image = load_digits().images[0]  # a zero, 8x8, values 0..16
    Image.fromarray((image * 15).astype("uint8"), mode="L").save(path)
    return path


def test_model_file_outside_the_package_survives_its_deletion(tmp_path):
    user = tmp_path / "elsewhere"
    user.mkdir()
    (user / "mynet.py").write_text(NET)
    run = tmp_path / "run"
    proc = run_cli(
        "train",
        "--model",
        f"{user / 'mynet.py'}:Net",
        "--model-arg",
        "width=8",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--run-dir",
        str(run),
        *FAST,
    )
    _ok(proc)
    assert "in_channels=1 (from the data)" in proc.stderr
    assert "num_classes=10 (from the data)" in proc.stderr
    assert (run / "model" / "mynet.py").read_text() == NET
    (user / "mynet.py").unlink()

    tested = run_cli("test", str(run), "--json")
    _ok(tested)
    assert "no longer exists; using the run's copy" in tested.stderr
    logged = [r["test/accuracy"] for r in read_jsonl(run / "metrics.jsonl") if "test/accuracy" in r]
    assert json.loads(tested.stdout)["accuracy"] == pytest.approx(logged[-1], abs=1e-9)

    predicted = run_cli("predict", str(run), str(_digit_png(tmp_path / "zero.png")))
    _ok(predicted)
    assert predicted.stdout.split("\t")[0].endswith("zero.png")

    resumed = run_cli("train", "--resume", str(run), "--epochs", "2", "--no-progress")
    _ok(resumed)
    assert "done: 2 epochs" in resumed.stdout


def test_torchvision_resnet18_trains_on_digits(tmp_path):
    run = tmp_path / "rn"
    proc = run_cli(
        "train",
        "--model",
        "torchvision:resnet18",
        "--data",
        "digits",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--max-steps",
        "4",
        "--run-dir",
        str(run),
        *FAST,
    )
    _ok(proc)
    assert "first convolution conv1: 3 -> 1 input channels" in proc.stderr
    assert "torchvision:resnet18" in proc.stderr  # the start-up summary names the model
    tested = run_cli("test", str(run))
    _ok(tested)
    assert "f1_macro" in tested.stdout and "top5" in tested.stdout


def test_timm_model_trains_on_digits(tmp_path):
    pytest.importorskip("timm")
    run = tmp_path / "timm"
    proc = run_cli(
        "train",
        "--model",
        "timm:test_resnet",
        "--data",
        "digits",
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--run-dir",
        str(run),
        *FAST,
    )
    _ok(proc)
    assert "in_chans=1 (from the data)" in proc.stderr


def test_plain_module_trains_through_fit(tmp_path):
    import torchstyle
    from torchstyle.data import build_data
    from torchstyle.data.base import DataOptions

    data = build_data(DataOptions(name="digits", seed=1))
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    result = torchstyle.fit(
        net,
        data.train,
        data.val,
        test_data=data.test,
        epochs=2,
        run_dir=str(tmp_path / "fit"),
        progress=False,
        lr=3e-3,
    )
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert result.metrics["accuracy"] > 0.8
    state = torch.load(result.best_checkpoint, weights_only=True)
    assert state["model"]["source"]["adapter"] == "classification"


def _event_images(run: Path, tag: str) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"images": 0})
    acc.Reload()
    return acc.Images(tag) if tag in acc.Tags()["images"] else []


def test_best_checkpoint_is_chosen_on_validation_and_test_runs_once(tmp_path):
    run = tmp_path / "val"
    proc = run_cli(
        "train",
        "--model",
        "mlp",
        "--data",
        "digits",
        "--val-split",
        "0.2",
        "--epochs",
        "3",
        "--lr",
        "0.05",
        "--optimizer",
        "sgd",
        "--scheduler",
        "plateau",
        "--run-dir",
        str(run),
        *FAST,
    )
    _ok(proc)
    rows = read_jsonl(run / "metrics.jsonl")
    val = [r for r in rows if "val/accuracy" in r]
    test = [r for r in rows if "test/accuracy" in r]
    assert len(val) == 3 and len(test) == 1
    best_epoch = max(range(3), key=lambda i: val[i]["val/accuracy"]) + 1
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == best_epoch
    # best.pt holds the validation figures it was chosen by, not the test split's.
    assert best["metrics"]["accuracy"] == pytest.approx(val[best_epoch - 1]["val/accuracy"])
    assert "held out" in proc.stderr and "0.2" in proc.stderr
    again = json.loads(run_cli("test", str(run), "--json").stdout)
    assert again["accuracy"] == pytest.approx(test[0]["test/accuracy"], abs=1e-9)
    images = _event_images(run, "val/confusion_matrix")
    assert len(images) == 3 and images[0].width >= 10 * 32
    assert len(_event_images(run, "test/confusion_matrix")) == 1


def _folder(root: Path, classes: int, size: int) -> Path:
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 12), ("test", 4)):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                base = torch.full((size, size), 40 + 80 * c, dtype=torch.float32)
                pixels = (base + 20 * torch.randn(size, size, generator=gen)).clamp(0, 255)
                Image.fromarray(pixels.to(torch.uint8).numpy(), mode="L").convert("RGB").save(
                    d / f"{i}.png"
                )
    return root


def test_fine_tune_from_weights_with_another_head_and_export_round_trip(tmp_path):
    source = tmp_path / "digits-run"
    _ok(
        run_cli(
            "train",
            "--model",
            "torchvision:resnet18",
            "--data",
            "digits",
            "--image-size",
            "16",
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--run-dir",
            str(source),
            *FAST,
        )
    )
    exported = run_cli("export", str(source), "--format", "safetensors")
    _ok(exported)
    weights = source / "export" / "model.safetensors"
    assert weights.is_file()

    from torchstyle.engine.evaluation import checkpoint_path, load_run_model
    from torchstyle.engine.weights import load_weights
    from torchstyle.models.loading import rebuild_for_run

    model, state = load_run_model(checkpoint_path(source, "best"), torch.device("cpu"))
    from torchstyle.spec import DataSpec

    copy = rebuild_for_run(state["model"], DataSpec.from_dict(state["spec"]), source).eval()
    load_weights(copy, weights)
    x = torch.randn(3, 1, 16, 16)
    assert torch.equal(copy(x), model(x))

    folder = _folder(tmp_path / "three", classes=3, size=16)
    tuned = tmp_path / "tuned"
    proc = run_cli(
        "train",
        "--model",
        "torchvision:resnet18",
        "--data",
        str(folder),
        "--weights",
        str(weights),
        "--freeze",
        "layer1",
        "--image-size",  # not the weights' 224: cheap
        "16",
        "--epochs",
        "1",
        "--run-dir",
        str(tuned),
        *FAST,
    )
    _ok(proc)
    assert "new classification head" in proc.stderr and "fc.weight" in proc.stderr
    assert "input channels folded: conv1.weight" in proc.stderr
    tuned_state = torch.load(tuned / "checkpoints" / "latest.pt", weights_only=True)
    # layer1 was frozen: its weights are still the digits run's (folded to 3 channels).
    key = "net.layer1.0.conv1.weight"
    assert torch.equal(tuned_state["net"][key], state["net"][key])
    assert tuned_state["net"]["net.fc.weight"].shape == (3, 512)


def test_folder_of_128px_images_trains_at_128px(tmp_path):
    folder = _folder(tmp_path / "big", classes=2, size=128)
    run = tmp_path / "big-run"
    proc = run_cli(
        "train",
        "--model",
        "classifier",
        "--model-arg",
        "width=8",
        "--data",
        str(folder),
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--run-dir",
        str(run),
        "--no-progress",
    )
    _ok(proc)
    assert "128x128 px" in proc.stderr
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["spec"]["image_size"] == 128
    assert state["model"]["hparams"]["image_size"] == 128
