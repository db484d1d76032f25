"""Crash-safe checkpoint files and safe loading.

Writes go to a temporary file in the same folder, are flushed and fsynced, then renamed over
the target: a reader (or a resumed run) sees the old file or the new one, never half of one.
Loads use ``torch.load(weights_only=True)``, which refuses any pickle that would construct
arbitrary objects (and so could run code).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import shutil
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from torchstyle.errors import UserError

log = logging.getLogger(__name__)

FORMAT = "torchstyle-checkpoint"
VERSION = 2  # 2: the position entries at the top level (Position); 1 had a "best" dict
LATEST = "latest.pt"
BEST = "best.pt"
_EPOCH_RE = re.compile(r"^epoch_(\d+)\.pt$")


class CheckpointWriteError(UserError):
    """A checkpoint could not be written; the previous one is intact."""


class CheckpointLoadError(UserError):
    """A checkpoint could not be loaded (missing, truncated, unsafe, or from another model)."""


def _fsync_dir(path: Path) -> None:
    # The rename itself must reach the disk, or a power cut could undo it.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_save(obj: Any, path: Path) -> None:
    """Saves ``obj`` with ``torch.save`` so that ``path`` is always a whole file.

    Raises:
        CheckpointWriteError: The write failed (disk full, permissions); ``path`` is untouched.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CheckpointWriteError(
            f"could not write checkpoint {path}: {e.strerror or e}; free disk space or fix "
            f"permissions, or use another --run-dir; the previous checkpoint is intact"
        ) from None
    _fsync_dir(path.parent)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint without unpickling arbitrary objects.

    Raises:
        CheckpointLoadError: Missing, truncated, corrupt or unsafe file; the message says which.
    """
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        raise CheckpointLoadError(f"checkpoint {path} {what}")
    corrupt = (
        f"checkpoint {path} is truncated or corrupt ({{}}); resume from another file in "
        f"{path.parent} or start a new run"
    )
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        size = path.stat().st_size
        raise CheckpointLoadError(
            corrupt.format(
                "an empty file" if size == 0 else f"not a torch.save archive, {size} bytes"
            )
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # a bad opcode: damaged bytes, not a foreign object
            raise CheckpointLoadError(corrupt.format(_first_line(e))) from None
        raise CheckpointLoadError(
            f"refusing to load {path}: it needs arbitrary unpickling, which can run code "
            f"({_first_line(e)[:200]}); only checkpoints of tensors and plain containers are loaded"
        ) from None
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        KeyError,
        IndexError,
    ) as e:
        raise CheckpointLoadError(corrupt.format(_first_line(e)[:160])) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointLoadError(f"{path} is not a torchstyle checkpoint (no '{FORMAT}' marker)")
    return state


def _first_line(e: BaseException) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def load_model_state(model: torch.nn.Module, state_dict: dict[str, Any], path: Path) -> None:
    """Loads weights strictly, naming the missing and unexpected keys on mismatch."""
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as e:  # shape mismatches raise even with strict=False
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:4])
        raise CheckpointLoadError(
            f"{path} does not fit model {type(model).__name__}: {detail}; was it saved by "
            "another model or with other --model-arg values?"
        ) from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys {_abbrev(result.missing_keys)}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {_abbrev(result.unexpected_keys)}")
    if problems:
        raise CheckpointLoadError(
            f"{path} does not fit model {type(model).__name__}: {'; '.join(problems)}; "
            "was it saved by another model or with other --model-arg values?"
        )


def _abbrev(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


class CheckpointManager:
    """Keeps ``latest.pt``, ``best.pt`` and the last ``keep`` ``epoch_NNNN.pt`` of a run.

    Epoch and best files are hard links to the latest file when the file system allows it,
    so a save writes the bytes once.

    Args:
        directory: The run's ``checkpoints/`` folder.
        keep: Epoch checkpoints to keep (0 keeps none besides latest and best).
        tidy: Remove stale temporary files now (else call :meth:`remove_stale_temporaries`).
    """

    def __init__(self, directory: Path, keep: int, *, tidy: bool = True) -> None:
        self.directory = directory
        self.keep = keep
        self._pending: _Writer | None = None
        if tidy:  # a trainer tidies once it holds the run folder's lock
            self.remove_stale_temporaries()

    def remove_stale_temporaries(self) -> None:
        """Removes what a process killed mid-write left behind (its target is intact)."""
        if self.directory.is_dir():
            for stale in self.directory.glob(".*.tmp-*"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    @property
    def latest(self) -> Path:
        """Path of the latest checkpoint."""
        return self.directory / LATEST

    @property
    def best(self) -> Path:
        """Path of the best checkpoint."""
        return self.directory / BEST

    def save(
        self,
        state: dict[str, Any],
        *,
        epoch_end: int | None,
        is_best: bool,
        background: bool = False,
    ) -> None:
        """Writes ``latest.pt``; at an epoch end also the epoch file; ``best.pt`` if best.

        Args:
            state: The checkpoint dict.
            epoch_end: Number of the epoch just finished, or None for a mid-epoch save.
            is_best: The state holds the best evaluation so far.
            background: Copy the state to host memory now and write it in a background
                thread; the loop goes on meanwhile. The next save (or :meth:`wait`) waits
                for this one and raises its error, if any.

        Raises:
            CheckpointWriteError: This write, or the previous background one, failed.
        """
        self.wait()
        state = {"format": FORMAT, "version": VERSION, **state}
        if not background:
            self._write(state, epoch_end, is_best)
            return
        self._pending = _Writer(self._write, to_host(state), epoch_end, is_best)

    def wait(self) -> None:
        """Waits for a background write; raises its error, if any.

        Raises:
            CheckpointWriteError: The background write failed; the previous checkpoint is intact.
        """
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.join()

    def _write(self, state: dict[str, Any], epoch_end: int | None, is_best: bool) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_save(state, self.latest)
        if epoch_end is not None and self.keep > 0:
            self._link(self.latest, self.directory / f"epoch_{epoch_end:04d}.pt")
            self._prune()
        if is_best:
            self._link(self.latest, self.best)

    def _link(self, src: Path, dst: Path) -> None:
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise CheckpointWriteError(
                f"could not write checkpoint {dst}: {e.strerror or e}; free disk space or fix "
                "permissions; the previous checkpoint is intact"
            ) from None

    def epoch_files(self) -> list[Path]:
        """Epoch checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        numbered = []
        for p in self.directory.iterdir():
            match = _EPOCH_RE.match(p.name)
            if match:
                numbered.append((int(match.group(1)), p))
        return [p for _, p in sorted(numbered)]

    def _prune(self) -> None:
        for old in self.epoch_files()[: -self.keep]:
            with contextlib.suppress(OSError):
                old.unlink()


