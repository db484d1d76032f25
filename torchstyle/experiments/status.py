"""``status.json``: what a run folder's training process is doing, or how it ended.

The file is small and rewritten atomically (write a temporary file, then rename), so a reader
never sees half of it and a killed process leaves the last complete state behind.

Schema (``version`` 1)::

    state        running | finished | interrupted | failed | nan
    pid, host    the process that wrote it (with ``proc_start`` on Linux, against pid reuse)
    started_at   Unix time the run first started; ``updated_at``: of this write
    wall_time    seconds of training, summed over every session of the run (resumes)
    step, epoch  optimizer steps taken and epochs completed at the last write
    samples_per_sec  the last logged training throughput
    best         {"metric", "value", "epoch"} of the monitored validation metric, or null
    test         the final evaluation's metrics, by name
    stop_reason  why training ended early (early stopping, --max-steps, a sweep's pruner)
    error        the one-line error of a failed or NaN-stopped run

The engine writes it through :class:`RunStatus` (a callback; the engine's ``on_exception``
event records how a failed or interrupted run ended, whichever door started it). A run still marked ``running`` whose process is gone was killed
(SIGKILL, power loss): :func:`read_status` reports it as interrupted at its last step.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchstyle.engine.callbacks import Callback

if TYPE_CHECKING:
    from torchstyle.engine.trainer import Trainer

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
STATES = ("running", "finished", "interrupted", "failed", "nan")
_HOST = socket.gethostname()


def is_main(trainer: Trainer) -> bool:
    """Whether this process writes the run's files."""
    return trainer.strategy.is_main


def world_size(trainer: Trainer) -> int:
    """The number of training processes."""
    return trainer.strategy.world_size


def progress(trainer: Trainer) -> tuple[int, int]:
    """``(optimizer steps taken, epochs completed)``."""
    return trainer.position.n_iter, trainer.position.epoch


def eval_split(trainer: Trainer) -> str:
    """The split evaluated every epoch: ``val`` when the data has one, else ``test``."""
    split = getattr(trainer, "eval_split", None)
    if split:
        return str(split)
    return "val" if getattr(getattr(trainer, "data", None), "val", None) is not None else "test"


