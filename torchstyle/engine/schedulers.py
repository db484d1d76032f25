"""Learning-rate schedules by name (``--scheduler`` offers these), stepped per optimizer step.

A new schedule is a new entry: a function of the optimizer and the run's total steps.
``plateau`` is driven by a metric instead: the trainer steps it at each evaluation with the
monitored validation value (see :func:`step_on_metric`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim import lr_scheduler as lr_sched

Schedule = Callable[[Optimizer, int], lr_sched.LRScheduler]


def _cosine(opt: Optimizer, total: int) -> lr_sched.LRScheduler:
    return lr_sched.CosineAnnealingLR(opt, T_max=total)


def _step(opt: Optimizer, total: int) -> lr_sched.LRScheduler:
    # A tenth of the rate after each third of the run.
    return lr_sched.StepLR(opt, step_size=max(1, total // 3), gamma=0.1)


def _onecycle(opt: Optimizer, total: int) -> lr_sched.LRScheduler:
    return lr_sched.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total)


def _plateau(opt: Optimizer, total: int) -> lr_sched.LRScheduler:
    # A tenth of the rate after 2 evaluations without improvement; "min" on a value the
    # trainer signs so that lower is better (see step_on_metric), so the threshold is
    # absolute: a relative one changes meaning with the sign.
    return lr_sched.ReduceLROnPlateau(
        opt, mode="min", factor=0.1, patience=2, threshold=1e-4, threshold_mode="abs"
    )


#: Schedules by name; ``none`` (no schedule) is the default and not an entry.
SCHEDULERS: dict[str, Schedule] = {
    "cosine": _cosine,
    "step": _step,
    "onecycle": _onecycle,
    "plateau": _plateau,
}


def per_step(schedulers: dict[str, lr_sched.LRScheduler]) -> dict[str, lr_sched.LRScheduler]:
    """The schedules stepped after every optimizer step (all but the metric-driven ones)."""
    return {k: s for k, s in schedulers.items() if not isinstance(s, lr_sched.ReduceLROnPlateau)}


def step_on_metric(
    schedulers: dict[str, lr_sched.LRScheduler], value: float | None, mode: str | None
) -> None:
    """Steps the metric-driven schedules with an evaluation's monitored value.

    Args:
        schedulers: All the run's schedules (the others are left alone).
        value: The monitored metric on the validation split (None: nothing to step on).
        mode: ``max`` when higher is better, else ``min``.
    """
    if value is None:
        return
    for s in schedulers.values():
        if isinstance(s, lr_sched.ReduceLROnPlateau):
            s.step(-value if mode == "max" else value)


def build_schedulers(
    kind: str, optimizers: dict[str, Optimizer], total_steps: int
) -> dict[str, lr_sched.LRScheduler]:
    """One schedule per optimizer (none for ``none``), spanning ``total_steps`` steps."""
    if kind == "none":
        return {}
    total = max(total_steps, 1)
    return {name: SCHEDULERS[kind](opt, total) for name, opt in optimizers.items()}
