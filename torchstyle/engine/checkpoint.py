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
        CheckpointLoadError: Missing, truncated or unsafe file; the message says which and why.
    """
    if not path.is_file():
        raise CheckpointLoadError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointLoadError(
            f"refusing to load {path}: it needs arbitrary unpickling, which can run code "
            f"({first[:200]}); only checkpoints of tensors and plain containers are loaded"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointLoadError(
            f"checkpoint {path} is truncated or corrupt ({str(e).splitlines()[0][:160]}); "
            f"resume from another file in {path.parent} or start a new run"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointLoadError(f"{path} is not a torchstyle checkpoint (no '{FORMAT}' marker)")
    return state


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
    """

    def __init__(self, directory: Path, keep: int) -> None:
        self.directory = directory
        self.keep = keep
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        # A process killed mid-write leaves its temporary file behind; the target is intact.
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

    def save(self, state: dict[str, Any], *, epoch_end: int | None, is_best: bool) -> None:
        """Writes ``latest.pt``; at an epoch end also the epoch file; ``best.pt`` if best.

        Args:
            state: The checkpoint dict.
            epoch_end: Number of the epoch just finished, or None for a mid-epoch save.
            is_best: The state holds the best evaluation so far.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {"format": FORMAT, "version": VERSION, **state}
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