def final_test_metrics(trainer: Trainer) -> dict[str, float]:
    """The test split's final metrics: the test of best.pt after a val split, else the last evaluation."""
    tested = getattr(trainer, "test_metrics", None)
    if tested:
        return {k: float(v) for k, v in tested.items()}
    if eval_split(trainer) == "test":
        return {k: float(v) for k, v in (trainer.metrics or {}).items()}
    return {}


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def write_status(run_dir: Path, status: dict[str, Any]) -> None:
    """Atomically replaces ``run_dir/status.json`` with ``status``."""
    path = Path(run_dir) / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_status(run_dir: Path) -> dict[str, Any] | None:
    """The raw ``status.json`` of a run folder, or None if it has none (or it does not parse)."""
    try:
        with open(os.path.join(run_dir, STATUS_FILE), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def process_alive(pid: int, host: str, proc_start: str | None) -> bool | None:
    """Whether the writer of a status is still running: None when it cannot be told (other host)."""
    if host != _HOST:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        pass
    current = _proc_start(pid)
    return proc_start is None or current is None or current == proc_start


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """``status.json`` with a dead ``running`` writer turned into ``interrupted`` (``killed``)."""
    status = load_status(run_dir)
    if status is None or status.get("state") != "running":
        return status
    holder = _lock_holder(run_dir)
    if holder is not None and holder.get("pid") != status.get("pid"):
        # The run folder's lock names a newer process (a resume that has not written yet).
        status = {**status, "pid": holder["pid"], "host": holder.get("host"), "proc_start": None}
    alive = process_alive(
        int(status.get("pid", 0)), str(status.get("host")), status.get("proc_start")
    )
    if alive is False:
        status = {**status, "state": "interrupted", "killed": True}
    return status


def _lock_holder(run_dir: Path) -> dict[str, Any] | None:
    """The pid and host the engine wrote into the run folder's ``.lock`` file, if any.

    Read, not locked: taking even a shared lock could make a starting run refuse its folder.
    """
    try:
        with open(os.path.join(run_dir, ".lock"), encoding="utf-8") as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def describe(status: dict[str, Any] | None) -> str:
    """One phrase for a status: ``running (pid 12 on host)``, ``interrupted at step 40``..."""
    if status is None:
        return "unknown"
    state = status.get("state")
    if state == "running":  # the process holding the run folder
        return f"running (pid {status.get('pid')} on {status.get('host')})"
    if state == "interrupted":  # the step of its last checkpoint: where --resume goes on
        how = "killed" if status.get("killed") else "interrupted"
        return f"{how} at step {status.get('step', 0)}"
    if state == "failed":
        return f"failed: {status.get('error') or 'unknown error'}"
    if state == "nan":
        return f"stopped on NaN at step {status.get('nan_step') or status.get('step', 0)}"
    if state == "finished":
        reason = status.get("stop_reason")
        return f"finished ({reason})" if reason else "finished"
    return str(state)


def _monitored(trainer: Trainer, metrics: dict[str, float]) -> tuple[str, float] | None:
    """The monitored metric's logged name (``val/`` preferred, else ``test/``) and value."""
    monitor = getattr(trainer, "monitor", None)
    if not monitor:
        return None
    name = monitor[0]
    for key in (f"val/{name}", name, f"test/{name}"):
        if key in metrics:
            label = key if "/" in key else f"{eval_split(trainer)}/{name}"
            return label, float(metrics[key])
    return None


class RunStatus(Callback):
    """Keeps ``status.json`` up to date: running at the start and at every epoch, finished at the end.

    Only the main process writes. Errors arrive through the engine's ``on_exception`` event.
    """

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}
        self._session_start = time.time()
        self._wall_before = 0.0
        self._enabled = True

    def on_train_start(self, trainer: Trainer) -> None:
        """Marks the run as running, by this process; a resumed run keeps its history."""
        self._enabled = is_main(trainer)
        previous = load_status(trainer.run_dir) if trainer.cfg.resume else None
        previous = previous or {}
        self._session_start = time.time()
        self._wall_before = float(previous.get("wall_time", 0.0))
        pid = os.getpid()
        self.status = {
            "version": 1,
            "state": "running",
            "pid": pid,
            "host": _HOST,
            "proc_start": _proc_start(pid),
            "started_at": previous.get("started_at", self._session_start),
            "samples_per_sec": previous.get("samples_per_sec"),
            "best": previous.get("best"),
            "test": {},
            "stop_reason": None,
            "error": None,
        }
        self._write(trainer)

    def on_log(self, trainer: Trainer, step: int, scalars: dict[str, float]) -> None:
        """Keeps the latest throughput (written with the next status update)."""
        rate = scalars.get("samples_per_sec")
        if rate is not None:
            self.status["samples_per_sec"] = float(rate)

    def on_evaluation_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Tracks the best monitored value and its epoch."""
        found = _monitored(trainer, metrics)
        if found is None:
            return
        name, value = found
        best = self.status.get("best")
        mode = trainer.monitor[1] if trainer.monitor else "max"
        better = (
            best is None
            or best.get("metric") != name
            or (value > best["value"] if mode == "max" else value < best["value"])
        )
        if better:
            self.status["best"] = {"metric": name, "value": value, "epoch": epoch + 1}

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        """Records progress (after the epoch's checkpoint: the step a resume starts from)."""
        self._write(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        """Marks the run finished, with its final metrics and stop reason."""
        self.status["state"] = "finished"
        self.status["test"] = final_test_metrics(trainer)
        self.status["stop_reason"] = trainer.stop_reason
        self._write(trainer)

    def on_exception(self, trainer: Trainer, error: BaseException) -> None:
        """Records how training ended with ``error``."""
        from torchstyle.errors import RunInterruptedError, TrainingError

        if isinstance(error, (RunInterruptedError, KeyboardInterrupt)):
            self.status["state"] = "interrupted"
            self.status["error"] = str(error)
        elif isinstance(error, TrainingError) and "NaN" in str(error):
            self.status["state"] = "nan"
            self.status["error"] = str(error)
            found = re.search(r"at step (\d+)", str(error))
            self.status["nan_step"] = int(found.group(1)) if found else None
        else:
            self.status["state"] = "failed"
            lines = str(error).strip().splitlines()
            self.status["error"] = f"{type(error).__name__}: {lines[-1] if lines else ''}"
        self._write(trainer)

    def _write(self, trainer: Trainer) -> None:
        if not self._enabled or not self.status:
            return
        now = time.time()
        step, epoch = progress(trainer)
        self.status.update(
            updated_at=now,
            wall_time=self._wall_before + now - self._session_start,
            step=step,
            epoch=epoch,
        )
        try:
            write_status(trainer.run_dir, self.status)
        except OSError as e:  # a full disk must not kill a run that could still checkpoint
            log.warning("could not write %s: %s", trainer.run_dir / STATUS_FILE, e)
