"""``--strategy fsdp`` through the real CLI under torchrun on the CPU (gloo, 2 processes), with
``gpt`` on ``stdlib``: parity with one process, 1/N of the model per process, exact resume after
a kill on 2 processes and within tolerance on 1, and train/evaluate/sample under every strategy.

Tolerances (docs/sharding.md): after 20 steps with the same global batch, weights within
rtol 1e-4 / atol 1e-5 of one process and logged losses equal to rel 1e-5; on the same number
of processes, a resumed run is bitwise equal to the uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import HANG_TIMEOUT, REPO, run_cli
from tests.engine.conftest import read_jsonl
from torchstyle.engine import fsdp
from torchstyle.engine.checkpoint import load_checkpoint
from torchstyle.models import create_model

pytestmark = pytest.mark.slow

# A tiny gpt on 32-byte windows. SGD keeps an update linear in the gradient, so the order in
# which the reduce-scatter sums is the only difference from one process.
GPT = (
    "train", "--model", "gpt", "--data", "stdlib", "--image-size", "32",
    "--model-arg", "dim=32", "--model-arg", "depth=2", "--model-arg", "num_heads=2",
    "--batch-size", "8", "--optimizer", "sgd", "--lr", "0.1",
    "--no-progress", "--log-every", "5", "--eval-every", "0", "--max-steps", "20",
)  # fmt: skip
FAULT_RUN = str(REPO / "tests" / "engine" / "fault_run.py")


def torchrun(nproc: int, *args: str, script: str | None = None) -> subprocess.CompletedProcess:
    target = [script] if script else ["-m", "torchstyle"]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        *target, *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_TIMEOUT)


def weights(run: Path) -> dict[str, torch.Tensor]:
    """The run's latest weights as a plain state_dict, consolidated when sharded."""
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    if "shards" not in state:
        return state["net"]
    model = create_model("gpt", **state["model"]["hparams"])
    return fsdp.consolidate(run / "checkpoints" / state["shards"], model)


def losses(run: Path) -> dict[int, float]:
    rows = read_jsonl(run / "metrics.jsonl")
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 20 steps in one process and in two under FSDP."""
    root = tmp_path_factory.mktemp("fsdp")
    single = run_cli(*GPT, "--run-dir", str(root / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    sharded = torchrun(2, *GPT, "--strategy", "fsdp", "--run-dir", str(root / "fsdp"))
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    return root, sharded


def test_fsdp_matches_one_process_and_each_rank_holds_half(runs):
    root, sharded = runs
    one, two = losses(root / "single"), losses(root / "fsdp")
    assert one.keys() == two.keys() == {5, 10, 15, 20}
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5), step
    a, b = weights(root / "single"), weights(root / "fsdp")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    fresh = create_model("gpt", context=32, dim=32, depth=2, num_heads=2).state_dict()
    assert any(not torch.allclose(a[k], fresh[k]) for k in a)  # it trained
    # Each process reported its local shards: half the parameters, half the optimizer state.
    held = re.findall(
        r"fsdp rank (\d) of 2 holds (\d+) of (\d+) parameter elements and (\d+) of (\d+)",
        sharded.stderr,
    )
    assert sorted(h[0] for h in held) == ["0", "1"], sharded.stderr[-2000:]
    for rank, p_local, p_total, o_local, o_total in held:
        print(f"rank {rank}: {p_local}/{p_total} parameters, {o_local}/{o_total} optimizer state")
        assert int(p_local) * 2 == pytest.approx(int(p_total), rel=0.02)
        assert int(o_local) * 2 == pytest.approx(int(o_total), rel=0.02)
    # On disk too: every process wrote its own shard file, about half of the bytes each.
    state = load_checkpoint(root / "fsdp" / "checkpoints" / "latest.pt")
    assert "net" not in state and "optim" not in state
    folder = root / "fsdp" / "checkpoints" / state["shards"]
    sizes = {p.name: p.stat().st_size for p in folder.glob("*.distcp")}
    print("shard files:", sizes)
    assert sorted(sizes) == ["__0_0.distcp", "__1_0.distcp"]
    assert min(sizes.values()) > 0.4 * sum(sizes.values())
    # Only the checkpoint's own shard folder is left, and no temporary.
    assert [p.name for p in (root / "fsdp" / "checkpoints").iterdir() if p.is_dir()] == [
        folder.name
    ]


def test_killed_and_resumed_on_two_is_bitwise_and_on_one_within_tolerance(runs, tmp_path):
    root, _ = runs
    killed = tmp_path / "killed"
    proc = torchrun(
        2, "sigterm-at-step", "10", *GPT, "--strategy", "fsdp", "--run-dir", str(killed),
        script=FAULT_RUN,
    )  # fmt: skip
    assert proc.returncode != 0, "the run was not interrupted"
    assert load_checkpoint(killed / "checkpoints" / "latest.pt")["n_iter"] == 10
    on_one = tmp_path / "on_one"
    shutil.copytree(killed, on_one)
    resumed = torchrun(2, "train", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = weights(root / "fsdp")
    for k, v in weights(killed).items():
        assert torch.equal(v, straight[k]), k
    assert losses(killed) == losses(root / "fsdp")
    # One process, without torchrun, reads the two processes' shards into the whole model
    # and optimizer (resharding) and ends within tolerance.
    resumed = run_cli("train", "--resume", str(on_one), "--strategy", "single")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for k, v in weights(on_one).items():
        torch.testing.assert_close(v, straight[k], rtol=1e-4, atol=1e-5, msg=k)


def test_gpt_trains_evaluates_and_samples_under_every_strategy(runs):
    root, _ = runs
    ddp = torchrun(2, *GPT[:-1], "4", "--strategy", "ddp", "--run-dir", str(root / "ddp"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    for name in ("single", "ddp", "fsdp"):
        run = root / name
        evaluated = [r for r in read_jsonl(run / "metrics.jsonl") if "test/loss" in r]
        assert evaluated and math.isfinite(evaluated[-1]["test/loss"]), name
        bpb = evaluated[-1]["test/bits_per_byte"]
        assert bpb == pytest.approx(evaluated[-1]["test/loss"] / math.log(2))
        sample = run_cli(
            "predict", str(run), "--prompt", "def ", "--max-new-tokens", "24", "--seed", "0"
        )
        assert sample.returncode == 0, sample.stderr
        assert sample.stdout.startswith("def ") and len(sample.stdout) > len("def \n"), name
    # `test` consolidates the shards and evaluates the held-out split.
    tested = run_cli("test", str(root / "fsdp"), "--json")
    assert tested.returncode == 0, tested.stderr
    assert math.isfinite(json.loads(tested.stdout)["loss"])
    split = json.loads((root / "fsdp" / "data.json").read_text())["files"]
    assert split["train"] and split["validation"] and split["test"]
