"""Hooks: extend the engine without subclassing its loop.

The events are a fixed set: the ``on_*`` methods of :class:`Callback`, each typed. A callback
overrides any of them; the trainer calls them, through :class:`Hooks`, at the points their
names say. ``on_step_end`` runs every optimizer step, so it is called only for callbacks that
override it. A callback with state (early stopping's counter) saves it through
``state_dict``/``load_state_dict`` and so survives a resume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torchstyle.errors import UserError

if TYPE_CHECKING:
    from torchstyle.engine.trainer import Trainer

log = logging.getLogger(__name__)


class Callback:
    """Base class; every hook does nothing."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first epoch (after a resume has restored state)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first batch of ``epoch``."""

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        """After optimizer step ``step`` (1-based). Keep it cheap: it runs every step."""

    def on_log(self, trainer: Trainer, step: int, scalars: dict[str, float]) -> None:
        """Before training scalars are written; add entries to ``scalars`` to log them too."""

    def on_evaluation_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the evaluation (validation, else test) that follows ``epoch`` (0-based)."""

    def on_evaluation_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """After that evaluation, with its metrics."""

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        """After ``epoch`` (and its evaluation, if one was due)."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch, or after an early stop."""

    def on_exception(self, trainer: Trainer, error: BaseException) -> None:
        """Training ended with ``error`` (an interrupt, a NaN stop, any other error), which
        goes on to the caller after every callback has seen it."""

    def state_dict(self) -> dict[str, Any]:
        """State to store in checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""


class LearningRateLogger(Callback):
    """Logs each optimizer's learning rate (first parameter group) as ``lr`` or ``lr/NAME``."""

    def on_log(self, trainer: Trainer, step: int, scalars: dict[str, float]) -> None:
        """Adds the learning rates."""
        optimizers = trainer.optimizers
        for name, opt in optimizers.items():
            key = "lr" if len(optimizers) == 1 else f"lr/{name}"
            scalars[key] = float(opt.param_groups[0]["lr"])


class EarlyStopping(Callback):
    """Stops training after ``patience`` evaluations without a better monitored metric.

    Args:
        patience: Evaluations without improvement to tolerate.
        min_delta: Improvement smaller than this does not count.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise UserError(
                f"--early-stopping must be a positive number of evaluations, got {patience}"
            )
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.bad_evaluations = 0

    def on_evaluation_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Counts evaluations without improvement; asks the trainer to stop at ``patience``."""
        monitor = trainer.monitor
        if monitor is None or monitor[0] not in metrics:
            return
        value = metrics[monitor[0]]
        sign = 1.0 if monitor[1] == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best = value
            self.bad_evaluations = 0
            return
        self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience:
            trainer.request_stop(
                f"early stopping: no better {monitor[0]} for {self.patience} evaluations"
            )

    def state_dict(self) -> dict[str, Any]:
        """Best value and counter."""
        return {"best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores best value and counter."""
        self.best = state["best"]
        self.bad_evaluations = state["bad_evaluations"]


class Hooks:
    """Calls every callback's hook of one event, in order; one typed method per event.

    Args:
        callbacks: The callbacks, in call order.
    """

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)
        # The per-step hook runs thousands of times: only for callbacks that override it.
        self._per_step = [
            c for c in self.callbacks if type(c).on_step_end is not Callback.on_step_end
        ]

    def _call(self, event: str, *args: Any) -> None:
        """The fan-out, written once: ``event`` of every callback that handles it, in order."""
        for cb in self._per_step if event == "on_step_end" else self.callbacks:
            getattr(cb, event)(*args)

    def on_train_start(self, trainer: Trainer) -> None:
        """See :meth:`Callback.on_train_start`."""
        self._call("on_train_start", trainer)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """See :meth:`Callback.on_epoch_start`."""
        self._call("on_epoch_start", trainer, epoch)

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        """See :meth:`Callback.on_step_end`."""
        self._call("on_step_end", trainer, step)

    def on_log(self, trainer: Trainer, step: int, scalars: dict[str, float]) -> None:
        """See :meth:`Callback.on_log`."""
        self._call("on_log", trainer, step, scalars)

    def on_evaluation_start(self, trainer: Trainer, epoch: int) -> None:
        """See :meth:`Callback.on_evaluation_start`."""
        self._call("on_evaluation_start", trainer, epoch)

    def on_evaluation_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """See :meth:`Callback.on_evaluation_end`."""
        self._call("on_evaluation_end", trainer, epoch, metrics)

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        """See :meth:`Callback.on_epoch_end`."""
        self._call("on_epoch_end", trainer, epoch)

    def on_train_end(self, trainer: Trainer) -> None:
        """See :meth:`Callback.on_train_end`."""
        self._call("on_train_end", trainer)

    def on_exception(self, trainer: Trainer, error: BaseException) -> None:
        """See :meth:`Callback.on_exception`; a callback that fails here is logged, so the
        error the user sees is the one that ended training."""
        for cb in self.callbacks:
            try:
                cb.on_exception(trainer, error)
            except Exception:
                log.exception("%s.on_exception failed", type(cb).__name__)

    def state_dict(self) -> dict[str, Any]:
        """Every callback's state, by class name."""
        return {type(c).__name__: c.state_dict() for c in self.callbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the callbacks that saved a state."""
        for cb in self.callbacks:
            cb_state = state.get(type(cb).__name__)
            if cb_state:
                cb.load_state_dict(cb_state)
