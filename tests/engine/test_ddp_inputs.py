"""DDP as people run it: tiny test sets, Ctrl-C to torchrun, one voice, and best.pt on disk."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import HANG_TIMEOUT, run_cli
from tests.engine.conftest import read_jsonl
from tests.engine.models import TinyMLP, random_bundle
from tests.engine.test_distributed import MLP, QUIET, _net, torchrun
from torchstyle.config import TrainConfig
from torchstyle.data import EpochBatchSampler
from torchstyle.engine.callbacks import Callback
from torchstyle.engine.checkpoint import load_checkpoint
from torchstyle.engine.trainer import Trainer


def _image_folder(root: Path, *, train: int, test: int) -> Path:
    """Two classes (dark, bright) of 8x8 PNGs: ``train`` per class in train/, ``test`` in all."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", train), ("test", test // 2)):
        for name, base in (("cat", 60), ("dog", 190)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(rng.normal(base, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_three_processes_evaluate_two_test_images_as_one_process_does(tmp_path):
    # Batch 6 over 3 processes: the test shard of rank 2 is empty (2 images, 3 ranks).
    data = _image_folder(tmp_path / "imgs", train=6, test=2)
    run = tmp_path / "r3"
    args = ("train", "--data", str(data), "--image-size", "8", "--batch-size", "6")
    three = torchrun(3, *args, "--epochs", "2", "--workers", "0", *QUIET, "--run-dir", str(run))
    assert three.returncode == 0, three.stderr
    assert (run / "checkpoints" / "best.pt").is_file()
    # Only rank 0 speaks: each epoch line once, no rank-prefixed line, one summary.
    for epoch in (1, 2):
        assert len(re.findall(rf"^epoch {epoch}/2:", three.stderr, re.M)) == 1, three.stderr
    assert "[rank" not in three.stderr, three.stderr
    assert three.stdout.count("done: 2 epochs") == 1, three.stdout
    logged = [r for r in read_jsonl(run / "metrics.jsonl") if "test/accuracy" in r][-1]
    # The same weights evaluated by one process over both images.
    one = run_cli("test", str(run), "--checkpoint", "latest", "--json")
    assert one.returncode == 0, one.stderr
    alone = json.loads(one.stdout)
    assert alone["samples"] == 2
    for key in ("accuracy", "loss", "f1_macro", "accuracy_class/cat", "accuracy_class/dog"):
        assert logged[f"test/{key}"] == pytest.approx(alone[key], rel=1e-6, abs=1e-7), key


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (("--no-such-flag",), "unrecognized arguments: --no-such-flag"),
        (("--batch-size", "3"), "does not split evenly over 2 processes"),
    ],
)
def test_an_error_every_rank_raises_is_printed_once(tmp_path, flag, message):
    r = torchrun(2, "train", *MLP, *QUIET, *flag, "--run-dir", str(tmp_path / "r"))
    assert r.returncode != 0
    assert r.stderr.count(message) == 1, r.stderr
    assert "[rank" not in r.stderr, r.stderr


@pytest.mark.slow
def test_ctrl_c_to_torchrun_saves_and_prints_the_torchrun_line_that_resumes(tmp_path):
    run = tmp_path / "r"
    args = ("train", *MLP, "--no-progress", "--log-every", "2", "--batch-size", "8")
    proc = torchrun(2, *args, "--epochs", "50", "--run-dir", str(run), popen=True)
    _wait_for_a_logged_step(proc, run / "metrics.jsonl", after=0)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    _, err = (b.decode() for b in proc.communicate(timeout=HANG_TIMEOUT))
    # torchrun's own exit status and traceback, as docs/training.md says; the run is saved.
    assert proc.returncode == 1 and "SignalException" in err, err
    hints = re.findall(r"continue with: (.+)", err)
    assert len(hints) == 1, err  # rank 0 alone
    quoted = shlex.quote(str(run))
    assert hints[0] == f"torchrun --nproc_per_node 2 -m torchstyle train --resume {quoted}"
    assert "[rank" not in err, err
    assert (run / "checkpoints" / "latest.pt").is_file()
    # The printed line resumes the run (torchrun here is `python -m torch.distributed.run`).
    words = shlex.split(hints[0])
    assert words[:5] == ["torchrun", "--nproc_per_node", "2", "-m", "torchstyle"]
    # Resumed, then SIGINT to the workers alone: they exit 128 + 2, as torchrun reports.
    size = (run / "metrics.jsonl").stat().st_size
    proc = torchrun(2, *words[5:], "--no-progress", popen=True)
    _wait_for_a_logged_step(proc, run / "metrics.jsonl", after=size)
    for worker in _children(proc.pid):
        os.kill(worker, signal.SIGINT)
    _, err = (b.decode() for b in proc.communicate(timeout=HANG_TIMEOUT))
    assert len(re.findall(r"^resumed \S+ at epoch", err, re.M)) == 1, err
    assert err.count("continue with: torchrun --nproc_per_node 2") == 1, err
    # The first worker to leave makes torchrun SIGTERM the others; each had left the process
    # group (after the checkpoint) by then, so each exit is 130 or that SIGTERM.
    codes = re.findall(r"^\s+exitcode\s+: (-?\d+)", err, re.M)  # the report's lines
    assert len(codes) == 2 and "130" in codes and set(codes) <= {"130", "-15"}, err
    assert "[rank" not in err, err  # no worker traceback (torch prefixes those "[rankN]:")
    resumed = torchrun(2, *words[5:], "--epochs", "1", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr


def _wait_for_a_logged_step(proc, metrics: Path, *, after: int) -> None:
    deadline = time.monotonic() + HANG_TIMEOUT
    while not (metrics.exists() and metrics.stat().st_size > after) and proc.poll() is None:
        assert time.monotonic() < deadline, "training never logged"
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1].decode()


def _children(pid: int) -> list[int]:
    """The processes torchrun started (its workers)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_a_signal_after_the_last_epoch_says_the_run_finished(tmp_path):
    class SignalAtTheEnd(Callback):
        def on_epoch_end(self, trainer, epoch):  # after the last evaluation and checkpoint
            trainer._interrupt = signal.SIGINT

    cfg = TrainConfig(run_dir=str(tmp_path / "r"), epochs=1, progress=False)
    result = Trainer(cfg, model=TinyMLP(), data=random_bundle(), callbacks=[SignalAtTheEnd()])
    done = result.fit()  # no RunInterruptedError: nothing is left to continue
    assert done.epochs == 1 and "finished" in (done.stop_reason or "")


def test_max_steps_writes_the_best_checkpoint_that_test_reads(tmp_path):
    run = tmp_path / "r"
    r = run_cli("train", *MLP, *QUIET, "--max-steps", "5", "--run-dir", str(run))
    assert r.returncode == 0, r.stderr
    assert re.search(r"^best accuracy: [\d.]+ \(epoch 1\)$", r.stdout, re.M), r.stdout
    best = run / "checkpoints" / "best.pt"
    assert best.is_file()  # what the summary calls best is on disk
    assert f"best checkpoint: {best}" in r.stdout
    t = run_cli("test", str(run), "--json")
    assert t.returncode == 0, t.stderr
    assert json.loads(t.stdout)["checkpoint"] == str(best)


def _loss_at(run: Path, step: int) -> float:
    return next(r["train/loss"] for r in read_jsonl(run / "metrics.jsonl") if r["step"] == step)


@pytest.mark.slow
def test_batchnorm_under_ddp_trains_as_one_process_with_sync_and_differs_without(tmp_path):
    # The default classifier has BatchNorm. Global batch 8: one process normalises over 8
    # samples; each of two over its 4 unless the statistics are synchronised (the default).
    args = ("train", "--model", "classifier", "--data", "digits", "--batch-size", "8")
    args = (*args, *QUIET, "--max-steps", "10", "--epochs", "1", "--workers", "0")
    runs = {name: tmp_path / name for name in ("one", "sync", "nosync")}
    one = run_cli(*args, "--run-dir", str(runs["one"]))
    assert one.returncode == 0, one.stderr
    sync = torchrun(2, *args, "--run-dir", str(runs["sync"]))
    assert sync.returncode == 0, sync.stderr
    assert "BatchNorm" not in sync.stderr, sync.stderr
    nosync = torchrun(2, *args, "--no-sync-batchnorm", "--run-dir", str(runs["nosync"]))
    assert nosync.returncode == 0, nosync.stderr
    assert nosync.stderr.count("the model has BatchNorm and --no-sync-batchnorm") == 1

    # Float64 statistics summed across processes vs one process's float32 BatchNorm: the
    # same to float32 rounding, grown over 10 AdamW steps.
    assert _loss_at(runs["sync"], 10) == pytest.approx(_loss_at(runs["one"], 10), rel=1e-4)
    assert _loss_at(runs["nosync"], 10) != pytest.approx(_loss_at(runs["one"], 10), rel=1e-3)
    a, b, c = (_net(runs[name]) for name in ("one", "sync", "nosync"))
    assert a.keys() == b.keys() == c.keys()  # the synchronised layers keep BatchNorm's keys
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=k)
    assert any(not torch.allclose(c[k].float(), a[k].float(), rtol=1e-3, atol=1e-4) for k in a)

    # Each rank draws its own random numbers (dropout masks, augmentation): seed + rank.
    rng = load_checkpoint(runs["sync"] / "checkpoints" / "latest.pt")["rng_per_rank"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])

    # Resuming the unsynchronised run with one process changes its statistics: it says so.
    resumed = run_cli("train", "--resume", str(runs["nosync"]), "--max-steps", "12")
    assert resumed.returncode == 0, resumed.stderr
    assert "trained with 2 process(es) and resumes with 1" in resumed.stderr


def test_the_padded_train_sampler_repeats_a_few_samples_so_ranks_step_alike():
    # 11 samples over 2 ranks: 6 each, so one sample is seen twice in the epoch.
    ranks = [
        EpochBatchSampler(11, batch_size=2, shuffle=True, seed=1, rank=r, world_size=2, pad=True)
        for r in (0, 1)
    ]
    seen = []
    for sampler in ranks:
        sampler.set_epoch(0)
        seen.append([i for batch in sampler for i in batch])
    assert len(seen[0]) == len(seen[1]) == 6
    both = seen[0] + seen[1]
    assert set(both) == set(range(11)) and len(both) - len(set(both)) == 1
