"""The experiment callbacks every run gets, whichever door started it (``torchstyle train``,
``torchstyle.fit``, a sweep's trial)::

    trainer = Trainer(cfg, callbacks=train_callbacks(cfg))
    result = trainer.fit()  # an error reaches the callbacks' on_exception, then the caller
"""

from __future__ import annotations

from typing import Any

from torchstyle.engine.callbacks import Callback
from torchstyle.experiments.status import RunStatus

__all__ = ["train_callbacks"]


def train_callbacks(cfg: Any) -> list[Callback]:
    """``status.json``, HParams, the sweep's reporter (inside a sweep) and ``--tracker``.

    Args:
        cfg: The run's ``TrainConfig``.

    Returns:
        The callbacks, in the order they must run: the status first, so the others see the
        finished state; the tracker last, so it uploads the final files.
    """
    from torchstyle.experiments.tracking import HParamsLogger, MlflowTracker
    from torchstyle.experiments.trial import reporter_from_env

    status = RunStatus()
    callbacks: list[Callback] = [status, HParamsLogger(status=status)]
    reporter = reporter_from_env()
    if reporter is not None:
        callbacks.append(reporter)
    if getattr(cfg, "tracker", "none") == "mlflow":
        callbacks.append(MlflowTracker())
    return callbacks
