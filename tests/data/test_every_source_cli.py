"""Every registered data source, end to end from the command line, with a model of its layout.

Generated from the registry: a source is covered the day it is registered. Each trains two
steps with a small model of the source's layout, then `test RUN` (no --data: the run's own
data, rebuilt from what the run recorded), `predict` on an input of the data's shape, and
`--resume` to a later step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.data.helpers import write_fake_cifar10
from torchstyle.data import DATA_SOURCES, LAYOUTS

# A small model for each layout, and its smallest settings.
MODEL_FOR_LAYOUT: dict[str, tuple[str, ...]] = {
    "classes": ("--model", "mlp"),
    "features": ("--model", "mlp"),
    "paired": ("--model", "pix2pix", "--model-arg", "ngf=8", "--model-arg", "ndf=8"),
    "tokens": ("--model", "gpt", "--model-arg", "depth=1", "--model-arg", "dim=32"),
}
# Sources that read files from --data-dir: the test writes a tiny set in their format.
DATA_FILES: dict[str, Callable[[Path], Path]] = {"cifar10": write_fake_cifar10}


def _image(tmp: Path) -> list[str]:
    path = tmp / "input.png"
    Image.new("RGB", (20, 12), color=(120, 30, 200)).save(path)
    return [str(path)]


def _rows(tmp: Path) -> list[str]:
    from sklearn.datasets import load_breast_cancer

    path = tmp / "rows.csv"
    data = load_breast_cancer()
    lines = [",".join(data.feature_names)] + [",".join(map(str, r)) for r in data.data[:3]]
    path.write_text("\n".join(lines) + "\n")
    return [str(path)]


PREDICT_ARGS: dict[str, Callable[[Path], list[str]]] = {
    "classes": _image,
    "features": _rows,
    "paired": lambda tmp: [*_image(tmp), "--output", str(tmp / "out")],
    "tokens": lambda tmp: ["--prompt", "def ", "--max-new-tokens", "4"],
}


def test_every_layout_has_a_model_and_a_prediction():
    assert set(MODEL_FOR_LAYOUT) == set(LAYOUTS) == set(PREDICT_ARGS)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DATA_SOURCES))
def test_trains_tests_predicts_and_resumes_from_the_cli(name, tmp_path, cli):
    files = DATA_FILES.get(name)
    data_dir = ("--data-dir", str(files(tmp_path / "files"))) if files else ()
    layout = DATA_SOURCES[name].layout
    run = tmp_path / "run"
    common = ("--batch-size", "8", "--no-progress")
    train = ("train", "--data", name, *data_dir, *MODEL_FOR_LAYOUT[layout], "--epochs", "1")
    proc = cli(*train, "--max-steps", "2", "--run-dir", str(run), *common)
    assert proc.returncode == 0, proc.stderr
    assert (run / "checkpoints" / "latest.pt").is_file()

    proc = cli("test", str(run), "--json", "--batch-size", "256", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["samples"] > 0

    proc = cli("predict", str(run), *PREDICT_ARGS[layout](tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()

    proc = cli("train", "--resume", str(run), "--epochs", "2", "--max-steps", "3", *common)
    assert proc.returncode == 0, proc.stderr
    assert "3 steps" in proc.stdout