def to_host(obj: Any) -> Any:
    """A copy of ``obj`` whose tensors are detached copies in host memory.

    Containers are rebuilt, so the training loop may change the originals while the copy is
    being written.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, to_host(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [to_host(v) for v in obj]
    if isinstance(obj, tuple):
        return (
            type(obj)(*(to_host(v) for v in obj))
            if hasattr(obj, "_fields")
            else tuple(to_host(v) for v in obj)
        )
    return obj


class _Writer:
    """One background checkpoint write; :meth:`join` re-raises its error in the caller."""

    def __init__(self, write: Any, *args: Any) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(write, *args), name="checkpoint-writer", daemon=True
        )
        self._thread.start()

    def _run(self, write: Any, *args: Any) -> None:
        # On Linux a thread has its own nice value: when every core is busy, the write
        # yields the CPU to the training steps instead of taking its share from them.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            write(*args)
        except BaseException as e:  # handed to the main thread by join()
            self._error = e

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


class SaveSchedule:
    """When to write a mid-epoch checkpoint: every N optimizer steps and/or every M minutes.

    Args:
        every_steps: Save after every this many optimizer steps (None: not by steps).
        every_minutes: Save once this many minutes of training passed since the last save
            (None: not by time).
        clock: Seconds, monotonic (a test passes its own).
    """

    def __init__(
        self,
        *,
        every_steps: int | None,
        every_minutes: float | None,
        clock: Any = time.monotonic,
    ) -> None:
        self.every_steps = every_steps
        self.every_seconds = None if every_minutes is None else every_minutes * 60.0
        self._clock = clock
        self._last = clock()

    def due_by_steps(self, step: int) -> bool:
        """True when optimizer step ``step`` (1-based) ends a save interval."""
        return bool(self.every_steps) and step % self.every_steps == 0  # type: ignore[operator]

    def due_by_time(self) -> bool:
        """True when the time since the last save reached the interval."""
        return self.every_seconds is not None and self._clock() - self._last >= self.every_seconds

    def saved(self) -> None:
        """Records that a checkpoint was just written (any kind: epoch end, signal, schedule)."""
        self._last = self._clock()
