"""Which run a ``train`` command means, and opening its folder safely.

Building a trainer calls :func:`plan_run` and :func:`check_resume`: they read (the folder, the
checkpoint) and refuse bad requests, but write nothing. :meth:`Trainer.fit` calls
:func:`open_run_folder` when training starts: it takes the folder's lock, replaces or creates
it, and writes the config and the resume history, in that order, on the main process only.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from torchstyle.config import TrainConfig
from torchstyle.engine import resume_policy, rundir
from torchstyle.engine.checkpoint import LATEST, CheckpointManager, load_checkpoint
from torchstyle.engine.resume_policy import Changes, Rule
from torchstyle.engine.strategies import Strategy
from torchstyle.errors import UserError

log = logging.getLogger(__name__)

AUTO = "auto"


@dataclass
class RunPlan:
    """What a ``train`` command does with its folder.

    Attributes:
        run_dir: The run folder.
        resume: Continue the checkpoint in it.
        replace: Empty the folder first (``--overwrite``, or a start that failed before its
            first checkpoint and is started again).
    """

    run_dir: Path
    resume: bool
    replace: bool


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def plan_run(cfg: TrainConfig, *, model_name: str) -> RunPlan:
    """Decides new run, resume or replace; refuses what cannot be done. Writes nothing.

    ``model_name`` names a new run's default folder (``runs/MODEL-DATA-TIME``).

    Raises:
        UserError: The folder cannot be a run folder, holds something that is not a run, has
            nothing to resume, or another run's checkpoint without ``--resume``.
    """
    if cfg.resume == AUTO:
        if not cfg.run_dir:
            raise UserError(
                "--resume auto needs --run-dir: the folder the job starts, continues or finishes"
            )
        run_dir = Path(cfg.run_dir)
    elif cfg.resume:
        run_dir = Path(cfg.resume)
        if not run_dir.is_dir():
            raise UserError(
                f"--resume {run_dir}: no such run folder; check the path, or drop --resume to "
                "start a new run"
            )
    elif cfg.run_dir:
        run_dir = Path(cfg.run_dir)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        model = model_name
        source = cfg.data or "data"
        data = Path(source.split(":")[0]).stem if ":" in source else Path(source).name
        run_dir = Path("runs") / f"{model}-{data}-{stamp}"
    rundir.check_run_dir_path(run_dir)
    has_checkpoint = (run_dir / "checkpoints" / LATEST).is_file()
    if cfg.resume and cfg.overwrite:
        raise UserError(
            f"--overwrite with --resume would delete the run in {run_dir}; drop --overwrite to "
            "continue it, or drop --resume to replace it"
        )
    if (cfg.resume == AUTO and has_checkpoint) or (cfg.resume and cfg.resume != AUTO):
        if not has_checkpoint:
            raise UserError(
                f"--resume {run_dir}: no checkpoint in {run_dir / 'checkpoints'}, nothing to "
                f"resume; start it with --run-dir {_q(run_dir)} --resume auto"
            )
        return RunPlan(run_dir, resume=True, replace=False)
    return RunPlan(run_dir, resume=False, replace=_must_replace(cfg, run_dir, has_checkpoint))


def _must_replace(cfg: TrainConfig, run_dir: Path, has_checkpoint: bool) -> bool:
    """Whether a new run must empty an existing folder first (refusing when it may not)."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return False
    if cfg.overwrite:
        rundir.check_overwrite(run_dir)
        return True
    if has_checkpoint:
        raise UserError(
            f"run folder {run_dir} already exists; pass --resume {_q(run_dir)} to continue it, "
            "--overwrite to replace it, or another --run-dir"
        )
    if rundir.is_run_folder(run_dir) and not rundir.foreign_entries(run_dir):
        return True  # a start that failed before its first checkpoint: nothing to lose
    raise UserError(
        f"run folder {run_dir} already exists and is not a torchstyle run; pass another "
        "--run-dir (an empty or new folder)"
    )


def load_resume_state(plan: RunPlan, device: torch.device) -> dict[str, Any] | None:
    """The latest checkpoint of the run to resume (None for a new run)."""
    if not plan.resume:
        return None
    return load_checkpoint(plan.run_dir / "checkpoints" / LATEST, map_location=device)


