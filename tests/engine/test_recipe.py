"""The training recipe: mixing, label smoothing, EMA, warm-up, groups, presets, resume, DDP."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchstyle.recipes as recipes
from tests.cli_runner import run_python
from tests.conftest import HANG_TIMEOUT, REPO, run_cli
from torchstyle.config import TrainConfig, add_train_arguments, config_from_args
from torchstyle.data.augment import augment_batch
from torchstyle.data.autoaugment import AUTO_POLICIES
from torchstyle.data.mixing import BatchRecipe
from torchstyle.engine import param_groups
from torchstyle.engine.checkpoint import load_checkpoint
from torchstyle.engine.ema import WeightAverage
from torchstyle.errors import UserError

K = 5


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 12, 12, generator=g) * 2 - 1, torch.randint(0, K, (n,), generator=g)


def test_mixup_targets_sum_to_one_and_the_loss_is_the_mixture():
    x, y = _batch()
    recipe = BatchRecipe(num_classes=K, seed=3, mixup=0.4, label_smoothing=0.1)
    mixed, t = recipe(x, y, step=7)
    assert torch.allclose(t.sum(1), torch.ones(len(y)))
    # lam is read off the images: mixed = lam x + (1 - lam) x.roll(1).
    xr, yr = x.roll(1, 0), y.roll(1, 0)
    lam = float(((mixed - xr) / (x - xr)).flatten()[0])
    assert 0 < lam < 1 and torch.allclose(mixed, lam * x + (1 - lam) * xr, atol=1e-6)
    logits = torch.randn(len(y), K)
    by_hand = lam * F.cross_entropy(logits, y, label_smoothing=0.1) + (1 - lam) * F.cross_entropy(
        logits, yr, label_smoothing=0.1
    )
    assert torch.allclose(F.cross_entropy(logits, t), by_hand, atol=1e-6)
    again = recipe(x, y, step=7)  # keyed on the step: the same draw
    assert torch.equal(again[0], mixed) and not torch.equal(recipe(x, y, step=8)[0], mixed)


def test_cutmix_weight_is_the_pasted_area():
    x, y = _batch()
    mixed, t = BatchRecipe(num_classes=K, seed=1, cutmix=1.0)(x, y, step=2)
    pasted = (mixed != x).any(dim=1)[0].float().mean()  # the same box in every image
    lam = 1 - float(pasted)
    yr = y.roll(1, 0)
    expected = lam * F.one_hot(y, K) + (1 - lam) * F.one_hot(yr, K)
    assert torch.allclose(t.sum(1), torch.ones(len(y)))
    assert torch.allclose(t, expected.float(), atol=1e-6)
    logits = torch.randn(len(y), K)
    by_hand = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, yr)
    assert torch.allclose(F.cross_entropy(logits, t), by_hand, atol=1e-6)


def test_several_processes_mix_the_global_batch_as_one_process_does():
    x, y = _batch(8)
    recipe = BatchRecipe(num_classes=K, seed=1, mixup=0.5, cutmix=1.0)
    one_x, one_t = recipe(x, y, step=4)

    def gather(t: torch.Tensor) -> list[torch.Tensor]:  # what all_gather returns, rank order
        full = x if t.is_floating_point() else y
        return [full[r::2] for r in range(2)]

    for r in range(2):  # rank r holds the global positions r, r + 2, ... (the sampler's shard)
        rx, rt = recipe(x[r::2], y[r::2], 4, rank=r, world=2, gather=gather)
        assert torch.equal(rx, one_x[r::2]) and torch.equal(rt, one_t[r::2])


def test_ema_is_the_hand_computed_average_after_k_steps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    ema = WeightAverage(net, 0.9)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    by_hand: dict[str, torch.Tensor] = {}
    for step in range(5):
        opt.zero_grad()
        net(torch.randn(6, 4)).pow(2).mean().backward()
        opt.step()
        ema.update(net)
        for k, v in net.state_dict().items():
            if not v.is_floating_point():
                continue
            by_hand[k] = v.clone() if step == 0 else 0.9 * by_hand[k] + 0.1 * v
    saved = ema.state_dict()
    assert saved["n_averaged"] == 5
    for k, v in by_hand.items():
        assert torch.allclose(saved["net"][k], v, atol=1e-6), k


def test_norms_and_biases_get_no_weight_decay_and_warmup_precedes_the_schedule():
    net = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    opt = torch.optim.AdamW(net.parameters(), lr=1.0, weight_decay=0.05)
    opts = param_groups.regroup({"model": opt}, net, decay_norms_and_biases=False, layer_decay=0)
    groups = opts["model"].param_groups
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert [p.ndim for p in groups[0]["params"]] == [2]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    warm = param_groups.with_warmup({"model": sched}, opts, 2)["model"]
    lrs = []
    for _ in range(6):
        lrs.append(groups[0]["lr"])
        opt.step()
        warm.step()
    assert lrs[0] == pytest.approx(param_groups.WARMUP_START) and lrs[2] == pytest.approx(1.0)
    assert lrs[3] < lrs[2] and lrs[-1] < lrs[3]  # then the cosine


def test_layer_decay_uses_timm_groups():
    timm = pytest.importorskip("timm")
    net = timm.create_model("resnet18", num_classes=3, pretrained=False)
    opt = torch.optim.AdamW(net.parameters(), lr=1.0, weight_decay=0.05)
    opts = param_groups.regroup({"m": opt}, net, decay_norms_and_biases=False, layer_decay=0.5)
    lrs = sorted({g["lr"] for g in opts["m"].param_groups})
    assert lrs[-1] == pytest.approx(1.0) and lrs[0] < 0.1  # the stem decays the most
    n = sum(p.numel() for g in opts["m"].param_groups for p in g["params"])
    assert n == sum(p.numel() for p in net.parameters())
    with pytest.raises(UserError, match="layer-decay"):
        param_groups.regroup(
            {"m": opt}, nn.Linear(2, 2), decay_norms_and_biases=False, layer_decay=0.5
        )


@pytest.mark.parametrize("policy", AUTO_POLICIES)
def test_automatic_policies_are_keyed_per_sample(policy):
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    index = torch.tensor([3, 9, 27, 81])
    batch = augment_batch(images, policy, 1, 0, index)
    alone = torch.cat(
        [augment_batch(images[i : i + 1], policy, 1, 0, index[i : i + 1]) for i in range(4)]
    )
    assert torch.equal(batch, alone)  # a sample's draws do not depend on its batch
    assert not torch.equal(batch, augment_batch(images, policy, 1, 1, index))  # a new epoch


def test_a_resumed_lr_change_scales_the_schedule_behind_the_warmup():
    from torchstyle.engine.resume_policy import scale_learning_rates

    net = nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    sched = param_groups.with_warmup({"m": cosine}, {"m": opt}, 2)["m"]
    for _ in range(3):
        opt.step()
        sched.step()
    before = opt.param_groups[0]["lr"]
    scale_learning_rates({"m": opt}, {"m": sched}, 0.5)
    opt.step()
    sched.step()
    reference = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    ref = param_groups.with_warmup(
        {"m": torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=10)}, {"m": reference}, 2
    )["m"]
    for _ in range(4):
        reference.step()
        ref.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * reference.param_groups[0]["lr"])
    assert before == pytest.approx(2 * opt.param_groups[0]["lr"], rel=0.2)


def _cfg(*argv: str) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_a_preset_fills_what_no_flag_gave():
    cfg = _cfg("--recipe", "scratch", "--mixup", "0.2", "--scheduler", "none")
    recipes.resolve(cfg)
    assert (cfg.mixup, cfg.cutmix, cfg.scheduler, cfg.optimizer) == (0.2, 1.0, "none", "adamw")
    assert cfg.augment == "randaugment" and cfg.label_smoothing == 0.1
    plain = _cfg()
    recipes.resolve(plain)
    assert (plain.mixup, plain.ema, plain.weight_decay, plain.scheduler) == (0.0, 0.0, 0.0, "none")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (("--mixup", "-1"), "--mixup"),
        (("--label-smoothing", "1.5"), "--label-smoothing"),
        (("--ema-eval",), "--ema DECAY"),
        (("--warmup-steps", "3", "--warmup-epochs", "1"), "give one"),
        (("--normalize", "1,2,3"), "MEAN,STD"),
    ],
)
def test_bad_recipe_values_are_one_line_errors(argv, match):
    with pytest.raises(UserError, match=match):
        _cfg(*argv)


@pytest.mark.slow
def test_recipe_flags_on_a_model_they_do_not_fit_are_refused(tmp_path):
    proc = run_cli("train", "--model", "dcgan", "--mixup", "0.2", "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 2 and "apply to classifiers" in proc.stderr
    proc = run_cli(
        "train", "--model", "mlp", "--drop-path", "0.1", "--run-dir", str(tmp_path / "s")
    )
    assert proc.returncode == 2 and "no stochastic depth" in proc.stderr


def _depth_modules(model: nn.Module) -> list[float]:
    """The drop probabilities of a model's stochastic-depth modules (timm's DropPath,
    torchvision's StochasticDepth)."""
    from torchvision.ops import StochasticDepth

    rates = []
    for m in model.modules():
        if isinstance(m, StochasticDepth):
            rates.append(float(m.p))
        elif type(m).__name__ == "DropPath":
            rates.append(float(m.drop_prob))
    return rates


