"""Every registered model, end to end from the command line, on its own default data.

Generated from the registry: a model is covered the day it is registered. Each trains a couple
of steps with no --data (so its declared default data is what it gets), then `test`,
`predict` in its own terms, and `--resume` to a later step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from torchstyle.models import get_model_class, list_models


def _image_for(run: Path, tmp: Path) -> list[str]:
    """An RGB image of another size: `predict` converts and resizes it to the run's own."""
    path = tmp / "input.png"
    Image.new("RGB", (16, 16), color=(120, 30, 200)).save(path)
    return [str(path)]


PREDICT_ARGS: dict[str, Callable[[Path, Path], list[str]]] = {
    "classify": _image_for,
    "translate": lambda run, tmp: [*_image_for(run, tmp), "--output", str(tmp / "out")],
    "generate": lambda run, tmp: ["--num", "2", "--output", str(tmp / "out")],
    "text": lambda run, tmp: ["--prompt", "def ", "--max-new-tokens", "8"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_trains_tests_predicts_and_resumes_from_the_cli(name, tmp_path, cli):
    run = tmp_path / "run"
    common = ("--batch-size", "8", "--log-every", "1", "--no-progress")
    proc = cli(
        "train",
        "--model",
        name,
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--run-dir",
        str(run),
        *common,
    )
    assert proc.returncode == 0, proc.stderr
    assert "done:" in proc.stdout and (run / "checkpoints" / "latest.pt").is_file()

    proc = cli("test", str(run), "--json", "--batch-size", "64")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["samples"] > 0

    kind = get_model_class(name).predict_kind
    assert kind in PREDICT_ARGS, f"no CLI test for predict kind {kind!r}"
    proc = cli("predict", str(run), *PREDICT_ARGS[kind](run, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()

    proc = cli("train", "--resume", str(run), "--epochs", "2", "--max-steps", "4", *common)
    assert proc.returncode == 0, proc.stderr
    assert "4 steps" in proc.stdout
