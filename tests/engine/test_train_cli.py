"""`torchstyle train` end to end: accuracy, summary, TensorBoard events, saved config."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.engine.conftest import read_jsonl, summary_value

# Every test here trains in subprocesses (the real CLI, torchrun).
pytestmark = pytest.mark.slow

TRAIN_TAGS = {
    "train/loss",
    "train/accuracy",
    "train/lr",
    "train/compute_efficiency",
    "train/samples_per_sec",
}
VAL_TAGS = {"val/accuracy", "val/loss", "val/f1_macro", "val/top5"}
TEST_TAGS = {"test/accuracy", "test/loss", "test/f1_macro", "test/top5"}


def test_demo_reaches_97_percent_and_prints_summary(demo_run):
    run_dir, proc = demo_run
    assert summary_value(proc.stdout, "accuracy") >= 0.97
    assert f"run folder:      {run_dir}" in proc.stdout
    assert f"best checkpoint: {run_dir}/checkpoints/best.pt" in proc.stdout
    assert f"tensorboard --logdir {run_dir}" in proc.stdout
    assert "best accuracy:" in proc.stdout
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / "checkpoints" / "latest.pt").is_file()


def test_tensorboard_events_hold_real_values_at_increasing_steps(demo_run):
    run_dir, _ = demo_run
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert tags >= TRAIN_TAGS | VAL_TAGS | TEST_TAGS
    rows = read_jsonl(run_dir / "metrics.jsonl")
    # 1437 training images, 10% held out for validation: 1295, batch 64: 21 steps an epoch,
    # 168 in all, logged every 10 steps plus each epoch's tail.
    loss_events = acc.Scalars("train/loss")
    steps = [e.step for e in loss_events]
    assert steps == sorted(set(steps)), "steps must strictly increase"
    assert steps[0] == 10 and steps[-1] == 168
    assert all(s % 10 == 0 or s % 21 == 0 for s in steps)
    values = [e.value for e in loss_events]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert values[-1] < values[0] / 3, "the loss must fall"
    # metrics.jsonl holds the same scalars at the same steps.
    jsonl_loss = {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}
    assert sorted(jsonl_loss) == steps
    for e in loss_events:
        assert math.isclose(jsonl_loss[e.step], e.value, rel_tol=1e-5)
    eff = [e.value for e in acc.Scalars("train/compute_efficiency")]
    assert all(0.0 <= v <= 1.0 for v in eff)
    assert all(e.value > 0 for e in acc.Scalars("train/samples_per_sec"))
    assert all(math.isclose(e.value, 3e-3, rel_tol=1e-6) for e in acc.Scalars("train/lr"))
    # Validation after every epoch; the test split once, at the end, on best.pt.
    val_steps = [e.step for e in acc.Scalars("val/accuracy")]
    assert val_steps == [21 * k for k in range(1, 9)]
    assert [e.step for e in acc.Scalars("test/accuracy")] == [168]


def test_config_is_saved_with_the_run(demo_run):
    run_dir, _ = demo_run
    text = (run_dir / "config.txt").read_text()
    assert text.startswith("Namespace(") and "model='classifier'" in text
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["epochs"] == 8 and cfg["log_every"] == 10 and cfg["data"] == "digits"
    # What bit-identical reruns need besides the flags (tests/conftest.py sets one thread).
    env = cfg["environment"]
    assert env["cpu_threads"] == 1 and env["device"] == "cpu" and env["torch"] == torch.__version__


def test_config_file_then_flags(tmp_path, cli):
    (tmp_path / "cfg.toml").write_text(
        "epochs = 0\nbatch_size = 16\nlr = 0.01\nmodel_args = {width = 8}\n"
    )
    run_dir = tmp_path / "run"
    proc = cli(
        "train",
        "--config",
        str(tmp_path / "cfg.toml"),
        "--batch-size",
        "32",
        "--run-dir",
        str(run_dir),
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["batch_size"] == 32  # the flag wins over the file
    assert cfg["lr"] == 0.01 and cfg["epochs"] == 0 and cfg["model_args"] == {"width": 8}


def test_help_lists_subcommands(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    for name in ("train", "test", "predict", "lint", "new"):
        assert name in proc.stdout
