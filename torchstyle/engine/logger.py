"""Run logging: TensorBoard events and ``metrics.jsonl`` get the same scalars at the same steps."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import torch

from torchstyle import writes

_FIX = "or pass another --run-dir"
_hook_installed = False


def _quiet_writer_threads() -> None:
    """TensorBoard's writer thread re-raises a failed write, and Python prints its traceback;
    the same error is raised again in the training thread at its next log, as one line."""
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    previous = threading.excepthook

    def hook(args: Any) -> None:
        from_writer = type(args.thread).__name__ == "_AsyncWriterThread"
        if from_writer and args.exc_value is not None and writes.explain(args.exc_value, ""):
            return
        previous(args)

    threading.excepthook = hook


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

        _quiet_writer_threads()
        with writes.guarded(self.run_dir, fix=_FIX):
            self._writer = FileWriter(str(self.run_dir))
        if self._purge_step is not None:
            # What SummaryWriter(purge_step=...) writes: TensorBoard then drops older events
            # at or after this step, left by the run this one resumes.
            start = SessionLog(status=SessionLog.START)
            self._add(
                lambda: self._writer.add_event(Event(step=self._purge_step, session_log=start))
            )
        self._jsonl = writes.open_append(self.run_dir / "metrics.jsonl", fix=_FIX)

    def _add(self, write: Any) -> None:
        # TensorBoard writes in a thread and raises that thread's error at a later call.
        with writes.guarded(self._events_path(), fix=_FIX):
            write()

    def _events_path(self) -> Path:
        name = getattr(self._writer, "get_logdir", None)
        events = getattr(getattr(self._writer, "event_writer", None), "_file_name", None)
        return Path(events) if events else Path(name() if name else self.run_dir)

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
        self._add(lambda: self._writer.add_summary(Summary(value=values), step))
        self._jsonl.write(json.dumps(record) + "\n")

    def log_images(self, step: int, tag: str, images: torch.Tensor, path: Path) -> None:
        """Logs a grid of ``images`` in ``[-1, 1]`` to TensorBoard and saves it as a PNG."""
        if not self.enabled:
            return
        from torch.utils.tensorboard.summary import image
        from torchvision.utils import make_grid, save_image

        if self._writer is None:
            self.open()
        grid = make_grid(images.detach().float().cpu(), nrow=8, normalize=True, value_range=(-1, 1))
        self._add(lambda: self._writer.add_summary(image(tag, grid, dataformats="CHW"), step))
        writes.atomic_write(path, lambda f: save_image(grid, f, format="png"), fix=_FIX)

    def log_summary(self, step: int, summary: Any) -> None:
        """Writes a ready-made TensorBoard ``Summary`` (HParams, for one) to the run's events only."""
        if not self.enabled:
            return
        if self._writer is None:
            self.open()
        self._add(lambda: self._writer.add_summary(summary, step))

    def flush(self) -> None:
        """Pushes buffered events to disk."""
        if self._writer is not None:
            self._add(self._writer.flush)

    def close(self) -> None:
        """Flushes and closes the files."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                with writes.guarded(self.run_dir, fix=_FIX):
                    writer.close()
            finally:
                if self._jsonl is not None:
                    self._jsonl.close()
                    self._jsonl = None
