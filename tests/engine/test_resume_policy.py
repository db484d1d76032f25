"""The resume policy: what may change on resume, re-planned schedules, applied rates."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import pytest
import torch

from torchstyle.config import TrainConfig
from torchstyle.engine import resume_policy as policy
from torchstyle.engine.resume_policy import Rule
from torchstyle.errors import UserError

RUN = Path("runs/r")


def saved_config(**kw) -> dict:
    # A run records its data as resolved (the model's own when --data was not given).
    return TrainConfig(run_dir=str(RUN), **{"data": "digits", **kw}).to_dict()


def test_every_setting_is_classified():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields <= set(policy.POLICY), sorted(fields - set(policy.POLICY))
    table = policy.describe_table()
    assert all(f"`--{name.replace('_', '-')}`" in table for name in fields)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"model": "mlp"}, "--model 'classifier' -> 'mlp'"),
        ({"model_args": {"width": 4}}, "--model-args {} -> {'width': 4}"),
        ({"image_size": 16}, "--image-size None -> 16"),  # no spec given: None stays
        ({"optimizer": "adam"}, "--optimizer 'sgd' -> 'adam'"),
        ({"batch_size": 32}, "--batch-size 64 -> 32"),
        ({"data": "synthetic"}, "--data 'digits' -> 'synthetic'"),
        ({"run_dir": "elsewhere"}, "--run-dir elsewhere (the run is in runs/r)"),
    ],
)
def test_refused_changes_name_the_flag_and_the_fix(change, fragment):
    new = {**saved_config(), **change}
    with pytest.raises(UserError, match="cannot resume runs/r with changed") as info:
        policy.check_resume(saved_config(), new, run_dir=RUN, defaults={"optimizer": "sgd"})
    assert fragment in str(info.value) and "start a new run" in str(info.value)


def test_model_defaults_and_same_values_are_not_changes():
    new = {**saved_config(), "optimizer": "sgd", "lr": 0.1, "run_dir": "runs/./r"}
    changes = policy.check_resume(
        saved_config(), new, run_dir=RUN, defaults={"optimizer": "sgd", "lr": 0.1}
    )
    assert not changes


def test_accepted_changes_are_reported_by_rule():
    new = {**saved_config(), "epochs": 20, "lr": 0.01, "log_every": 5}
    changes = policy.check_resume(saved_config(), new, run_dir=RUN, defaults={"lr": 0.1})
    assert changes.changed == {"epochs": (10, 20), "lr": (0.1, 0.01), "log_every": (50, 5)}
    assert changes.of(Rule.REPLAN) == {"epochs": (10, 20)}


def test_overwrite_with_resume_is_refused():
    with pytest.raises(UserError, match="would delete the run"):
        policy.check_resume(saved_config(), {**saved_config(), "overwrite": True}, run_dir=RUN)


def test_spec_difference_is_named():
    saved = {"channels": 1, "image_size": 8, "num_classes": 10, "class_names": ["a", "b"]}
    new = {**saved, "class_names": ("b", "a")}
    with pytest.raises(UserError, match=r"class_names \['a', 'b'\] -> \('b', 'a'\)"):
        policy.check_spec(saved, new, run_dir=RUN)
    policy.check_spec(saved, {**saved, "class_names": ("a", "b")}, run_dir=RUN)


def make(kind: str, total: int) -> tuple[torch.optim.Optimizer, object]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = {
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total),
        "step": lambda: torch.optim.lr_scheduler.StepLR(opt, step_size=total // 3, gamma=0.1),
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total),
    }[kind]()
    return opt, sched


def run_steps(opt, sched, n: int) -> list[float]:
    lrs = []
    for _ in range(n):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def restored(kind: str, total: int, step: int):
    """A schedule saved at ``step`` of ``total`` and loaded into a fresh one, as a resume does."""
    opt, sched = make(kind, total)
    run_steps(opt, sched, step)
    opt2, sched2 = make(kind, total)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    return opt2, sched2


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
@pytest.mark.parametrize("step", [3, 12])  # onecycle: in warm-up (30% of 24), and annealing
def test_more_epochs_extend_the_schedule_continuously(kind, step):
    opt, sched = restored(kind, 24, step)
    lr_at_resume = opt.param_groups[0]["lr"]
    policy.replan_schedules({"m": sched}, step=step, total=48)
    # No "Tried to step" error past the old end. The rate after the last step is never used.
    lrs = run_steps(opt, sched, 48 - step)[:-1]
    steps = [lr_at_resume, *lrs]
    opt0, sched0 = make(kind, 24)
    original = [opt0.param_groups[0]["lr"], *run_steps(opt0, sched0, 24)[:-1]]

    def steepest(lrs: list[float]) -> float:
        return max(abs(b - a) for a, b in itertools.pairwise(lrs))

    # Continuous: never a step steeper than the original schedule's own steepest.
    assert steepest(steps) <= steepest(original) + 1e-12
    if step > 7 or kind == "cosine":  # past the peak, the rate only goes down
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(steps))
    assert lrs[-1] < 0.01 * lr_at_resume + 1e-6, "it ends at the schedule's minimum"


def test_step_schedule_decays_at_thirds_of_the_new_length():
    opt, sched = restored("step", 24, 10)  # one decay done, at step 8
    assert math.isclose(opt.param_groups[0]["lr"], 0.01)
    policy.replan_schedules({"m": sched}, step=10, total=48)
    lrs = run_steps(opt, sched, 38)
    assert math.isclose(lrs[0], 0.01) and math.isclose(lrs[16 - 11], 0.001)
    assert math.isclose(lrs[32 - 11], 0.0001)


def test_lr_change_scales_the_rest_of_the_schedule():
    opt, sched = restored("cosine", 24, 6)
    ref_opt, ref_sched = restored("cosine", 24, 6)
    policy.scale_learning_rates({"m": opt}, {"m": sched}, 0.5)
    assert math.isclose(opt.param_groups[0]["lr"], 0.5 * ref_opt.param_groups[0]["lr"])
    for a, b in zip(run_steps(opt, sched, 10), run_steps(ref_opt, ref_sched, 10), strict=True):
        assert math.isclose(a, 0.5 * b, rel_tol=1e-9)


def test_weight_decay_change_spares_groups_without_decay():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD(
        [{"params": [a], "weight_decay": 1e-4}, {"params": [b], "weight_decay": 0.0}], lr=0.1
    )
    policy.set_weight_decay({"m": opt}, 1e-4, 5e-4)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]


def test_the_docs_show_the_policy_table():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    assert policy.describe_table() in docs