# Residual branches that do not start at zero (ConvNeXt's layer scale, timm ResNet's
# zero-initialised last norm), so that a dropped branch changes the output.
@pytest.mark.parametrize(
    ("model", "arg", "model_args"),
    [
        pytest.param("timm:resnet10t", "drop_path_rate", {"zero_init_last": False}, id="timm"),
        pytest.param("torchvision:efficientnet_b0", "stochastic_depth_prob", {}, id="torchvision"),
    ],
)
def test_drop_path_reaches_the_models_stochastic_depth(tmp_path, model, arg, model_args):
    """--drop-path builds the model with its own stochastic depth (each library scales the
    rate linearly with depth, up to it): training forwards drop whole residual branches at
    random, evaluation is deterministic, and the run records the rate."""
    if model.startswith("timm:"):
        pytest.importorskip("timm")
    from torchstyle.engine.run import build_run

    cfg = TrainConfig(
        model=model,
        model_args=model_args,
        drop_path=0.5,
        data="digits",
        image_size=32,
        batch_size=8,
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    run = build_run(cfg)
    rates = _depth_modules(run.model)
    n = len(rates)  # torchvision counts a first block of rate 0; timm builds none for it
    top = 0.5 if model.startswith("timm:") else 0.5 * (n - 1) / n
    assert n >= 3 and rates == sorted(rates) and max(rates) == pytest.approx(top)
    x = torch.stack([run.data.train[i][0] for i in range(4)])  # (4, 1, 32, 32)
    torch.manual_seed(0)
    run.model.train()
    with torch.no_grad():
        first, second = run.model(x), run.model(x)
        assert not torch.allclose(first, second)  # branches dropped at random
        run.model.eval()
        assert torch.equal(run.model(x), run.model(x))
    assert run.cfg.drop_path == 0.5 and run.cfg.model_args[arg] == 0.5  # config.json
    assert run.build.record["args"][arg] == 0.5  # the checkpoint's model record


# Every flag of the recipe at once, on an MLP (no BatchNorm: a batch split across processes
# gives one process's gradient).
RECIPE = (
    "--model", "mlp", "--data", "digits", "--model-arg", "hidden=[32]", "--no-progress",
    "--batch-size", "32", "--epochs", "1", "--log-every", "2", "--optimizer", "sgd",
    "--lr", "0.1", "--augment", "randaugment", "--random-erasing", "0.3", "--mixup", "0.4",
    "--cutmix", "1.0", "--label-smoothing", "0.1", "--warmup-steps", "3", "--scheduler",
    "cosine", "--weight-decay", "0.01", "--ema", "0.8", "--ema-eval",
)  # fmt: skip


def _state(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "latest.pt")


def _assert_same_state(a: dict, b: dict, atol: float = 0.0) -> None:
    for part in (a["net"], a["ema"]["net"]):
        other = b["net"] if part is a["net"] else b["ema"]["net"]
        for k, v in part.items():
            same = torch.equal(v, other[k]) if atol == 0 else torch.allclose(v, other[k], atol=atol)
            assert same, k
    assert a["ema"]["n_averaged"] == b["ema"]["n_averaged"]


@pytest.mark.slow
def test_recipe_run_survives_a_kill_and_resumes_bitwise(tmp_path):
    steps = ("--max-steps", "10", "--save-every", "3")
    straight = run_cli("train", *RECIPE, *steps, "--run-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    run = tmp_path / "killed"
    script = Path(__file__).with_name("fault_run.py")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [str(script), "sigkill-at-step", "8", "train", *RECIPE, *steps]
    proc = run_python([*cmd, "--run-dir", str(run)], env=env, timeout=HANG_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    assert _state(run)["n_iter"] in (3, 6)  # saved in the background at 3 and 6, killed at 8
    resumed = run_cli("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_state(_state(tmp_path / "straight"), _state(run))
    refused = run_cli("train", "--resume", str(run), "--ema", "0.5", "--max-steps", "12")
    assert refused.returncode == 2 and "--ema" in refused.stderr


@pytest.mark.slow
def test_every_recipe_flag_under_ddp_matches_one_process(tmp_path):
    from tests.engine.test_distributed import torchrun

    steps = ("--max-steps", "6")
    one = run_cli("train", *RECIPE, *steps, "--run-dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = torchrun(2, "train", *RECIPE, *steps, "--run-dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    _assert_same_state(_state(tmp_path / "one"), _state(tmp_path / "two"), atol=1e-5)
