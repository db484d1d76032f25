"""dcgan through the engine; `torchstyle test` and `torchstyle predict` on a finished run."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.engine.conftest import read_jsonl
from torchstyle.data.digits import load_digits_split

# Every test here trains in subprocesses (the real CLI, torchrun).
pytestmark = pytest.mark.slow


def test_dcgan_trains_one_epoch_on_digits_and_writes_samples(tmp_path, cli):
    run_dir = tmp_path / "gan"
    proc = cli(
        "train", "--model", "dcgan", "--data", "digits", "--epochs", "1", "--model-arg", "base_width=8",
        "--model-arg", "latent_dim=16", "--log-every", "5", "--run-dir", str(run_dir), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(run_dir / "metrics.jsonl")
    train = [r for r in rows if "train/d/loss" in r]
    assert train, rows
    for r in train:
        for key in ("train/d/loss", "train/g/loss", "train/lr/d", "train/lr/g"):
            assert math.isfinite(r[key]), (key, r)
    png = run_dir / "samples" / "epoch_0001.png"
    with Image.open(png) as img:
        img.load()
        w, h = img.size
    assert w > 32 * 7 and h > 32 * 7  # an 8x8 grid of 32 px samples
    assert "best checkpoint:" in proc.stdout  # no metric to monitor: best is the latest
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert "samples" in events.Tags()["images"]
    # One epoch of digits at batch 64: 1295 images once 10% are held out for validation.
    assert events.Images("samples")[0].step == 21


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory):
    """Ten test-split digits written as 8x8 grayscale PNGs, with their labels."""
    folder = tmp_path_factory.mktemp("pngs")
    data = load_digits_split()
    paths, labels = [], []
    for i in range(10):
        x = ((data.test.images[i, 0].numpy() + 1.0) * 127.5).round().astype(np.uint8)
        path = folder / f"digit_{i}.png"
        Image.fromarray(x, mode="L").save(path)
        paths.append(str(path))
        labels.append(str(int(data.test.labels[i])))
    return paths, labels


def test_test_command_evaluates_the_best_checkpoint(demo_run, cli):
    run_dir, _ = demo_run
    proc = cli("test", str(run_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["samples"] == 360 and out["checkpoint"].endswith("best.pt")
    best = max(
        r["test/accuracy"] for r in read_jsonl(run_dir / "metrics.jsonl") if "test/accuracy" in r
    )
    assert out["accuracy"] == pytest.approx(best, abs=1e-9)
    text = cli("test", str(run_dir), "--checkpoint", "latest")
    assert text.returncode == 0 and "test accuracy:" in text.stdout


def test_predict_prints_and_writes_classes(demo_run, digit_pngs, cli, tmp_path):
    run_dir, _ = demo_run
    paths, labels = digit_pngs
    out_csv = tmp_path / "preds.csv"
    proc = cli("predict", str(run_dir), *paths, "--output", str(out_csv))
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.strip().splitlines()]
    assert [line[0] for line in lines] == paths
    correct = sum(line[1] == label for line, label in zip(lines, labels, strict=True))
    assert correct >= 9
    assert all(0.0 <= float(line[2]) <= 1.0 for line in lines)
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == [line[1] for line in lines]


def test_predict_rejects_a_non_image_file(demo_run, digit_pngs, cli, tmp_path):
    run_dir, _ = demo_run
    bogus = tmp_path / "notes.png"
    bogus.write_text("this is not an image")
    out_csv = tmp_path / "preds.csv"
    proc = cli("predict", str(run_dir), digit_pngs[0][0], str(bogus), "--output", str(out_csv))
    assert proc.returncode == 2
    assert "cannot read image" in proc.stderr and str(bogus) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == "" and not out_csv.exists()
