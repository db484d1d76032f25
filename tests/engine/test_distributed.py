"""DDP through torchrun on the CPU (gloo): same weights as one process, rank 0 writes, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import HANG_TIMEOUT, REPO, run_cli
from tests.engine.conftest import read_jsonl
from torchstyle.engine.checkpoint import load_checkpoint

# Every test here trains in subprocesses (the real CLI, torchrun).
pytestmark = pytest.mark.slow

# An MLP has no batch norm, so splitting a batch across processes leaves its gradient unchanged.
MLP = (
    "--model",
    "mlp",
    "--data",
    "digits",
    "--model-arg",
    "hidden=[32]",
    "--optimizer",
    "sgd",
    "--lr",
    "0.1",
)
QUIET = ("--no-progress", "--log-every", "10")


def torchrun(nproc: int, *args: str, popen: bool = False, timeout: float = HANG_TIMEOUT):
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "torchstyle", *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _net(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "latest.pt")["net"]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    # Global batch 32: one process loads 32, each of two loads 16. 40 steps stay inside epoch 1.
    args = ("train", *MLP, *QUIET, "--batch-size", "32", "--max-steps", "40", "--epochs", "1")
    one = run_cli(*args, "--run-dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = torchrun(2, *args, "--run-dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    a, b = _net(tmp_path / "one"), _net(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.equal(a["net.1.weight"], torch.zeros_like(a["net.1.weight"]))
    # The logged loss is the global mean, not rank 0's half.
    la = {
        r["step"]: r["train/loss"]
        for r in read_jsonl(tmp_path / "one" / "metrics.jsonl")
        if "train/loss" in r
    }
    lb = {
        r["step"]: r["train/loss"]
        for r in read_jsonl(tmp_path / "two" / "metrics.jsonl")
        if "train/loss" in r
    }
    assert la.keys() == lb.keys() == {10, 20, 30, 40}
    for step in la:
        assert la[step] == pytest.approx(lb[step], rel=1e-4)
    # Only rank 0 wrote: one event file, one metrics row per step, one checkpoint.
    run = tmp_path / "two"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "train/loss" in r]
    assert steps == sorted(set(steps))
    # The run ends mid-epoch at --max-steps: its one evaluation makes that checkpoint best too.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "latest.pt"]
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert len(ckpt["rng_per_rank"]) == 2
    # Evaluation covers all 360 test images once, reduced across ranks.
    acc_a = [r for r in read_jsonl(tmp_path / "one" / "metrics.jsonl") if "test/accuracy" in r][-1]
    acc_b = [r for r in read_jsonl(run / "metrics.jsonl") if "test/accuracy" in r][-1]
    assert acc_a["test/accuracy"] == pytest.approx(acc_b["test/accuracy"], abs=1 / 360 + 1e-9)


def test_ddp_resume_after_a_kill_matches_the_uninterrupted_run(tmp_path):
    args = ("train", *MLP, *QUIET, "--batch-size", "32", "--epochs", "3", "--keep", "5")
    straight = torchrun(2, *args, "--run-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    run = tmp_path / "killed"
    proc = torchrun(2, *args, "--run-dir", str(run), popen=True)
    deadline = time.monotonic() + HANG_TIMEOUT
    while not (run / "checkpoints" / "epoch_0001.pt").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no epoch checkpoint appeared"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers, no chance to save
    proc.wait()
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["epoch"] < 3, "the run finished before the kill; nothing was resumed"
    resumed = torchrun(2, "train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    a, b = _net(tmp_path / "straight"), _net(run)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.skipif(
    torch.cuda.device_count() < 1, reason="DataParallel needs CUDA GPUs; this machine has none"
)
def test_data_parallel_trains(tmp_path):
    proc = run_cli(
        "train",
        *MLP,
        *QUIET,
        "--strategy",
        "dp",
        "--epochs",
        "1",
        "--run-dir",
        str(tmp_path / "dp"),
    )
    assert proc.returncode == 0, proc.stderr


def test_ddp_without_a_launcher_says_how_to_launch(tmp_path):
    proc = run_cli("train", *MLP, "--strategy", "ddp", "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 2 and "torchrun --nproc_per_node" in proc.stderr


@pytest.mark.parametrize("nproc", [1, 2])
def test_pix2pix_super_network_trains_under_one_and_two_processes(tmp_path, nproc):
    from tests.models.test_pix2pix import write_pairs

    data = write_pairs(tmp_path / "pairs")
    args = (
        "train", "--model", "pix2pix", "--data", str(data), "--epochs", "1", "--image-size", "16",
        "--batch-size", "4", "--model-arg", "ngf=8", "--model-arg", "ndf=8", "--model-arg", "n_blocks=1",
        "--run-dir", str(tmp_path / "run"), *QUIET,
    )  # fmt: skip
    proc = torchrun(nproc, *args) if nproc > 1 else run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    losses = [r[k] for r in rows for k in ("train/d/loss", "train/g/loss") if k in r]
    assert losses and all(v == v and abs(v) < float("inf") for v in losses)
    assert any("test/l1" in r for r in rows)


def test_accumulation_under_ddp_all_reduces_once_per_optimizer_step(tmp_path, monkeypatch):
    import socket

    import torch.distributed as dist

    from tests.engine.models import TinyMLP, random_bundle
    from torchstyle.config import TrainConfig
    from torchstyle.engine.callbacks import Callback
    from torchstyle.engine.trainer import Trainer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = TrainConfig(
        strategy="ddp",
        device="cpu",
        batch_size=8,
        accumulate=4,
        max_steps=3,
        progress=False,
        run_dir=str(tmp_path / "r"),
    )
    reductions = []

    def count(state, bucket):  # a pass-through all-reduce that counts its calls
        reductions.append(1)
        fut = torch.futures.Future()
        fut.set_result(bucket.buffer())
        return fut

    class CountReductions(Callback):  # the DDP wrapper exists once training has started
        def on_train_start(self, trainer):
            trainer.strategy.module.register_comm_hook(None, count)

    try:
        trainer = Trainer(cfg, model=TinyMLP(), data=random_bundle(), callbacks=[CountReductions()])
        assert not dist.is_initialized(), "building a trainer must not join the process group"
        trainer.fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    # 3 optimizer steps of 4 micro-batches: 3 all-reduces (the small model is one bucket), not 12.
    assert trainer.position.n_iter == 3 and len(reductions) == 3
