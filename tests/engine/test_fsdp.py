"""FSDP pieces: which modules become shard units, sharded save/load/consolidate, and (slow) two
processes under torchrun on the CPU: each holds half, evaluation may run unevenly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from tests.conftest import HANG_TIMEOUT, REPO
from torchstyle.engine import fsdp
from torchstyle.engine.checkpoint import CheckpointLoadError, CheckpointWriteError
from torchstyle.errors import UserError
from torchstyle.models import create_model
from torchstyle.nn import TransformerBlock

TINY = {"context": 16, "dim": 32, "depth": 2, "num_heads": 2}


def _trained_gpt(seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("gpt", **TINY)
    optimizers = model.configure_optimizers()
    x = torch.randint(256, (4, 17))
    model.training_step((x[:, :-1], x[:, 1:]), "model")["loss"].backward()
    optimizers["model"].step()
    return model, optimizers


def test_named_blocks_become_the_units():
    model = create_model("gpt", **TINY)
    units = fsdp.block_modules(model)
    assert len(units) == 2 and all(isinstance(u, TransformerBlock) for u in units)


def test_models_naming_no_blocks_get_units_by_size_innermost_first():
    big, small = nn.Linear(40, 40), nn.Linear(4, 4)  # 1640 and 20 parameters
    inner = nn.Sequential(nn.Linear(30, 30), nn.Linear(30, 30))  # 930 each, 1860 together
    model = nn.Sequential(big, small, inner)
    units = fsdp.block_modules(model, min_params=1000)
    assert units == [big, inner]  # `small` stays in the root; the root is not listed
    assert fsdp.block_modules(model, min_params=10**9) == []


def test_amp_maps_to_a_policy_and_fp16_is_refused():
    policy = fsdp.mixed_precision("bf16")
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32
    assert fsdp.mixed_precision("off").param_dtype is None
    with pytest.raises(UserError, match="use --amp bf16"):
        fsdp.mixed_precision("fp16")


def test_shard_report_of_an_unsharded_model_is_whole():
    model, optimizers = _trained_gpt()
    report = fsdp.shard_report(model, optimizers.values())
    n = sum(p.numel() for p in model.parameters())
    assert report["params_local"] == report["params_total"] == n
    assert report["optim_local"] == report["optim_total"] == 2 * n  # Adam: two moments


def test_save_load_and_consolidate_round_trip_in_one_process(tmp_path):
    model, optimizers = _trained_gpt()
    name = fsdp.new_shard_name(tmp_path, 1)
    folder = fsdp.save_shards(tmp_path, name, model, optimizers, is_main=True, barrier=lambda: None)
    assert folder.name == "shards-00000001" and (folder / ".metadata").is_file()
    assert fsdp.new_shard_name(tmp_path, 1) == "shards-00000001-1"  # never reuses a folder
    other, other_opt = _trained_gpt(seed=1)
    fsdp.load_shards(folder, other, other_opt)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    exp_avg = next(iter(optimizers["model"].state.values()))["exp_avg"]
    assert torch.equal(next(iter(other_opt["model"].state.values()))["exp_avg"], exp_avg)
    plain = fsdp.consolidate(folder, create_model("gpt", **TINY))
    assert plain.keys() == model.state_dict().keys()
    assert all(torch.equal(plain[k], v) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointLoadError, match="other --model-arg"):
        fsdp.consolidate(folder, create_model("gpt", **{**TINY, "dim": 64}))


def test_a_failed_write_leaves_no_folder_and_prune_keeps_only_referenced(tmp_path, monkeypatch):
    model, optimizers = _trained_gpt()
    kept = fsdp.save_shards(tmp_path, "shards-00000001", model, optimizers, is_main=True,
                            barrier=lambda: None)  # fmt: skip
    fsdp.save_shards(tmp_path, "shards-00000002", model, optimizers, is_main=True,
                     barrier=lambda: None)  # fmt: skip

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsdp.state_dict_saver, "save", disk_full)
    with pytest.raises(CheckpointWriteError, match="previous checkpoint is intact"):
        fsdp.save_shards(tmp_path, "shards-00000003", model, optimizers, is_main=True,
                         barrier=lambda: None)  # fmt: skip
    assert not (tmp_path / "shards-00000003").exists()
    fsdp.prune_shards(tmp_path, {kept.name})
    assert [p.name for p in fsdp.shard_folders(tmp_path)] == [kept.name]
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(CheckpointLoadError, match="missing or incomplete"):
        fsdp.load_shards(tmp_path / "shards-00000002", model, optimizers)


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        str(REPO / "tests" / "engine" / "fsdp_worker.py"), *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_TIMEOUT)


@pytest.mark.slow
def test_two_processes_hold_half_each_under_bf16_offload_and_checkpointing(tmp_path):
    two = _torchrun(2, str(tmp_path / "two"), "3", "--ac", "--bf16", "--offload")
    assert two.returncode == 0, two.stderr[-3000:]
    reports = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in reports:
        sizes = r["report"]
        print("rank shard sizes:", sizes)
        assert sizes["params_local"] * 2 == pytest.approx(sizes["params_total"], rel=0.02)
        assert sizes["optim_local"] * 2 == pytest.approx(sizes["optim_total"], rel=0.02)
    # Uneven evaluation under gathered weights: rank 1 ran one more batch, and did not hang.
    assert len(reports[0]["evals"]) == 1 and len(reports[1]["evals"]) == 2
    assert reports[0]["evals"][0] == pytest.approx(reports[1]["evals"][0], rel=1e-6)
    saved = tmp_path / "two" / reports[0]["shards"]
    assert sorted(p.name for p in saved.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    weights = fsdp.consolidate(saved, create_model("gpt", **TINY))
    fresh = create_model("gpt", **TINY).state_dict()
    assert any(not torch.equal(weights[k], fresh[k]) for k in weights)  # trained weights
