"""Tabular and non-square data end to end from the command line, export included.

The run's own `test` (no --data) rebuilds the data without user-flag checks; `predict` and
the exported program take samples of the training data's own shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = """
import torch
from torch.utils.data import TensorDataset


def tabular():
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x, y = torch.tensor(d.data, dtype=torch.float32), torch.tensor(d.target)
    return {"train": TensorDataset(x[:400], y[:400]), "test": TensorDataset(x[400:], y[400:]),
            "classes": list(d.target_names)}


def wide():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, 32, 48, generator=g), torch.arange(40) % 2
    return TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])
"""


def _train(cli, tmp: Path, model: str, data: str) -> Path:
    run = tmp / f"run-{model}"
    proc = cli(
        "train", "--model", model, "--data", data, "--epochs", "1", "--max-steps", "2",
        "--batch-size", "8", "--run-dir", str(run), "--no-progress", cwd=tmp,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return run


def _exported_shape(run: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
    import torch

    program = torch.export.load(str(run / "export" / "model.pt2")).module()
    return tuple(program(torch.zeros(3, *shape)).shape)


@pytest.mark.slow
def test_tabular_features_train_test_predict_and_export(tmp_path, cli):
    (tmp_path / "mydata.py").write_text(DATA)
    run = _train(cli, tmp_path, "mlp", "mydata.py:tabular")
    proc = cli("test", str(run), "--json")  # the run's data, no --channels check
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["samples"] == 169
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(",".join(["1.5"] * 30) for _ in range(2)) + "\n")
    proc = cli("predict", str(run), str(rows))
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == [
        f"{rows}:0",
        f"{rows}:1",
    ]
    assert proc.stdout.split("\t")[1] in ("malignant", "benign")
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n")
    proc = cli("predict", str(run), str(bad))
    assert proc.returncode == 2 and "30 features" in proc.stderr
    proc = cli("export", str(run), "--format", "pt2")
    assert proc.returncode == 0, proc.stderr
    assert _exported_shape(run, (30,)) == (3, 2)
    proc = cli(
        "train", "--model", "classifier", "--data", "mydata.py:tabular", "--max-steps", "1",
        "--run-dir", str(tmp_path / "refused"), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "takes (C, H, W) images" in proc.stderr


@pytest.mark.slow
def test_non_square_images_train_test_predict_and_export(tmp_path, cli):
    from PIL import Image

    (tmp_path / "mydata.py").write_text(DATA)
    run = _train(cli, tmp_path, "classifier", "mydata.py:wide")
    proc = cli("test", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["samples"] == 8
    image = tmp_path / "photo.png"
    Image.new("RGB", (60, 20), color=(10, 200, 30)).save(image)
    proc = cli("predict", str(run), str(image))
    assert proc.returncode == 0, proc.stderr
    proc = cli("export", str(run), "--format", "pt2")
    assert proc.returncode == 0, proc.stderr
    assert _exported_shape(run, (3, 32, 48)) == (3, 2)
