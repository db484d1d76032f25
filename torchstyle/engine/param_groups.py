"""Parameter groups and warm-up of the recipe: no weight decay on norms and biases, layer-wise
learning-rate decay, and a linear warm-up before any schedule.

The model builds its optimizers (``configure_optimizers``); before any step their groups
are then re-formed (the optimizer's defaults fill each new group), so any model's optimizer
gets them. Norms and biases are the one-dimensional parameters (timm's rule too). Layer decay
uses timm's grouping of a timm model (``group_matcher``), through
``timm.optim.param_groups_layer_decay``: the learning rate of layer ``i`` of ``L`` is scaled
by ``decay ** (L - i)``. The warm-up is torch's ``LinearLR`` chained before the schedule by
``SequentialLR``.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim import lr_scheduler as lr_sched

from torchstyle.errors import UserError

log = logging.getLogger(__name__)

# The warm-up starts at this fraction of the learning rate (timm starts near zero too).
WARMUP_START = 0.01


def _split_decay(params: list[nn.Parameter], group: dict[str, Any]) -> list[dict[str, Any]]:
    """A group's parameters as a decayed group and a not-decayed one (norms and biases)."""
    rest = {k: v for k, v in group.items() if k != "params"}
    decay = [p for p in params if p.ndim > 1]
    flat = [p for p in params if p.ndim <= 1]
    out = []
    if decay:
        out.append({**rest, "params": decay})
    if flat:
        out.append({**rest, "params": flat, "weight_decay": 0.0})
    return out


def _groupable(model: nn.Module) -> nn.Module | None:
    """The first submodule that says how its layers group (a timm model), or None."""
    for module in model.modules():
        if callable(getattr(module, "group_matcher", None)):
            return module
    return None


def _layer_decay_groups(
    model: nn.Module, opt: Optimizer, layer_decay: float, no_decay_flat: bool
) -> list[dict[str, Any]]:
    """timm's layer-decay groups of the model's timm network, with their scaled rates."""
    from timm.optim._param_groups import param_groups_layer_decay

    net = _groupable(model)
    if net is None:
        raise UserError(
            f"--layer-decay needs a model whose layers can be grouped (a timm: model); "
            f"{type(model).__name__} has none; drop --layer-decay"
        )
    base_lr, wd = opt.defaults["lr"], opt.defaults.get("weight_decay", 0.0)
    trainable = {id(p) for g in opt.param_groups for p in g["params"]}
    groups = param_groups_layer_decay(
        net, weight_decay=wd, layer_decay=layer_decay, no_weight_decay_list=()
    )
    out = []
    for g in groups:
        params = [p for p in g["params"] if id(p) in trainable]
        if not params:
            continue
        wd_g = g["weight_decay"] if no_decay_flat else wd
        out.append({"params": params, "lr": base_lr * g["lr_scale"], "weight_decay": wd_g})
    inside = {id(p) for p in net.parameters()}
    others = [p for p in model.parameters() if id(p) in trainable and id(p) not in inside]
    if others:
        out.append({"params": others})
    return out


def regroup(
    optimizers: dict[str, Optimizer],
    model: nn.Module,
    *,
    decay_norms_and_biases: bool,
    layer_decay: float,
) -> dict[str, Optimizer]:
    """The optimizers, rebuilt with the recipe's groups (the same ones when nothing applies).

    Args:
        optimizers: What the model's ``configure_optimizers`` returned.
        model: The model (for timm's layer groups).
        decay_norms_and_biases: Keep weight decay on one-dimensional parameters.
        layer_decay: Layer-wise decay of the learning rate (0: off).

    Raises:
        UserError: ``--layer-decay`` for a model without layer groups, or with several
            optimizers.
    """
    if layer_decay and len(optimizers) > 1:
        raise UserError(f"--layer-decay applies to one optimizer, not {list(optimizers)}")
    out: dict[str, Optimizer] = {}
    for name, opt in optimizers.items():
        if layer_decay:
            groups = _layer_decay_groups(model, opt, layer_decay, not decay_norms_and_biases)
        elif not decay_norms_and_biases:
            # split even without weight decay: the groups, and so a checkpoint's optimizer
            # state, must not depend on its value (a resume may change --weight-decay)
            groups = [s for g in opt.param_groups for s in _split_decay(list(g["params"]), g)]
        else:
            out[name] = opt
            continue
        opt.param_groups = []  # no step taken yet: there is no state to carry over
        for group in groups:
            opt.add_param_group(group)  # the optimizer's defaults fill what a group leaves
        out[name] = opt
    return out


def with_warmup(
    schedulers: dict[str, lr_sched.LRScheduler],
    optimizers: dict[str, Optimizer],
    warmup: int,
) -> dict[str, lr_sched.LRScheduler]:
    """Each optimizer's schedule preceded by ``warmup`` steps of linear warm-up.

    Without a schedule the warm-up alone runs (then the rate stays). The schedules should
    span the steps after the warm-up.

    Raises:
        UserError: A metric-driven schedule (plateau), which cannot follow a warm-up.
    """
    if warmup <= 0:
        return schedulers
    out: dict[str, lr_sched.LRScheduler] = {}
    for name, opt in optimizers.items():
        main = schedulers.get(name)
        if isinstance(main, lr_sched.ReduceLROnPlateau):
            raise UserError(
                "--scheduler plateau follows the validation metric and cannot come after a "
                "warm-up; use cosine or step with --warmup-epochs, or drop the warm-up"
            )
        ramp = lr_sched.LinearLR(opt, start_factor=WARMUP_START, total_iters=warmup)
        if main is None:
            out[name] = ramp
        else:
            out[name] = lr_sched.SequentialLR(opt, [ramp, main], milestones=[warmup])
    return out


def describe_groups(optimizers: dict[str, Optimizer]) -> str:
    """One line: each optimizer's groups with their sizes, rates and weight decays."""
    parts = []
    for name, opt in optimizers.items():
        groups = [
            f"{sum(p.numel() for p in g['params'])} params lr {g['lr']:.3g} wd "
            f"{g.get('weight_decay', 0.0):g}"
            for g in opt.param_groups
        ]
        parts.append(
            f"{name}: {len(groups)} groups ({'; '.join(groups[:4])}{' ...' if len(groups) > 4 else ''})"
        )
    return ", ".join(parts)
