"""Runs that survive: exact resume, SIGTERM mid-epoch, SIGKILL anywhere, crash-safe writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.cli_runner import run_python
from tests.conftest import HANG_TIMEOUT, REPO, run_cli
from tests.engine.conftest import read_jsonl
from torchstyle.engine.checkpoint import load_checkpoint

# Every test here trains in subprocesses (the real CLI, torchrun).
pytestmark = pytest.mark.slow

# A small classifier on digits: 1437 images, batch 64 -> 23 steps an epoch. No validation
# split: the step numbers below are those of the whole training split (tests/engine/
# test_user_models.py resumes a run with one).
ARGS = (
    "--model",
    "classifier",
    "--data",
    "digits",
    "--val-split",
    "0",
    "--model-arg",
    "width=8",
    "--log-every",
    "5",
    "--no-progress",
)
STEPS_PER_EPOCH = 23


def _train(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = run_cli("train", *ARGS, "--run-dir", str(run_dir), *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def _fault(mode: str, n: int, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    script = Path(__file__).with_name("fault_run.py")
    argv = [str(script), mode, str(n), "train", *ARGS, "--run-dir", str(run_dir), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return run_python(argv, env=env, timeout=HANG_TIMEOUT)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "latest.pt")["net"]


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs"
    test_a = [r for r in read_jsonl(a / "metrics.jsonl") if "test/accuracy" in r]
    test_b = [r for r in read_jsonl(b / "metrics.jsonl") if "test/accuracy" in r]
    assert test_a[-1] == test_b[-1]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """4 epochs without interruption: the reference every resumed run must reproduce."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    _train(run_dir, "--epochs", "4")
    return run_dir


def test_resume_at_epoch_boundary_is_bitwise_identical(straight, tmp_path):
    run_dir = tmp_path / "run"
    _train(run_dir, "--epochs", "2")
    ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert (ckpt["epoch"], ckpt["batch"], ckpt["n_iter"]) == (2, 0, 2 * STEPS_PER_EPOCH)
    proc = run_cli("train", "--resume", str(run_dir), "--epochs", "4")
    assert proc.returncode == 0, proc.stderr
    _assert_same_run(straight, run_dir)
    # Resumed at epoch 3: the steps logged continue, none repeated.
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 4 * STEPS_PER_EPOCH


def test_sigterm_mid_epoch_saves_and_resumes_exactly(straight, tmp_path):
    run_dir = tmp_path / "run"
    proc = _fault("sigterm-at-step", 30, run_dir, "--epochs", "4")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "checkpoint saved" in proc.stderr and f"--resume {run_dir}" in proc.stderr
    ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    # Stopped after step 30: epoch 2 (index 1), 7 batches into it.
    assert (ckpt["epoch"], ckpt["batch"], ckpt["n_iter"]) == (1, 30 - STEPS_PER_EPOCH, 30)
    resumed = run_cli("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(straight, run_dir)


@pytest.mark.parametrize(
    ("mode", "n"),
    [
        ("sigkill-at-step", 24),  # just after the first checkpoint
        ("sigkill-at-step", 40),  # mid epoch 2
        ("sigkill-in-save", 2),  # half of epoch 2's checkpoint on disk
        ("sigkill-before-rename", 2),  # epoch 2's checkpoint written, not yet renamed
        ("sigkill-in-save", 3),
        ("sigkill-at-step", 69),  # the last step of epoch 3, before its checkpoint
    ],
)
def test_sigkill_anywhere_leaves_a_loadable_checkpoint(straight, tmp_path, mode, n):
    run_dir = tmp_path / "run"
    proc = _fault(mode, n, run_dir, "--epochs", "4")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.pt")  # whole and loadable
    assert ckpt["batch"] == 0 and ckpt["epoch"] >= 1
    resumed = run_cli("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert not list((run_dir / "checkpoints").glob(".*.tmp-*")), "stale temporary left behind"
    _assert_same_run(straight, run_dir)


def test_keep_n_epoch_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    _train(run_dir, "--epochs", "4", "--keep", "2")
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch_0003.pt", "epoch_0004.pt", "latest.pt"]
    assert load_checkpoint(run_dir / "checkpoints" / "epoch_0003.pt")["epoch"] == 3
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    acc = [
        r["test/accuracy"] for r in read_jsonl(run_dir / "metrics.jsonl") if "test/accuracy" in r
    ]
    assert best["best_value"] == max(acc) and best["epoch"] == acc.index(max(acc)) + 1


def test_guide_keys_and_full_state_in_checkpoint(straight):
    ckpt = load_checkpoint(straight / "checkpoints" / "latest.pt")
    for key in (
        "net",
        "optim",
        "epoch",
        "n_iter",
        "scheduler",
        "scaler",
        "rng",
        "batch",
        "config",
        "spec",
    ):
        assert key in ckpt, key
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"}
    assert ckpt["config"]["epochs"] == 4
    assert json.loads((straight / "config.json").read_text())["model"] == "classifier"
