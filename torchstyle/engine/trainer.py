"""The training loop: the guide's recommended loop, done right, readable top to bottom.

Read :meth:`Trainer.fit`, then :meth:`Trainer._train_step`; everything else is set-up.
What this loop fixes in the guide's own example:

* compute efficiency is measured, not guessed: data wait over wall time, with CUDA events
  on a GPU so no step waits for the device (``meters.py``);
* losses reach TensorBoard with their values, at a step counter that increases;
* a checkpoint stores where to resume (the next batch), so no finished work is redone;
* no host-device sync per step: values stay on the device until every ``log_every`` steps.

How the run spreads over devices is the strategy's business (``strategies.py``); where the
run stands is one :class:`~torchstyle.engine.position.Position`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import Tensor

from torchstyle.config import TrainConfig
from torchstyle.data import DataBundle
from torchstyle.engine import building, resume_policy, runs, setup
from torchstyle.engine.callbacks import Callback
from torchstyle.engine.checkpoint import (
    CheckpointManager,
    SaveSchedule,
    load_checkpoint,
    load_model_state,
)
from torchstyle.engine.ema import inference_weights
from torchstyle.engine.evaluation import evaluate_split
from torchstyle.engine.logger import RunLogger
from torchstyle.engine.meters import EfficiencyMeter, MetricBuffer
from torchstyle.engine.position import Position
from torchstyle.engine.programs import keep_program
from torchstyle.engine.reproducibility import capture_rng_state, restore_rng_state
from torchstyle.engine.run import Run, build_run
from torchstyle.engine.rundir import RunFolderLostError, RunLock, atomic_write_text
from torchstyle.engine.schedulers import per_step, step_on_metric
from torchstyle.engine.strategies import StepFn, launched_by_torchrun
from torchstyle.engine.summary import RunDescription, source_text, startup_lines
from torchstyle.errors import RunInterruptedError, TrainingError, UserError
from torchstyle.models import TorchstyleModel
from torchstyle.recipes import describe as describe_recipe

log = logging.getLogger(__name__)

# Images in a GAN's sample grid.
NUM_SAMPLES = 64


@dataclass
class TrainResult:
    """What a finished run reports."""

    run_dir: Path
    epochs: int
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    val_metrics: dict[str, float] = field(default_factory=dict)
    best_metric: str | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    best_checkpoint: Path | None = None
    stop_reason: str | None = None


class Trainer:
    """Trains a model (registered, a user's, a library's) as ``TrainConfig`` says.

    Building one reads (the data, a checkpoint to resume) but writes nothing and joins no
    process group: :meth:`fit` does both when training starts.

    Args:
        cfg: The run's settings (already merged and validated).
        callbacks: Extra hooks, called after the built-in ones.
        model: A model instance to train instead of ``create_model(cfg.model)``.
        data: Datasets to use instead of ``build_data(cfg.data)``.
        model_record: Where ``model`` came from, for the run's records (``torchstyle.fit``
            knows); by default read from its class.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        callbacks: Sequence[Callback] = (),
        model: TorchstyleModel | None = None,
        data: DataBundle | None = None,
        model_record: dict[str, Any] | None = None,
        run: Run | None = None,
    ) -> None:
        run = run or build_run(
            cfg, model=model, data=data, model_record=model_record, callbacks=callbacks
        )
        self.run = run
        self.cfg = run.cfg
        self.strategy = run.strategy
        self.plan, self.run_dir, self._changes = run.plan, run.plan.run_dir, run.changes
        self.data, self.build = run.data, run.build
        self.model, self.model_record = run.build.model, run.build.record
        self.optimizers, self.schedulers, self.scaler = run.optimizers, run.schedulers, run.scaler
        self._step_schedulers = per_step(self.schedulers)  # --scheduler plateau: at evaluations
        self.train_sampler, self.train_batches = run.train_sampler, run.train_batches
        self.eval_split, self.eval_metrics = run.eval_split, run.eval_metrics
        self.eval_sampler, self.eval_batches = run.eval_sampler, run.eval_batches
        self.hooks = run.hooks
        self.recipe, self.preprocessing = run.recipe, run.preprocessing  # fine-tuning
        self.position = Position()
        self.metrics: dict[str, float] = {}  # the latest evaluation's
        self.test_metrics: dict[str, float] = {}  # the final test on best.pt (with val only)
        self.stop_reason: str | None = None
        self._resumed = run.resume_state is not None
        self._shards: Path | None = None  # a sharded checkpoint's folder, read in `_start`
        if run.resume_state is not None:
            self._restore(run.resume_state)
            self._apply_resume_changes(run.resume_state["config"])
        self._save_schedule = SaveSchedule(
            every_steps=cfg.save_every or None, every_minutes=cfg.save_every_minutes or None
        )
        # What `fit` opens: the step is wrapped, the files written, only when training starts.
        self._step: StepFn = self.model.training_step
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", cfg.keep, tidy=False)
        purge_step = self.position.n_iter + 1 if self._resumed else None
        self.logger = RunLogger(self.run_dir, enabled=self.strategy.is_main, purge_step=purge_step)
        self.buffer = MetricBuffer()
        self.meter = EfficiencyMeter(self.strategy.device)
        self._lock: RunLock | None = None
        self._interrupt: int | None = None
        self._pbar: Any = None
        self._last_train_loss: float | None = None

    @property
    def monitor(self) -> tuple[str, str] | None:
        """The model's ``(metric, "max"|"min")`` that picks the best checkpoint."""
        return self.model.monitor

    # ------------------------------------------------------------------ the loop
    @property
    def planned_epochs(self) -> int:
        """The epochs this run reaches: ``--epochs``, or fewer when ``--max-steps`` ends it."""
        cfg = self.cfg
        if cfg.max_steps is None:
            return cfg.epochs
        per_epoch = max(1, math.ceil(len(self.train_sampler) / cfg.accumulate))
        return max(1, min(cfg.epochs, math.ceil(cfg.max_steps / per_epoch)))

    def fit(self) -> TrainResult:
        """Runs the remaining epochs; returns the summary of the run.

        However training ends, the callbacks hear it: ``on_train_end``, or ``on_exception``
        (``status.json``, trackers) before the error goes on to the caller.
        """
        try:
            self._start()  # joins the processes, wraps the step, opens the run folder
            with self._run_folder_held(), self._signals_handled():
                self._loop()
        except BaseException as e:
            self.hooks.on_exception(self, e)
            raise
        self.logger.close()
        return self._result()

    def _loop(self) -> None:
        """The epochs, their steps, evaluations and checkpoints."""
        cfg, pos = self.cfg, self.position
        self.hooks.on_train_start(self)
        while pos.epoch < cfg.epochs and self.stop_reason is None:  # a resume may find it done
            self.model.train()
            self.train_sampler.set_epoch(pos.epoch, start_batch=pos.batch)
            self.hooks.on_epoch_start(self, pos.epoch)
            for micro_batches in self._batch_groups(self._progress(pos.epoch)):
                self._train_step(micro_batches)  # forward, backward, step: every phase
                pos.n_iter += 1
                pos.batch += len(micro_batches)
                self.hooks.on_step_end(self, pos.n_iter)
                log_step = pos.n_iter % cfg.log_every == 0
                if log_step:
                    self._log_training()
                self._stop_if_signalled(at_sync_point=log_step, save=True)
                self._save_if_due(at_sync_point=log_step)  # --save-every, -minutes
                if cfg.max_steps is not None and pos.n_iter >= cfg.max_steps:
                    self.request_stop(f"reached --max-steps {cfg.max_steps}")
                if self.should_stop:  # --max-steps, or a callback asked
                    break
            self._log_training()  # the epoch's tail, and a NaN check before saving
            if pos.batch < self.train_sampler.batches_per_epoch():
                self.save_checkpoint(epoch_end=None)  # stopped mid-epoch: resumable here
                break
            pos.epoch, pos.batch = pos.epoch + 1, 0
            best = False
            if (cfg.eval_every and pos.epoch % cfg.eval_every == 0) or pos.epoch == cfg.epochs:
                best = self._evaluate_and_log(pos.epoch - 1)
            self.save_checkpoint(epoch_end=pos.epoch, is_best=best)  # latest, epoch, best
            self.hooks.on_epoch_end(self, pos.epoch - 1)
            self._stop_if_signalled(at_sync_point=True, save=False)
            if self.should_stop:  # early stopping, or a callback asked
                break
        if not self.metrics:  # stopped before any evaluation (--max-steps, a callback)
            best = self._evaluate_and_log(max(pos.epoch - 1, 0))
            if best and pos.n_iter:  # the summary's best must exist on disk
                self.save_checkpoint(epoch_end=None, is_best=True)
        if self.eval_split == "val" and self.data.test is not None:
            self._final_test()  # once, on best.pt: the figure to report
        self.hooks.on_train_end(self)

    def _train_step(self, micro_batches: list[Any]) -> None:
        """One optimizer step per phase over ``micro_batches`` (gradient accumulation).

        Each micro-batch's loss is weighted by its share of the samples, so N accumulated
        micro-batches give exactly the gradient of one batch of their combined size, even
        when the last one is short. The logged values are the true (unweighted) losses.
        """
        micro_batches = [  # mixup, cutmix, erasing, label smoothing: keyed on the step
            self.recipe.prepare(b, self.position.n_iter, i, self.strategy)
            for i, b in enumerate(micro_batches)
        ]
        weights = [1.0]
        if len(micro_batches) > 1:
            sizes = [self.model.batch_size_of(b) for b in micro_batches]
            weights = [n / sum(sizes) for n in sizes]
        logged: dict[str, Tensor] = {}
        for phase, optimizer in self.optimizers.items():
            optimizer.zero_grad(set_to_none=True)
            values = self._forward_backward(phase, micro_batches, weights)
            if values is None:  # a non-finite loss under --nan-policy skip: no step
                continue
            if self.cfg.clip_grad is not None:
                self.scaler.unscale_(optimizer)
                params = [p for g in optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
            self.scaler.step(optimizer)
            self.scaler.update()
            if phase in self._step_schedulers:
                self._step_schedulers[phase].step()
            if len(self.optimizers) == 1:
                logged = values
            else:
                logged.update({f"{phase}/{k}": v for k, v in values.items()})
        self.recipe.after_step(self.model)  # --ema
        if logged:
            self.buffer.append(self.position.n_iter + 1, logged)

    def _forward_backward(
        self, phase: str, micro_batches: list[Any], weights: list[float]
    ) -> dict[str, Tensor] | None:
        """Forward and backward of one phase over the micro-batches; returns its detached values."""
        values: dict[str, Tensor] = {}
        last = len(micro_batches) - 1
        for i, (batch, weight) in enumerate(zip(micro_batches, weights, strict=True)):
            with self.strategy.step_context(inner_micro_batch=i < last):
                out = self.strategy.step_outputs(self._step(batch, phase))
            if self.cfg.nan_policy == "skip" and not self._all_finite(out["loss"]):
                self.position.skipped_steps += 1  # its gradients are zeroed before the next step
                return None
            if last == 0:  # no accumulation: nothing to weigh
                self.scaler.scale(out["loss"]).backward()
                return {k: v.detach() for k, v in out.items()}
            self.scaler.scale(out["loss"] * weight).backward()
            for k, v in out.items():
                v = v.detach() * weight
                values[k] = values[k] + v if k in values else v
        return values

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Evaluates the validation split, or the test split when there is no validation split
        (every process its shard; results reduced across them)."""
        self.eval_sampler.set_epoch(0)
        return self._evaluate(self.eval_batches)

    def _evaluate(self, batches: Any) -> dict[str, float]:
        return evaluate_split(self.strategy, self.model, batches, self.eval_metrics)

    def _final_test(self) -> None:
        """The test split, once, on best.pt's weights; the model is put back afterwards."""
        best = self.checkpoints.best
        self.checkpoints.wait()  # best.pt may still be on its way to disk
        self.strategy.barrier()  # best.pt is written by the main process
        current = None
        best_state = load_checkpoint(best) if best.exists() else None
        if best_state is not None and "net" in best_state:
            current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            load_model_state(self.model, inference_weights(best_state), best)
        elif best_state is not None:  # sharded: each process reads its shards of best.pt
            from torchstyle.engine.fsdp import load_shards

            current = {}  # the latest shards bring the last weights back
            load_shards(best.parent / str(best_state["shards"]), self.model, self.optimizers)
        sampler, batches = setup.build_batches(
            self.data.test, self.run.batches, self.strategy, train=False
        )
        sampler.set_epoch(0)
        with self.strategy.full_weights():  # each process runs its share on its own
            self.test_metrics = self._evaluate(batches)
        if current:
            self.model.load_state_dict(current)
        elif current is not None:
            from torchstyle.engine.fsdp import load_shards

            latest = load_checkpoint(self.checkpoints.latest)
            load_shards(best.parent / str(latest["shards"]), self.model, self.optimizers)
        self.logger.log_scalars(self.position.n_iter, self.test_metrics, prefix="test/")
        self._log_metric_images("test", max(self.position.epoch - 1, 0))
        self.logger.flush()
        log.info(
            "test on %s: %s",
            "best.pt" if current is not None else "the last weights",
            ", ".join(f"{k} {v:.4f}" for k, v in self.test_metrics.items() if "/" not in k),
        )

    def _log_metric_images(self, split: str, epoch: int) -> None:
        """The metrics' images (a confusion matrix) to TensorBoard and ``RUN/metrics/``."""
        if self.eval_metrics is None:
            return
        for name, image in self.eval_metrics.images.items():
            path = self.run_dir / "metrics" / f"{split}_{name}_epoch_{epoch + 1:04d}.png"
            self.logger.log_images(
                self.position.n_iter, f"{split}/{name}", image[None] * 2 - 1, path
            )

    def _evaluate_and_log(self, epoch: int) -> bool:
        """Evaluates, logs, steps a plateau schedule; returns whether this is the best yet."""
        for check in getattr(self.data, "checks", None) or ():
            check.wait()  # a large training folder's background decode: done before this
        self.hooks.on_evaluation_start(self, epoch)
        with self.strategy.full_weights(), self.recipe.evaluating(self.model):
            metrics = self.evaluate()  # each process its share; --ema-eval: the average
            images = self.model.sample_images(NUM_SAMPLES) if self.strategy.is_main else None
        self.metrics = metrics
        n_iter = self.position.n_iter
        self.logger.log_scalars(n_iter, metrics, prefix=f"{self.eval_split}/")
        self._log_metric_images(self.eval_split, epoch)
        if images is not None:
            path = self.run_dir / "samples" / f"epoch_{epoch + 1:04d}.png"
            self.logger.log_images(n_iter, "samples", images, path)
        self.logger.flush()
        overall = {k: v for k, v in metrics.items() if "/" not in k}  # per class: TensorBoard
        train = self._last_train_loss  # shown even when the run is shorter than --log-every
        where = f"epoch {epoch + 1}/{self.planned_epochs}" if self.cfg.epochs else "untrained model"
        log.info(
            "%s: %s%s",
            where,
            "" if train is None else f"train loss {train:.4f}, ",
            ", ".join(f"{self.eval_split} {k} {v:.4f}" for k, v in overall.items()),
        )
        value, mode = self._monitored(metrics)
        is_best = self.position.record_evaluation(epoch + 1, value, mode)
        step_on_metric(self.schedulers, value, mode)
        self.hooks.on_evaluation_end(self, epoch, metrics)
        return is_best

    def _monitored(self, metrics: dict[str, float]) -> tuple[float | None, str | None]:
        """The monitored metric's value and mode (None, None when the model monitors none)."""
        if self.monitor is None:
            return None, None
        name, mode = self.monitor
        if name not in metrics:
            raise UserError(
                f"{type(self.model).__name__}.monitor names {name!r}, but its evaluation_step "
                f"returns {sorted(metrics)}; monitor one of those"
            )
        return metrics[name], mode

    # ------------------------------------------------------------------ logging
    def _log_training(self) -> None:
        if not len(self.buffer):
            return
        self._check_run_folder()  # before writing into a folder that may be gone
        means, bad_step = self.buffer.drain()
        # The global mean is logged, and every process stops together on a NaN.
        means, bad_step = self.strategy.mean_of(means), self.strategy.first_of(bad_step)
        self._last_train_loss = means.get("loss")
        if bad_step is not None:
            self._nonfinite(bad_step)
        efficiency, rate = self.meter.report()
        rate *= self.strategy.world_size  # every process loads its share at about the same pace
        scalars = {**means, "compute_efficiency": efficiency, "samples_per_sec": rate}
        if self.position.skipped_steps:
            scalars["skipped_steps"] = float(self.position.skipped_steps)
        self.hooks.on_log(self, self.position.n_iter, scalars)
        self.logger.log_scalars(self.position.n_iter, scalars, prefix="train/")
        if self._pbar is not None:
            loss = means.get("loss", means.get(next(iter(means), ""), float("nan")))
            self._pbar.set_postfix_str(
                f"loss={loss:.4f} eff={efficiency:.2f} {rate:.0f} samples/s", refresh=False
            )

    def _all_finite(self, loss: Tensor) -> bool:
        """Whether the loss is finite on every process (a host sync; ``--nan-policy skip`` only)."""
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        return not bool(self.strategy.all_reduce(bad, op="max").item())

    def _nonfinite(self, step: int) -> None:
        self.checkpoints.wait()
        latest = self.checkpoints.latest
        where = f"{latest}" if latest.exists() else "none was written yet"
        self.logger.close()
        raise TrainingError(
            f"loss became NaN or inf at step {step} (epoch {self.position.epoch + 1}); stopped; "
            f"last good checkpoint: {where}; lower --lr, add --clip-grad, or pass --nan-policy skip"
        )

    def _progress(self, epoch: int) -> Iterator[Any]:
        """Batches of the epoch on the device, behind a tqdm bar on the main process."""
        batches = self.train_batches
        self._pbar = None
        if not (self.cfg.progress and self.strategy.is_main):
            yield from batches
            return
        from tqdm import tqdm

        total = len(self.train_sampler)
        desc = f"epoch {epoch + 1}/{self.planned_epochs}"
        with tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5) as bar:
            self._pbar = bar
            for batch in batches:
                yield batch
                bar.update()
        self._pbar = None

    def _batch_groups(self, batches: Iterator[Any]) -> Iterator[list[Any]]:
        """Groups micro-batches for accumulation, timing each fetch for compute efficiency."""
        it = iter(batches)
        meter, size_of, accumulate = self.meter, self.model.batch_size_of, self.cfg.accumulate
        meter.reset()
        while True:
            group: list[Any] = []
            while len(group) < accumulate:
                meter.fetch_begin()
                batch = next(it, None)
                if batch is None:
                    break
                meter.fetch_end(size_of(batch))
                if self.cfg.channels_last:  # the model's weights are channels-last already
                    batch = setup.channels_last(batch)
                group.append(batch)
            if not group:
                return
            yield group

    # ------------------------------------------------------------------ checkpoints
    def state_dict(
        self, rng_states: list[Any] | None = None, weights: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly where this one is.

        Args:
            rng_states: Every process's RNG state in rank order (default: this process's).
            weights: The entries holding weights and optimizer state, as the strategy wrote
                them (default: the whole ``state_dict``s).
        """
        rng_states = rng_states or [capture_rng_state()]
        if weights is None:
            weights = {
                "net": self.model.state_dict(),
                "optim": {k: o.state_dict() for k, o in self.optimizers.items()},
            }
        return {
            **self.position.state_dict(),
            **weights,
            "scheduler": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "rng": rng_states[0],
            "rng_per_rank": rng_states,
            "world_size": self.strategy.world_size,
            "config": self.cfg.to_dict(),
            "spec": self.data.spec.to_dict(),
            "model": {
                "name": self.cfg.model,
                "hparams": self.model.hparams(),
                "source": self.model_record,
            },
            "monitor": list(self.monitor or []),
            "metrics": self.metrics,
            "callbacks": self.hooks.state_dict(),
            **self.recipe.state_dict(),  # --ema: the average
            "preprocessing": self.preprocessing.to_dict(),
        }

    def save_checkpoint(
        self, *, epoch_end: int | None, is_best: bool = False, background: bool = False
    ) -> None:
        """Saves the current state; the trainer is the one place that writes checkpoints.

        ``epoch_end``: the epoch just finished, or None mid-epoch. ``is_best``: the evaluation
        just before this save was the best so far (the state is also ``best.pt``).

        Every process calls it (their RNG states are gathered); only the main one writes. With
        ``background`` (the periodic mid-epoch saves) the state is copied to host memory and
        written by a thread; an epoch's checkpoint is on disk before the next epoch starts.
        """
        rng_states = self.strategy.gather_objects(capture_rng_state())
        weights = self.strategy.checkpoint_weights(
            self.model, self.optimizers, self.checkpoints.directory, self.position.n_iter
        )
        self._save_schedule.saved()
        if not self.strategy.is_main:
            return
        state = self.state_dict(rng_states, weights)
        if self._lock is not None and self._lock.folder_lost():
            runs.recover_lost_folder(self.cfg, self.run_dir, self.checkpoints, state)
        # Shards are already on disk; the file naming them is written at once, so the folders
        # it replaces are pruned only after it names the new ones.
        sharded = "shards" in weights
        self.checkpoints.save(
            state, epoch_end=epoch_end, is_best=is_best, background=background and not sharded
        )
        if sharded:
            self.strategy.checkpoint_saved(self.checkpoints.directory)

    def _check_run_folder(self) -> None:
        """A run folder deleted or moved away under the run: it is recreated with its config
        and a checkpoint, and the run stops (every process: the main one decides)."""
        lost = self._lock is not None and self._lock.folder_lost()
        if not self.strategy.any_flag(int(lost), at_sync_point=True):
            return
        self.save_checkpoint(epoch_end=None, background=False)  # the main process raises
        raise RunFolderLostError(f"the main process found the run folder {self.run_dir} gone")

    def _save_if_due(self, *, at_sync_point: bool) -> None:
        """A mid-epoch checkpoint every ``--save-every`` steps and ``--save-every-minutes``.

        The clock is read on every process, but they agree at sync points only.
        """
        schedule = self._save_schedule
        due = schedule.due_by_steps(self.position.n_iter)
        if not due and schedule.every_seconds is not None:
            due = bool(self.strategy.any_flag(schedule.due_by_time(), at_sync_point=at_sync_point))
        if due:
            self.save_checkpoint(epoch_end=None, background=True)

    def _apply_resume_changes(self, saved: dict[str, Any]) -> None:
        """Applies the flags a resume changed (--lr, --weight-decay, --epochs...) to the state."""
        if not self._changes:
            return
        steps_per_epoch = math.ceil(len(self.train_sampler) / self.cfg.accumulate)
        runs.apply_changes(
            self._changes,
            optimizers=self.optimizers,
            schedulers=self.schedulers,
            step=self.position.n_iter,
            old_total=resume_policy.total_steps(
                saved["epochs"], steps_per_epoch, saved.get("max_steps")
            ),
            new_total=resume_policy.total_steps(
                self.cfg.epochs, steps_per_epoch, self.cfg.max_steps
            ),
        )
        log.info("resumed with changed settings: %s", runs.describe(self._changes))

    @contextlib.contextmanager
    def _run_folder_held(self) -> Iterator[None]:
        """Waits for the last background write and releases the folder's lock, however
        training ends (an error already on its way wins over a failed last write)."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self.checkpoints.wait()
            raise
        else:
            self.checkpoints.wait()
        finally:
            if self._lock is not None:
                self._lock.release()

    def _restore(self, state: dict[str, Any]) -> None:
        path = self.run_dir / "checkpoints" / "latest.pt"
        if "shards" in state:  # sharded weights: read once the strategy has wrapped the model
            self._shards = path.parent / str(state["shards"])
        else:
            self._restore_weights(state, path)
        for k, sched in self.schedulers.items():
            if k in state["scheduler"]:
                sched.load_state_dict(state["scheduler"][k])
        if set(self.schedulers) != set(state["scheduler"]):
            log.warning(
                "%s was saved with --scheduler %s and resumes with --scheduler %s; "
                "the learning rate does not go on as it would have",
                path,
                state["config"].get("scheduler"),
                self.cfg.scheduler,
            )
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.recipe.load_state_dict(state)
        self.position = Position.from_state(state)
        self.metrics = state["metrics"]
        self.hooks.load_state_dict(state["callbacks"])
        per_rank = state.get("rng_per_rank") or []
        same_world = len(per_rank) == self.strategy.world_size
        restore_rng_state(per_rank[self.strategy.rank] if same_world else state["rng"])
        self.strategy.warn_if_statistics_change(
            self.model,
            saved_world=int(state.get("world_size", 1)),
            saved_sync=bool(state["config"].get("sync_batchnorm", False)),
        )
        pos = self.position
        log.info(
            "resumed %s at epoch %d, batch %d (step %d)",
            self.run_dir,
            pos.epoch + 1,
            pos.batch,
            pos.n_iter,
        )

    def _restore_weights(self, state: dict[str, Any], path: Path) -> None:
        """Loads whole ``state_dict``s of the model and its optimizers."""
        load_model_state(self.model, state["net"], path)
        missing = sorted(set(self.optimizers) - set(state["optim"]))
        if missing:
            raise UserError(
                f"{path} has no optimizer state for {missing}; it was saved by another model"
            )
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optim"][k])

    # ------------------------------------------------------------------ start and stop
    def _start(self) -> None:
        """What training needs beyond building: the process group, the wrapped step, the
        run folder (created, or replaced with ``--overwrite``), its checkpoints and logs."""
        cfg, strategy = self.cfg, self.strategy
        strategy.launch()
        several_phases = len(self.optimizers) > 1
        self._step = strategy.wrap(
            self.model,
            compile=cfg.compile,
            several_phases=several_phases,
            optimizers=self.optimizers,
        )
        self._lock = runs.open_run_folder(
            cfg, self.plan, strategy, changes=self._changes, step=self.position.n_iter
        )
        if self._shards is not None:  # after wrapping: the shards fit any number of processes
            from torchstyle.engine.fsdp import load_shards

            load_shards(self._shards, self.model, self.optimizers)
        if strategy.is_main:
            setup.write_data_info(self.run_dir, getattr(self.data, "info", None))
            atomic_write_text(
                self.run_dir / "preprocessing.json",
                json.dumps(self.preprocessing.to_dict(), indent=2) + "\n",
            )
            self.model_record = building.keep_model_file(self.model_record, self.run_dir)
            for line in [*startup_lines(self._describe()), *describe_recipe(cfg)]:
                log.info("%s", line)
            self.model_record = keep_program(
                self.model, self.model_record, self.data.train, self.run_dir
            )
        self.checkpoints.remove_stale_temporaries()  # the folder is this process's now
        self.logger.open()  # not at the first log, inside the first measured window
        pos = self.position
        if self._resumed and (
            pos.epoch >= cfg.epochs or pos.n_iter >= (cfg.max_steps or pos.n_iter + 1)
        ):
            self.stop_reason = runs.finished_message(pos.epoch, pos.n_iter, cfg)
            log.info("%s: %s", self.run_dir, self.stop_reason)
        elif cfg.epochs == 0:
            self.stop_reason = "--epochs 0: nothing trained; the untrained model was evaluated"

    @property
    def should_stop(self) -> bool:
        """Whether training ends after the current step or evaluation."""
        return self.stop_reason is not None

    def request_stop(self, reason: str) -> None:
        """Ends training after the current step or evaluation (for callbacks)."""
        self.stop_reason = reason

    @contextlib.contextmanager
    def _signals_handled(self) -> Iterator[None]:
        """SIGINT/SIGTERM/SIGUSR1 set a flag; the loop saves a checkpoint at the next step."""

        # Under torchrun a Ctrl-C reaches each worker twice: from the terminal, and forwarded
        # by torchrun as it shuts down. A repeat is not insistence there; torchrun's own
        # SIGKILL after its grace period is.
        insist = not launched_by_torchrun()

        def handler(signum: int, frame: FrameType | None) -> None:
            if self._interrupt is not None:  # a second signal: the user insists
                if insist:
                    raise KeyboardInterrupt
                return
            self._interrupt = signum

        previous: dict[signal.Signals, Any] = {}
        # SIGUSR1: what SLURM sends ahead of a time limit (--signal=USR1@SECONDS).
        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR1", signal.SIGTERM)):
            with contextlib.suppress(ValueError):  # not in the main thread
                previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)

    def _stop_if_signalled(self, *, at_sync_point: bool, save: bool) -> None:
        """Stops once SIGINT/SIGTERM arrived, with a checkpoint of where the run is.

        With several processes they agree at sync points only (logging steps, epoch ends),
        so they all stop at the same step without a collective on every step.
        """
        signum = self.strategy.any_flag(self._interrupt or 0, at_sync_point=at_sync_point)
        if not signum:
            return
        if self.position.epoch >= self.cfg.epochs:  # after the last epoch's checkpoint
            log.info("signal %d arrived after the last epoch: the run finished", signum)
            self.stop_reason = self.stop_reason or f"finished; signal {signum} came after the end"
            return
        if save:
            self._log_training()
            self.save_checkpoint(epoch_end=None, background=False)
        self.logger.close()
        raise RunInterruptedError(signum, str(self.checkpoints.latest))

    def _result(self) -> TrainResult:
        best_ckpt = self.checkpoints.best if self.checkpoints.best.exists() else None
        val = self.eval_split == "val"
        return TrainResult(
            run_dir=self.run_dir,
            epochs=self.position.epoch,
            steps=self.position.n_iter,
            metrics=self.test_metrics if val else self.metrics,
            val_metrics=self.metrics if val else {},
            best_metric=self.monitor[0] if self.monitor else None,
            best_value=self.position.best_value,
            best_epoch=self.position.best_epoch,
            best_checkpoint=best_ckpt,
            stop_reason=self.stop_reason,
        )

    def _describe(self) -> RunDescription:
        """What the start-up summary shows."""
        cfg, data = self.cfg, self.data
        return RunDescription(
            splits={"train": data.train, "val": data.val, "test": data.test},
            spec=data.spec,
            augment=cfg.augment,
            model_name=cfg.model,
            model_source=source_text(self.model_record),
            adapter=str(self.model_record.get("adapter", "none")),
            notes=self.build.notes,
            model=self.model,
            device=str(self.strategy.device),
            strategy=f"{self.strategy.name} x{self.strategy.world_size}",
            amp=cfg.amp,
            batch_size=cfg.batch_size,
            accumulate=cfg.accumulate,
            steps_per_epoch=math.ceil(len(self.train_sampler) / cfg.accumulate),
            epochs=self.planned_epochs,
            run_dir=self.run_dir,
            data_info=dict(data.info),
        )
