"""Experiment tracking: TensorBoard's HParams tab and, optionally, MLflow.

:class:`HParamsLogger` writes every run's flags and final metrics with the HParams plugin's
summaries, next to the run's own scalars, so ``tensorboard --logdir runs`` compares runs in
its HParams tab. :class:`MlflowTracker` (``--tracker mlflow``) mirrors ``metrics.jsonl`` into
an MLflow run line by line, so both hold the same scalars at the same steps.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchstyle import extras, writes
from torchstyle.engine.callbacks import Callback
from torchstyle.errors import UserError
from torchstyle.experiments.status import final_test_metrics, is_main, progress

if TYPE_CHECKING:
    from torchstyle.engine.trainer import Trainer

log = logging.getLogger(__name__)

TRACKERS = ("none", "mlflow")
# Settings that say where a run lives or how it is shown, not what it trains.
IGNORED_FLAGS = frozenset({"run_dir", "resume", "overwrite", "progress", "tracker"})
MLFLOW_STATE = "mlflow.json"
MLFLOW_EXPERIMENT = "torchstyle"


def flat_flags(config: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as flat name -> value (``model_args.hidden``), without bookkeeping flags."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key in IGNORED_FLAGS:
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    return flat


def _hparam_value(value: Any) -> int | float | str | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)  # None, lists: shown as their JSON text


def final_metrics(trainer: Trainer, status: dict[str, Any] | None) -> dict[str, float]:
    """The metrics a run is compared by: its best monitored value and its final evaluation."""
    metrics: dict[str, float] = {}
    best = (status or {}).get("best")
    if best:
        metrics[f"best/{best['metric']}"] = float(best["value"])
    for name, value in final_test_metrics(trainer).items():
        metrics[f"final/test/{name}"] = float(value)
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


class HParamsLogger(Callback):
    """At the end of training, writes the run's flags and final metrics for the HParams tab.

    The metrics are scalars tagged ``hparams/best/val/accuracy``, ``hparams/final/test/loss``...,
    written at the last step into the run's own event file (not into ``metrics.jsonl``).

    Args:
        status: The run's :class:`~torchstyle.experiments.status.RunStatus`, for the best value.
    """

    def __init__(self, *, status: Any = None) -> None:
        self.status = status

    def on_train_end(self, trainer: Trainer) -> None:
        """Writes the HParams summaries (main process only)."""
        if not is_main(trainer):
            return
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard.summary import hparams

        step = progress(trainer)[0]
        flags = {k: _hparam_value(v) for k, v in flat_flags(trainer.cfg.to_dict()).items()}
        status = getattr(self.status, "status", None)
        metrics = {f"hparams/{k}": v for k, v in final_metrics(trainer, status).items()}
        summaries = [*hparams(flags, metrics)]  # experiment, session start, session end
        summaries.append(
            Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()])
        )
        logger = getattr(trainer, "logger", None)
        if logger is not None and hasattr(logger, "log_summary"):  # the run's own event file
            for summary in summaries:
                logger.log_summary(step, summary)
            logger.flush()
            return
        from torch.utils.tensorboard.writer import FileWriter

        with writes.guarded(trainer.run_dir, fix="or pass another --run-dir"):
            writer = FileWriter(str(trainer.run_dir), filename_suffix=".hparams")
            try:
                for summary in summaries:
                    writer.add_summary(summary, step)
            finally:
                writer.close()


def mlflow_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else a SQLite store in ``./mlruns`` (MLflow's maintained local backend)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = Path("mlruns").resolve()
    writes.make_dirs(root, fix="or set MLFLOW_TRACKING_URI")
    return f"sqlite:///{root / 'mlflow.db'}"


def _mlflow_client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError(
            "--tracker mlflow needs MLflow: pip install 'torchstyle[mlflow]' (or mlflow-skinny)"
        ) from None
    # MLflow logs its database migrations at INFO; they are not the run's news.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


class MlflowTracker(Callback):
    """Mirrors a run into MLflow: params, every ``metrics.jsonl`` scalar at its step, artifacts.

    The MLflow run id and how much of ``metrics.jsonl`` was sent live in ``mlflow.json`` in the
    run folder, so a resumed run continues the same MLflow run without sending a line twice.
    """

    def __init__(self) -> None:
        # Built with the trainer, before the run folder is written.
        extras.require("mlflow", "--tracker mlflow")
        self.client: Any = None
        self.run_id: str | None = None
        self.offset = 0
        self._enabled = True

    def on_train_start(self, trainer: Trainer) -> None:
        """Opens (or, on resume, reopens) the MLflow run and logs the flags as params."""
        self._enabled = is_main(trainer)
        if not self._enabled:
            return
        from mlflow.entities import Param

        state_path = trainer.run_dir / MLFLOW_STATE
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        uri = state.get("tracking_uri") or mlflow_tracking_uri()
        self.client = _mlflow_client(uri)
        self.run_id, self.offset = state.get("run_id"), int(state.get("offset", 0))
        if self.run_id is None:
            experiment = self.client.get_experiment_by_name(MLFLOW_EXPERIMENT)
            if experiment is not None:
                experiment_id = experiment.experiment_id
            else:
                experiment_id = self.client.create_experiment(MLFLOW_EXPERIMENT)
            run = self.client.create_run(experiment_id, run_name=trainer.run_dir.name)
            self.run_id = run.info.run_id
            params = [Param(k, str(v)) for k, v in flat_flags(trainer.cfg.to_dict()).items()]
            self.client.log_batch(self.run_id, params=params)
            self.client.set_tag(self.run_id, "run_dir", str(trainer.run_dir.resolve()))
        else:
            self.client.update_run(self.run_id, status="RUNNING")
        self._save_state(trainer, uri)

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        """Sends the lines ``metrics.jsonl`` gained during the epoch."""
        self._sync(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        """Sends the last lines, the key artifacts, and closes the MLflow run as finished."""
        self._finish(trainer, "FINISHED")

    def on_exception(self, trainer: Trainer, error: BaseException) -> None:
        """Closes the MLflow run as killed (interrupt) or failed."""
        from torchstyle.errors import RunInterruptedError

        interrupted = isinstance(error, (RunInterruptedError, KeyboardInterrupt))
        self._finish(trainer, "KILLED" if interrupted else "FAILED")

    def _finish(self, trainer: Trainer, status: str) -> None:
        if not self._enabled or self.client is None:
            return
        self._sync(trainer)
        for name in ("config.txt", "config.json", "metrics.jsonl", "status.json"):
            path = trainer.run_dir / name
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        best = trainer.run_dir / "checkpoints" / "best.pt"
        if status == "FINISHED" and best.is_file():
            self.client.log_artifact(self.run_id, str(best), artifact_path="checkpoints")
        self.client.set_terminated(self.run_id, status)

    def _sync(self, trainer: Trainer) -> None:
        """Sends complete lines of ``metrics.jsonl`` after ``self.offset``, then saves the offset."""
        if not self._enabled or self.client is None:
            return
        from mlflow.entities import Metric

        path = trainer.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        with path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next sync
        now = int(time.time() * 1000)
        metrics = []
        for i, line in enumerate(data[:end].splitlines()):
            if not line.strip():
                continue
            record = json.loads(line)
            step = int(record.pop("step"))
            # One timestamp per line: a step written twice (a resume after a kill redoes the
            # steps after the last checkpoint) stays two entries, as in metrics.jsonl.
            metrics += [Metric(k, float(v), now + i, step) for k, v in record.items()]
        for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])
        self.offset += end
        self._save_state(trainer, None)

    def _save_state(self, trainer: Trainer, uri: str | None) -> None:
        path = trainer.run_dir / MLFLOW_STATE
        state = json.loads(path.read_text()) if path.is_file() else {}
        state.update(run_id=self.run_id, offset=self.offset)
        if uri is not None:
            state["tracking_uri"] = uri
        writes.atomic_write_text(path, json.dumps(state, indent=1) + "\n")
