"""The trial side of a sweep: a ``torchstyle train`` process reporting to the sweep's study.

The sweep starts each trial as an ordinary ``torchstyle train`` subprocess (or a torchrun job)
with environment variables: ``TORCHSTYLE_SWEEP_DIR`` (the worker's run root, whose
``sweep.json`` names the study, the metric and the pruner), ``TORCHSTYLE_SWEEP_TRIAL`` (the
trial number) and ``TORCHSTYLE_SWEEP_STORAGE`` (the study's URL: the environment, since a
password must not show in ``ps``). :class:`SweepReporter` reports the validation metric after
every evaluation, stops the run when the pruner says so, and keeps ``sweep_trial.json`` in the
run folder: the best value so far and whether the trial was pruned. Under torchrun only rank 0
talks to the study; it hands the pruner's answer to the other ranks. The sweep reads that file
when the process ends.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchstyle import extras, writes
from torchstyle.engine.callbacks import Callback
from torchstyle.errors import UserError
from torchstyle.experiments.status import eval_split

if TYPE_CHECKING:
    from torchstyle.engine.trainer import Trainer

log = logging.getLogger(__name__)

ENV_DIR = "TORCHSTYLE_SWEEP_DIR"
ENV_TRIAL = "TORCHSTYLE_SWEEP_TRIAL"
ENV_PARENT = "TORCHSTYLE_SWEEP_PARENT"
ENV_STORAGE = "TORCHSTYLE_SWEEP_STORAGE"
SPEC_FILE = "sweep.json"
TRIAL_FILE = "sweep_trial.json"
PRUNED = "pruned by the sweep"


def pick_metric(metrics: dict[str, float], name: str) -> tuple[str, float] | None:
    """The validation value of ``name``: ``val/NAME``, else ``NAME``, else ``test/NAME``."""
    for key in (f"val/{name}", name, f"test/{name}"):
        if key in metrics:
            return key, float(metrics[key])
    return None


STUDY_FILE = "study.db"


def require_optuna() -> None:
    """Imports Optuna, or says how to install it.

    Raises:
        UserError: Optuna is not installed.
    """
    extras.require("experiments", "torchstyle sweep", ("optuna",))


def study_url(sweep_dir: Path) -> str:
    """The SQLite URL of a sweep's study (absolute, so trials may run from any folder)."""
    return f"sqlite:///{(Path(sweep_dir) / STUDY_FILE).resolve()}"


def storage(url: str) -> Any:
    """Optuna's storage for ``url`` (a SQLite file waits for a busy writer, not fails)."""
    from torchstyle.experiments.study import open_storage

    return open_storage(url)


def build_pruner(spec: dict[str, Any]) -> Any:
    """The Optuna pruner a sweep's ``[pruner]`` table describes (validated by the sweep)."""
    import optuna

    kind = spec.get("type", "median")
    if kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(spec.get("startup_trials", 5)),
            n_warmup_steps=int(spec.get("warmup_epochs", 0)),
        )
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=int(spec.get("min_epochs", 1)),
            max_resource=spec.get("max_epochs", "auto"),
            reduction_factor=int(spec.get("reduction_factor", 3)),
        )
    return optuna.pruners.NopPruner()


def _die_with_parent() -> None:
    """Ends this process when its parent (the sweep, or torchrun) dies, even by SIGKILL (Linux).

    Without it a killed sweep leaves trials training, and the rerun would resume them twice.
    """
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent check below still runs
        pass
    if os.getppid() != parent:  # the sweep died before the line above took effect
        os._exit(137)


class SweepReporter(Callback):
    """Reports a trial's per-epoch validation metric to its study and prunes it when told.

    Args:
        sweep_dir: The sweep folder (holding ``sweep.json`` and the study).
        number: The trial's number in the study.
    """

    def __init__(self, *, sweep_dir: Path, number: int) -> None:
        spec_path = Path(sweep_dir) / SPEC_FILE
        try:
            self.spec = json.loads(spec_path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(
                f"{ENV_DIR}={sweep_dir}: cannot read {spec_path} ({e}); unset {ENV_DIR} outside sweeps"
            ) from None
        self.sweep_dir = Path(sweep_dir)
        self.number = number
        self.metric = self.spec["metric"]
        self.maximize = self.spec["direction"] == "maximize"
        self.trial: Any = None
        self.reported: set[int] = set()
        self.state: dict[str, Any] = {"number": number, "value": None, "epoch": None}
        if os.environ.get(ENV_PARENT):
            _die_with_parent()

    def on_train_start(self, trainer: Trainer) -> None:
        """Connects to the study; a resumed trial keeps its best value and reported epochs."""
        import optuna

        if not trainer.strategy.is_main:
            return
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        url = os.environ.get(ENV_STORAGE) or study_url(self.sweep_dir)
        study = optuna.load_study(
            study_name=self.spec["study"],
            storage=storage(url),
            pruner=build_pruner(self.spec.get("pruner", {})),
        )
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, self.number
        )
        self.trial = optuna.trial.Trial(study, trial_id)
        self.reported = set(study._storage.get_trial(trial_id).intermediate_values)
        path = trainer.run_dir / TRIAL_FILE
        if path.is_file():
            self.state.update(json.loads(path.read_text()))
        self.state.update(pruned=False, metric=None)

    def on_evaluation_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Reports the metric at step ``epoch + 1``; asks the trainer to stop if pruned."""
        found = pick_metric(metrics, self.metric)
        if found is None:
            raise UserError(
                f"the sweep's metric {self.metric!r} is not among the evaluation's {sorted(metrics)}; "
                "set metric in the sweep config to one of them"
            )
        key, value = found
        pruned = self.trial is not None and self._report(trainer, key, value, epoch + 1)
        if _agreed(trainer, pruned):
            self.state["pruned"] = True
            trainer.request_stop(f"{PRUNED} at epoch {epoch + 1}")
        if self.trial is not None:
            self._save(trainer)

    def _report(self, trainer: Trainer, key: str, value: float, step: int) -> bool:
        """Rank 0: records and reports the value; whether the pruner stops the trial."""
        if not math.isfinite(value):
            return False
        best = self.state.get("value")
        if best is None or (value > best if self.maximize else value < best):
            self.state.update(value=value, epoch=step)
        self.state["metric"] = key if "/" in key else f"{eval_split(trainer)}/{key}"
        if step not in self.reported:
            self.trial.report(value, step)
            self.reported.add(step)
        return bool(self.trial.should_prune())

    def _save(self, trainer: Trainer) -> None:
        path = trainer.run_dir / TRIAL_FILE
        writes.atomic_write_text(path, json.dumps(self.state, indent=1) + "\n")


def _agreed(trainer: Trainer, pruned: bool) -> bool:
    """Rank 0's answer, given to every rank of a multi-process trial (all stop together)."""
    from torchstyle.experiments.status import world_size

    if world_size(trainer) == 1:
        return pruned
    import torch.distributed as dist

    answer = [pruned]
    dist.broadcast_object_list(answer, src=0)
    return bool(answer[0])


def reporter_from_env() -> SweepReporter | None:
    """The reporter of a trial started by a sweep, or None outside sweeps."""
    sweep_dir = os.environ.get(ENV_DIR)
    number = os.environ.get(ENV_TRIAL)
    if not sweep_dir or number is None:
        return None
    return SweepReporter(sweep_dir=Path(sweep_dir), number=int(number))
