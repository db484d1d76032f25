"""Run logging: TensorBoard events and ``metrics.jsonl`` get the same scalars at the same steps."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch


class RunLogger:
    """Writes scalars and images of one run.

    Args:
        run_dir: The run folder; events go to ``run_dir`` itself, images to ``run_dir/samples``.
        enabled: False on non-zero ranks, which log nothing.
        purge_step: On resume, the step to continue from: TensorBoard hides events at or after
            it that an interrupted run had written, so curves do not fold back on themselves.
    """

    def __init__(
        self, run_dir: Path, *, enabled: bool = True, purge_step: int | None = None
    ) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self._writer: Any = None
        self._jsonl: Any = None
        self._purge_step = purge_step

    def open(self) -> None:
        """Opens the event and ``metrics.jsonl`` files (else the first log does).

        Opening imports TensorBoard's writer, which takes a while: a loop opens the files
        before it starts timing its steps.
        """
        if not self.enabled or self._writer is not None:
            return
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from torch.utils.tensorboard.writer import FileWriter

        self._writer = FileWriter(str(self.run_dir))
        if self._purge_step is not None:
            # What SummaryWriter(purge_step=...) writes: TensorBoard then drops older events
            # at or after this step, left by the run this one resumes.
            start = SessionLog(status=SessionLog.START)
            self._writer.add_event(Event(step=self._purge_step, session_log=start))
        self._jsonl = (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8")

    def log_scalars(self, step: int, scalars: dict[str, float], prefix: str = "") -> None:
        """Logs ``prefix + name`` for each scalar at ``step``."""
        if not self.enabled or not scalars:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        if self._writer is None:
            self.open()
        record: dict[str, Any] = {"step": step}
        values = []
        for name, value in scalars.items():
            tag = f"{prefix}{name}"
            values.append(Summary.Value(tag=tag, simple_value=value))
            record[tag] = value if math.isfinite(value) else str(value)
        # One event holding every scalar of the step: SummaryWriter.add_scalar costs ~0.25 ms
        # per scalar, which at log_every=50 was most of the engine's overhead on small models.
        self._writer.add_summary(Summary(value=values), step)
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def log_images(self, step: int, tag: str, images: torch.Tensor, path: Path) -> None:
        """Logs a grid of ``images`` in ``[-1, 1]`` to TensorBoard and saves it as a PNG."""
        if not self.enabled:
            return
        from torch.utils.tensorboard.summary import image
        from torchvision.utils import make_grid, save_image

        if self._writer is None:
            self.open()
        grid = make_grid(images.detach().float().cpu(), nrow=8, normalize=True, value_range=(-1, 1))
        self._writer.add_summary(image(tag, grid, dataformats="CHW"), step)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)

    def log_summary(self, step: int, summary: Any) -> None:
        """Writes a ready-made TensorBoard ``Summary`` (HParams, for one) to the run's events only."""
        if not self.enabled:
            return
        if self._writer is None:
            self.open()
        self._writer.add_summary(summary, step)

    def flush(self) -> None:
        """Pushes buffered events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the files."""
        if self._writer is not None:
            self._writer.close()
            self._jsonl.close()
            self._writer = None