def check_resume(
    cfg: TrainConfig, state: Mapping[str, Any], *, run_dir: Path, model_cls: type
) -> Changes:
    """The accepted flag changes of a resume; refuses the others (see ``resume_policy``)."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        raise UserError(f"{run_dir}: its checkpoint holds no config; start a new run")
    defaults = {
        "lr": getattr(model_cls, "default_lr", None),
        "optimizer": getattr(model_cls, "default_optimizer", None),
        "image_size": (state.get("spec") or {}).get("image_size"),
    }
    return resume_policy.check_resume(saved, cfg.to_dict(), run_dir=run_dir, defaults=defaults)


def apply_changes(
    changes: Changes,
    *,
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, Any],
    step: int,
    old_total: int,
    new_total: int,
) -> None:
    """Applies accepted changes to the restored optimizers and schedules."""
    if "lr" in changes.changed:
        old, new = changes.changed["lr"]
        resume_policy.scale_learning_rates(optimizers, schedulers, new / old)
    if "weight_decay" in changes.changed:
        old, new = changes.changed["weight_decay"]
        resume_policy.set_weight_decay(optimizers, old, new)
    if schedulers and old_total != new_total:
        resume_policy.replan_schedules(schedulers, step=step, total=new_total)
        log.info("schedule re-planned from step %d to end at step %d", step, new_total)


def open_run_folder(
    cfg: TrainConfig,
    plan: RunPlan,
    strategy: Strategy,
    *,
    changes: Changes | None,
    step: int,
) -> rundir.RunLock | None:
    """Locks, replaces or creates the run folder and writes its config and history.

    Every process calls it; the main one does the work and the others learn whether it
    failed, so that all stop together.

    Returns:
        The held lock (main process), or None.

    Raises:
        UserError: The folder is locked by another run, or cannot be written.
    """
    lock, error = None, None
    if strategy.is_main:
        try:
            lock = _open_on_main(cfg, plan, changes=changes, step=step)
        except (UserError, OSError) as e:
            error = e
    if strategy.any_flag(int(error is not None), at_sync_point=True):
        if isinstance(error, OSError):
            raise UserError(
                f"cannot write the run folder {plan.run_dir}: {error.strerror or error}; "
                "check its permissions and free space, or pass another --run-dir"
            ) from None
        raise error or UserError(f"the main process could not open {plan.run_dir}; see its error")
    return lock


def _open_on_main(
    cfg: TrainConfig, plan: RunPlan, *, changes: Changes | None, step: int
) -> rundir.RunLock:
    lock = rundir.RunLock(plan.run_dir)
    lock.acquire()
    try:
        if plan.replace:
            rundir.clear_run_folder(plan.run_dir)
        elif not plan.resume and (plan.run_dir / "checkpoints" / LATEST).exists():
            raise UserError(  # another run wrote a checkpoint since this one was planned
                f"run folder {plan.run_dir} already exists; pass --resume {_q(plan.run_dir)}"
            )
        rundir.write_marker(plan.run_dir)
        rundir.save_config(cfg.to_dict(), plan.run_dir)  # after the state was restored
        if plan.resume and changes is not None:
            changed = {k: list(v) for k, v in changes.changed.items()}
            rundir.append_history(
                plan.run_dir, {"step": step, "argv": sys.argv[1:], "changed": changed}
            )
    except BaseException:
        lock.release()
        raise
    return lock


def finished_message(epochs_done: int, steps_done: int, cfg: TrainConfig) -> str:
    """The stop reason of a resumed run with nothing left to train."""
    if cfg.max_steps and steps_done >= cfg.max_steps:
        return f"finished: {steps_done} of --max-steps {cfg.max_steps} steps taken already"
    return (
        f"finished: {epochs_done} of {cfg.epochs} epochs trained already; pass a larger "
        "--epochs to go on"
    )


def recover_lost_folder(
    cfg: TrainConfig, run_dir: Path, checkpoints: CheckpointManager, state: dict[str, Any]
) -> NoReturn:
    """The run folder vanished under a running run: recreates it with its config and this
    checkpoint, then stops the run with the command that continues it.

    Raises:
        RunFolderLostError: Always, once the checkpoint is safe.
    """
    with contextlib.suppress(UserError):  # a write still pending into the vanished folder
        checkpoints.wait()
    with rundir.RunLock(run_dir):
        rundir.write_marker(run_dir)
        rundir.save_config(cfg.to_dict(), run_dir)
        checkpoints.save(state, epoch_end=None, is_best=False)
    raise rundir.RunFolderLostError(
        f"run folder {run_dir} was deleted or moved away during training; recreated it with "
        f"its config and a checkpoint at step {state.get('n_iter')} (its earlier logs are "
        f"gone); continue with: torchstyle train --resume {_q(run_dir)}"
    )


def describe(changes: Changes) -> str:
    """One line naming the accepted changes and what each means."""
    parts = []
    for name, (old, new) in changes.changed.items():
        rule = resume_policy.POLICY[name].rule
        what = {Rule.REPLAN: "schedule re-planned", Rule.APPLIED: "applied"}.get(rule, "")
        parts.append(
            f"--{name.replace('_', '-')} {old!r} -> {new!r}" + (f" ({what})" if what else "")
        )
    return ", ".join(parts)
