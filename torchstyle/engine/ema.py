"""``--ema DECAY``: an exponential moving average of the weights, updated after every
optimizer step, by ``torch.optim.swa_utils.AveragedModel``.

After the first step the average is the weights; after each later one
``ema = decay * ema + (1 - decay) * weights``, buffers (BatchNorm statistics) included. It is
saved in every checkpoint under ``"ema"`` and restored on resume, bitwise. With
``--ema-eval`` evaluations run on the average, so it picks ``best.pt``, and ``test``,
``predict`` and ``export`` of the run load it (:func:`inference_weights`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """The averaged copy of a model.

    Args:
        model: The model being trained (its unwrapped module).
        decay: The average's decay per step.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )
        self.averaged.requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        """Folds the model's current weights into the average (after an optimizer step)."""
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        """The average as the model's own ``state_dict`` keys, and how many steps it holds."""
        return {
            "net": {k: v.detach().clone() for k, v in self.averaged.module.state_dict().items()},
            "n_averaged": int(self.averaged.n_averaged.item()),
            "decay": self.decay,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a saved average."""
        self.averaged.module.load_state_dict(state["net"])
        self.averaged.n_averaged.fill_(int(state["n_averaged"]))

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones after it."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.averaged.module.state_dict())
        try:
            yield
        finally:
            model.load_state_dict(own)


def inference_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint is evaluated with: the average under ``--ema-eval``, else the
    trained ones."""
    config = state.get("config") or {}
    if config.get("ema_eval") and isinstance(state.get("ema"), dict):
        weights: dict[str, torch.Tensor] = state["ema"]["net"]
        return weights
    net: dict[str, torch.Tensor] = state["net"]
    return net
