"""Learning-rate schedules by name (``--scheduler`` offers these), stepped per optimizer step.

A new schedule is a new entry: a function of the optimizer and the run's total steps.
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


#: Schedules by name; ``none`` (no schedule) is the default and not an entry.
SCHEDULERS: dict[str, Schedule] = {"cosine": _cosine, "step": _step, "onecycle": _onecycle}


def build_schedulers(
    kind: str, optimizers: dict[str, Optimizer], total_steps: int
) -> dict[str, lr_sched.LRScheduler]:
    """One schedule per optimizer (none for ``none``), spanning ``total_steps`` steps."""
    if kind == "none":
        return {}
    total = max(total_steps, 1)
    return {name: SCHEDULERS[kind](opt, total) for name, opt in optimizers.items()}
