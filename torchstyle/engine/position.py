"""Where a run stands, as data: what a checkpoint stores to resume exactly there."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class Position:
    """A run's place in training; its fields are the checkpoint's position entries.

    Attributes:
        epoch: The epoch in progress (0-based); equally, the epochs finished.
        batch: Micro-batches of that epoch already consumed (resume starts at the next).
        n_iter: Optimizer steps taken: TensorBoard's x axis.
        best_value: Best value of the monitored metric so far (None before any, or when
            the model monitors none).
        best_epoch: The epoch (1-based) that evaluation followed.
        skipped_steps: Steps dropped for a non-finite loss under ``--nan-policy skip``.
    """

    epoch: int = 0
    batch: int = 0
    n_iter: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    skipped_steps: int = 0

    def state_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (stored at the top level of a checkpoint)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Position:
        """The position a checkpoint stored (its other entries are ignored).

        Version-1 checkpoints kept the best value and epoch in a ``best`` dict and may lack
        ``skipped_steps``; they resume as well.
        """
        found = {f.name: state[f.name] for f in dataclasses.fields(cls) if f.name in state}
        best = state.get("best")
        if isinstance(best, dict):
            found.setdefault("best_value", best.get("value"))
            found.setdefault("best_epoch", best.get("epoch"))
        return cls(**found)

    def record_evaluation(self, epoch: int, value: float | None, mode: str | None) -> bool:
        """Keeps ``value`` if it is the best so far; returns whether it is.

        Args:
            epoch: The epoch (1-based) the evaluation followed.
            value: The monitored metric's value; None when the model monitors none, which
                makes every evaluation the best (the latest checkpoint is the one to keep).
            mode: ``max`` or ``min``: which way is better.
        """
        if value is None:
            self.best_epoch = epoch
            return True
        best = self.best_value
        if best is None or (value > best if mode == "max" else value < best):
            self.best_value, self.best_epoch = value, epoch
            return True
        return False
