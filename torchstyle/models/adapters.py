"""Task adapters: give a plain ``nn.Module`` the engine's contract (see ``models/base.py``).

* A :class:`~torchstyle.models.base.TorchstyleModel` is used as it is.
* A module with its own ``training_step`` and ``evaluation_step`` is used as it is, behind
  :class:`OwnStepsAdapter`, which fills in what it leaves out (optimizers, monitor).
* Any other module is a classifier: :class:`ClassificationAdapter` trains it with
  cross-entropy and evaluates it with the classification metrics.

The adapter's name is recorded with the run (``none``, ``own-steps``, ``classification``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from torchstyle.errors import UserError
from torchstyle.models.base import Batch, TorchstyleModel, build_optimizer

ADAPTERS = ("none", "own-steps", "classification")


def _one_optimizer(
    model: TorchstyleModel, name: str | None, lr: float | None, weight_decay: float
) -> dict[str, torch.optim.Optimizer]:
    """One optimizer over ``model``'s trainable parameters; the model's defaults fill in."""
    return {
        "model": build_optimizer(
            _trainable(model),
            name or model.default_optimizer,
            lr=lr or model.default_lr,
            weight_decay=weight_decay,
        )
    }


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    """Parameters that train (``--freeze`` turns the others off)."""
    return [p for p in module.parameters() if p.requires_grad]


class ClassificationAdapter(TorchstyleModel):
    """Trains any module that maps images ``(B, C, H, W)`` to logits ``(B, K)``.

    Args:
        net: The user's network; kept as ``self.net``.
        label_smoothing: Cross-entropy label smoothing.
    """

    monitor = ("accuracy", "max")
    task = "classification"
    adapter_name = "classification"

    def __init__(self, net: nn.Module, *, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.label_smoothing = label_smoothing

    def hparams(self) -> dict[str, Any]:
        """Nothing: an adapter is rebuilt from the run's model record, not from arguments."""
        return {}

    def forward(self, x: Tensor) -> Tensor:
        """Returns class logits ``(B, num_classes)``."""
        logits: Tensor = self.net(x)
        return logits

    def predict(self, x: Tensor) -> Tensor:
        """Returns class probabilities ``(B, num_classes)``."""
        probs: Tensor = self(x).softmax(dim=1)
        return probs

    def configure_optimizers(
        self, name: str | None = None, lr: float | None = None, weight_decay: float = 0.0
    ) -> dict[str, torch.optim.Optimizer]:
        """One optimizer over the trainable parameters."""
        return _one_optimizer(self, name, lr, weight_decay)

    def training_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        """Cross-entropy on one batch; accuracy rides along for the logs."""
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        labels = y.argmax(dim=1) if y.is_floating_point() else y  # mixed: probabilities
        return {"loss": loss, "accuracy": (logits.detach().argmax(dim=1) == labels).float().mean()}

    @torch.no_grad()
    def evaluation_step(self, batch: Batch) -> dict[str, Tensor]:
        """Per-sample loss and correctness, and the logits and labels for the metrics."""
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y, reduction="none")
        return {
            "loss": loss,
            "accuracy": (logits.argmax(dim=1) == y).float(),
            "preds": logits,
            "target": y,
        }


def _positional_count(method: Any) -> int:
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in kinds for p in params)


def _as_dict(out: Any, what: str) -> dict[str, Tensor]:
    if isinstance(out, Tensor):
        return {"loss": out}
    if isinstance(out, dict) and "loss" in out:
        return out
    raise UserError(
        f"{what} must return a loss tensor or a dict with a 'loss' entry, got {type(out).__name__}"
    )


class OwnStepsAdapter(TorchstyleModel):
    """Drives a module that writes its own ``training_step`` and ``evaluation_step``.

    ``training_step(batch)`` or ``training_step(batch, phase)`` returns a loss or a dict with
    ``"loss"``; ``evaluation_step(batch)`` returns per-sample values ``(B,)`` (a tensor is taken
    as the loss). Its ``configure_optimizers()``, ``monitor`` and ``predict`` are used when it
    has them.

    Args:
        net: The user's module; kept as ``self.net``.
    """

    adapter_name = "own-steps"

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        monitor = getattr(net, "monitor", None)
        if monitor is not None:  # the module's own choice, for this instance only
            setattr(self, "monitor", tuple(monitor))  # noqa: B010  # mypy refuses a ClassVar via self
        self._train_args = _positional_count(self._own("training_step"))

    def hparams(self) -> dict[str, Any]:
        """Nothing: an adapter is rebuilt from the run's model record, not from arguments."""
        return {}

    def _own(self, name: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self.net, name)
        return method

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The user's ``forward``."""
        return self.net(*args, **kwargs)

    def predict(self, x: Tensor) -> Tensor:
        """The user's ``predict``, or the softmax of ``forward``."""
        own = getattr(self.net, "predict", None)
        probs: Tensor = own(x) if callable(own) else self(x).softmax(dim=1)
        return probs

    def configure_optimizers(
        self, name: str | None = None, lr: float | None = None, weight_decay: float = 0.0
    ) -> dict[str, torch.optim.Optimizer]:
        """The module's own optimizers, or one over its trainable parameters."""
        own = getattr(self.net, "configure_optimizers", None)
        if callable(own) and name is None and lr is None:
            out = own()
            if isinstance(out, torch.optim.Optimizer):
                return {"model": out}
            if isinstance(out, dict):
                return dict(out)
            raise UserError(
                f"{type(self.net).__name__}.configure_optimizers must return an optimizer or a dict of them"
            )
        return _one_optimizer(self, name, lr, weight_decay)

    def training_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        """The module's own training step."""
        step = self._own("training_step")
        out = step(batch, phase) if self._train_args >= 2 else step(batch)
        return _as_dict(out, f"{type(self.net).__name__}.training_step")

    def evaluation_step(self, batch: Batch) -> dict[str, Tensor]:
        """The module's own evaluation step."""
        out = self._own("evaluation_step")(batch)
        return _as_dict(out, f"{type(self.net).__name__}.evaluation_step")


def adapt(module: nn.Module, *, task: str = "classification") -> tuple[TorchstyleModel, str]:
    """Gives ``module`` the engine's contract.

    Args:
        module: A TorchstyleModel, a module with its own steps, or a plain network.
        task: What a plain network does; only ``classification`` is known.

    Returns:
        The model for the engine, and the adapter's name (see :data:`ADAPTERS`).

    Raises:
        UserError: An unknown task, or half of the step methods.
    """
    if isinstance(module, TorchstyleModel):
        return module, "none"
    own = [m for m in ("training_step", "evaluation_step") if callable(getattr(module, m, None))]
    if len(own) == 2:
        return OwnStepsAdapter(module), "own-steps"
    if own:
        missing = {"training_step", "evaluation_step"} - set(own)
        raise UserError(
            f"{type(module).__name__} defines {own[0]} but not {missing.pop()}; define both, "
            "or neither to train it as a classifier"
        )
    if task != "classification":
        raise UserError(f"unknown task {task!r}; plain modules train as: classification")
    return ClassificationAdapter(module), "classification"


def unwrap(model: nn.Module) -> nn.Module:
    """The user's network inside an adapter (the model itself otherwise).

    Weights files (``--weights``, ``torchstyle export``) hold this module's parameters, so
    they load into the user's own class without a prefix.
    """
    if isinstance(model, ClassificationAdapter | OwnStepsAdapter):
        return model.net
    return model
