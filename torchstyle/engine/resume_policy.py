"""What may change when a run is resumed, and what each change means.

A resumed run starts from its saved config; the flags typed on the resume command line are
compared with it, field by field, against :data:`POLICY`. A refused change stops the command
with exit code 2 before anything in the run folder is written. An accepted one is applied to
the restored state (not merely recorded), then the config is rewritten and the change is
appended to the run's ``resume_history.jsonl``.

The table is also the documentation (``docs/training.md`` shows it); a test checks that every
``TrainConfig`` field is in it, so a new setting cannot slip through unclassified.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from torchstyle.data.registry import data_moved, same_data
from torchstyle.errors import UserError
from torchstyle.recipes import BEFORE_RECIPES


class Rule(enum.Enum):
    """How a setting behaves on resume."""

    FREE = "may change"  # affects how, not what, is computed
    APPLIED = "may change; applied to the restored state"
    REPLAN = "may change; the schedule is re-planned"
    REFUSED = "may not change"
    FOLDER = "must name the resumed folder"
    RESUME = "resume flags"


@dataclass(frozen=True)
class Entry:
    """A row of the policy table: the rule and what it means for the run."""

    rule: Rule
    meaning: str


_DATA = "the model would train on other data than the run it continues"
_POSITION = "the saved position (batch in the epoch, data order) would mean other samples"

POLICY: dict[str, Entry] = {
    "model": Entry(Rule.REFUSED, "the checkpoint holds another model's weights"),
    "model_args": Entry(Rule.REFUSED, "the weights' shapes follow the constructor arguments"),
    "data": Entry(
        Rule.REFUSED,
        _DATA + " (paths are compared resolved; a recorded folder that no longer exists may "
        "be given where it is now, and its spec must match)",
    ),
    "data_dir": Entry(
        Rule.FREE, "where the same dataset lives; checked against the run's data spec"
    ),
    "image_size": Entry(Rule.REFUSED, "the model was built and trained for its image size"),
    "channels": Entry(Rule.REFUSED, "the first layer was built for the run's channels"),
    "download": Entry(Rule.FREE, "only allows fetching a missing dataset"),
    "skip_bad_images": Entry(Rule.REFUSED, _DATA),
    "augment": Entry(Rule.REFUSED, _DATA),
    "epochs": Entry(
        Rule.REPLAN,
        "more (or fewer) epochs: a schedule is re-planned from the current step to the new end, "
        "with the learning rate continuous at the resume point; at or below the epochs done, "
        "the run is finished",
    ),
    "max_steps": Entry(Rule.REPLAN, "as --epochs: the schedule is re-planned to the new end"),
    "batch_size": Entry(Rule.REFUSED, _POSITION),
    "accumulate": Entry(Rule.REFUSED, _POSITION),
    "seed": Entry(Rule.REFUSED, _POSITION),
    "lr": Entry(
        Rule.APPLIED,
        "every learning rate (and what the schedule will reach) is scaled by new/old from the "
        "resume point on",
    ),
    "weight_decay": Entry(
        Rule.APPLIED, "the parameter groups that had the old value get the new one"
    ),
    "optimizer": Entry(Rule.REFUSED, "the saved optimizer state belongs to the run's optimizer"),
    "scheduler": Entry(Rule.REFUSED, "the saved schedule state belongs to the run's schedule"),
    "clip_grad": Entry(Rule.FREE, "applies from the next step"),
    "amp": Entry(Rule.FREE, "applies from the next step (a new fp16 gradient scaler starts fresh)"),
    "nan_policy": Entry(Rule.FREE, "applies from the next step"),
    "early_stopping": Entry(Rule.FREE, "applies from the next evaluation"),
    "workers": Entry(Rule.FREE, "same batches, loaded by more or fewer processes"),
    "data_on_device": Entry(Rule.FREE, "same batches, held in device memory"),
    "decode": Entry(Rule.FREE, "same images, decoded elsewhere"),
    "deterministic": Entry(Rule.FREE, "algorithm choice only"),
    "cudnn_benchmark": Entry(Rule.FREE, "algorithm choice only"),
    "device": Entry(Rule.FREE, "the state is moved to the new device"),
    "strategy": Entry(
        Rule.FREE, "each process restores its RNG state when the world size is the same"
    ),
    "sync_batchnorm": Entry(
        Rule.FREE,
        "applies from the next step; off, BatchNorm statistics depend on the number of "
        "processes (a warning says so when it changes)",
    ),
    "compile": Entry(Rule.FREE, "same model, compiled or not"),
    "channels_last": Entry(Rule.FREE, "memory layout only"),
    "log_every": Entry(Rule.FREE, "logging only"),
    "eval_every": Entry(Rule.FREE, "evaluation only"),
    "keep": Entry(Rule.FREE, "how many epoch checkpoints are kept"),
    "save_every": Entry(Rule.FREE, "when checkpoints are written"),
    "save_every_minutes": Entry(Rule.FREE, "when checkpoints are written"),
    "progress": Entry(Rule.FREE, "display only"),
    "weights": Entry(
        Rule.FREE, "only initialises a new run; a resumed run continues from its own weights"
    ),
    "freeze": Entry(Rule.REFUSED, "the optimizer state was built for the trainable parameters"),
    "val_split": Entry(
        Rule.REFUSED, "the best checkpoint was chosen on the run's validation split"
    ),
    "test_split": Entry(Rule.REFUSED, _DATA),
    "cpu_offload": Entry(Rule.FREE, "where the shards live between steps"),
    "activation_checkpointing": Entry(Rule.FREE, "recomputes activations; the same results"),
    "tracker": Entry(Rule.FREE, "where the same scalars are also logged"),
    # The fine-tuning recipe (engine/recipes.py).
    "recipe": Entry(Rule.REFUSED, "the preset's values are the run's; change a setting itself"),
    "label_smoothing": Entry(Rule.FREE, "the targets of the next step on are smoothed so"),
    "mixup": Entry(Rule.FREE, "batches from the next step on are mixed so"),
    "cutmix": Entry(Rule.FREE, "batches from the next step on are mixed so"),
    "mix_switch_prob": Entry(Rule.FREE, "batches from the next step on are mixed so"),
    "random_erasing": Entry(Rule.FREE, "batches from the next step on are erased so"),
    "warmup_epochs": Entry(Rule.REFUSED, "the saved schedule state includes the warm-up"),
    "warmup_steps": Entry(Rule.REFUSED, "the saved schedule state includes the warm-up"),
    "ema": Entry(Rule.REFUSED, "the saved average was taken with the run's decay"),
    "ema_eval": Entry(Rule.REFUSED, "best.pt was chosen on the run's evaluated weights"),
    "layer_decay": Entry(Rule.REFUSED, "the optimizer state was built for the run's groups"),
    "drop_path": Entry(Rule.REFUSED, "the model was built with the run's stochastic depth"),
    "decay_norms_and_biases": Entry(
        Rule.REFUSED, "the optimizer state was built for the run's groups"
    ),
    "normalize": Entry(Rule.REFUSED, "the model was trained on inputs normalised so"),
    "run_dir": Entry(Rule.FOLDER, "the run stays in its folder; copy the folder to move it"),
    "resume": Entry(Rule.RESUME, "which run to continue"),
    "overwrite": Entry(Rule.RESUME, "refused together with a resume: it would delete the run"),
}

# The settings whose value None means "the model's (or data's) own": compared by the value
# they resolve to.
_RESOLVED = ("lr", "optimizer", "image_size")


@dataclass
class Changes:
    """The accepted changes of one resume: ``{field: (old, new)}``."""

    changed: dict[str, tuple[Any, Any]]

    def __bool__(self) -> bool:
        return bool(self.changed)

    def of(self, rule: Rule) -> dict[str, tuple[Any, Any]]:
        """The changes of fields with ``rule``."""
        return {k: v for k, v in self.changed.items() if POLICY[k].rule is rule}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _same_folder(a: Any, b: Any) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError, TypeError):
        return bool(a == b)


def check_resume(
    saved: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    run_dir: Path,
    defaults: Mapping[str, Any] | None = None,
) -> Changes:
    """Compares a resume's settings with the run's saved ones.

    Args:
        saved: The config the checkpoint was written with.
        new: The merged config of the resume command.
        run_dir: The folder being resumed.
        defaults: What ``None`` resolves to for ``lr``, ``optimizer`` (the model's own) and
            ``image_size`` (the run's).

    Returns:
        The accepted changes.

    Raises:
        UserError: A setting that may not change did; the message names every one and the fix.
    """
    defaults = defaults or {}
    if new.get("overwrite"):
        raise UserError(
            f"--overwrite with --resume would delete the run in {run_dir}; drop --overwrite to "
            "continue it, or drop --resume to replace it"
        )
    refused: list[str] = []
    changed: dict[str, tuple[Any, Any]] = {}
    for name in sorted(set(saved) | set(new)):
        entry = POLICY.get(name)
        if entry is None:
            raise UserError(f"resume of {run_dir}: unknown setting {name!r} in its config")
        if entry.rule is Rule.RESUME:
            continue
        old, value = _compared_values(name, saved, new, defaults)
        refusal = _refusal(name, entry, old, value, run_dir=run_dir)
        if refusal is not None:
            refused.append(refusal)
        elif entry.rule is not Rule.FOLDER and not _unchanged(name, old, value):
            changed[name] = (old, value)
    if refused:
        raise UserError(
            f"cannot resume {run_dir} with changed {'; '.join(refused)}; drop "
            f"{'that flag' if len(refused) == 1 else 'those flags'}, or start a new run "
            "(--run-dir NEW) from scratch"
        )
    return Changes(changed)


def _compared_values(
    name: str, saved: Mapping[str, Any], new: Mapping[str, Any], defaults: Mapping[str, Any]
) -> tuple[Any, Any]:
    """The saved and the new value of ``name``, each with what its ``None`` stands for."""
    old, value = saved.get(name), new.get(name)
    if name in BEFORE_RECIPES:  # unset: off (a run saved before the recipe settings)
        old = BEFORE_RECIPES[name] if old is None else old
        value = BEFORE_RECIPES[name] if value is None else value
    if name in _RESOLVED:
        old = defaults.get(name) if old is None else old
        value = old if value is None else value
    return old, value


def _unchanged(name: str, old: Any, value: Any) -> bool:
    """Whether ``value`` means what ``old`` did (the same data may be named another way)."""
    return bool(old == value or (name == "data" and same_data(old, value)))


def _refusal(name: str, entry: Entry, old: Any, value: Any, *, run_dir: Path) -> str | None:
    """Why the change from ``old`` to ``value`` refuses the resume; None when it may go on."""
    if entry.rule is Rule.FOLDER:
        if value is not None and not _same_folder(value, run_dir):
            return f"{_flag(name)} {value} (the run is in {run_dir})"
        return None
    if entry.rule is not Rule.REFUSED or _unchanged(name, old, value):
        return None
    if name == "data" and data_moved(old, value):
        return None  # the data moved: check_spec compares what it holds
    return f"{_flag(name)} {old!r} -> {value!r} ({entry.meaning})"


def check_spec(saved: Mapping[str, Any], new: Mapping[str, Any], *, run_dir: Path) -> None:
    """Refuses data whose spec (layout, sample shape, classes) differs from the run's.

    Raises:
        UserError: Names each difference.
    """
    diffs = [
        f"{key} {saved.get(key)!r} -> {new.get(key)!r}"
        for key in (
            "layout",
            "channels",
            "height",
            "width",
            "features",
            "image_size",
            "num_classes",
            "class_names",
        )
        if key in saved and list_or(saved.get(key)) != list_or(new.get(key))
    ]
    if diffs:
        raise UserError(
            f"cannot resume {run_dir}: the data differs from the run's ({'; '.join(diffs)}); "
            "point --data/--data-dir at the run's dataset, or start a new run"
        )


def list_or(value: Any) -> Any:
    """Tuples and lists compare equal (a spec read back from JSON holds lists)."""
    return list(value) if isinstance(value, (list, tuple)) else value


def total_steps(epochs: int, steps_per_epoch: int, max_steps: int | None) -> int:
    """Optimizer steps a run plans: its epochs, capped by ``--max-steps``."""
    total = epochs * steps_per_epoch
    return min(total, max_steps) if max_steps else total


def scale_learning_rates(
    optimizers: Mapping[str, torch.optim.Optimizer], schedulers: Mapping[str, Any], factor: float
) -> None:
    """Multiplies every learning rate, and everything a schedule derives them from, by ``factor``.

    A schedule then goes on from the scaled rate, so the new ``--lr`` holds at the resume
    point and the rest of the schedule keeps its shape.
    """
    for opt in optimizers.values():
        for group in opt.param_groups:
            for key in ("lr", "initial_lr", "max_lr", "min_lr", "replan_lr"):
                if key in group:
                    group[key] = group[key] * factor
    for outer in schedulers.values():
        # A warm-up chain (SequentialLR) holds its schedules inside: each is scaled too.
        for sched in (outer, *getattr(outer, "_schedulers", ())):
            if hasattr(sched, "base_lrs"):
                sched.base_lrs = [b * factor for b in sched.base_lrs]
            sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]


def set_weight_decay(
    optimizers: Mapping[str, torch.optim.Optimizer], old: float, new: float
) -> None:
    """Sets ``new`` in every parameter group that had ``old`` (groups excluded from decay stay)."""
    for opt in optimizers.values():
        for group in opt.param_groups:
            if math.isclose(group.get("weight_decay", 0.0), old):
                group["weight_decay"] = new


def replan_schedules(schedulers: Mapping[str, Any], *, step: int, total: int) -> None:
    """Re-plans restored schedules to end at optimizer step ``total``, continuous at ``step``.

    * cosine: anneals from the current rate at ``step`` to its minimum at ``total``;
    * step: decays by its factor at a third and two thirds of the new length (those still
      ahead), always from the current rate;
    * onecycle: a warm-up in progress is kept; an annealing phase goes on from the current rate
      to the minimum at ``total``.
    """
    lr_sched = torch.optim.lr_scheduler
    remaining = max(total - step, 1)
    for sched in schedulers.values():
        current = [g["lr"] for g in sched.optimizer.param_groups]
        if isinstance(sched, lr_sched.CosineAnnealingLR):
            sched.base_lrs = current
            sched.T_max = remaining
            sched.last_epoch = 0
        elif isinstance(sched, lr_sched.StepLR):
            sched.step_size = max(1, total // 3)
        elif isinstance(sched, lr_sched.OneCycleLR):
            _replan_onecycle(sched, step=step, total=total)
        else:
            raise UserError(
                f"cannot re-plan a {type(sched).__name__} schedule; resume with the run's "
                "--epochs and --max-steps"
            )


def _replan_onecycle(sched: Any, *, step: int, total: int) -> None:
    phases = sched._schedule_phases
    end = max(total - 1, step + 1)
    sched.total_steps = max(total, step + 1)
    if step <= phases[0]["end_step"] or len(phases) != 2:
        phases[-1]["end_step"] = end
        return
    for group in sched.optimizer.param_groups:
        group["replan_lr"] = group["lr"]
        if sched.cycle_momentum:
            momentum = group["betas"][0] if sched.use_beta1 else group["momentum"]
            group["replan_momentum"] = momentum
    hold = {"start_lr": "replan_lr", "end_lr": "replan_lr"}
    anneal = {"start_lr": "replan_lr", "end_lr": "min_lr"}
    if sched.cycle_momentum:
        hold |= {"start_momentum": "replan_momentum", "end_momentum": "replan_momentum"}
        anneal |= {"start_momentum": "replan_momentum", "end_momentum": "max_momentum"}
    sched._schedule_phases = [{"end_step": float(step), **hold}, {"end_step": float(end), **anneal}]


def describe_table() -> str:
    """The policy as a Markdown table (what the docs show)."""
    rows = ["| setting | on resume | what it means |", "|---|---|---|"]
    rows += [f"| `{_flag(k)}` | {e.rule.value} | {e.meaning} |" for k, e in POLICY.items()]
    return "\n".join(rows)
