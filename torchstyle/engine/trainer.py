"""The training loop: the guide's recommended loop, done right, readable top to bottom.

Read :meth:`Trainer.fit`, then :meth:`Trainer._train_step`; everything else is set-up.
What this loop fixes in the guide's own example (see DESIGN.md):

* compute efficiency is measured, not guessed: data wait over wall time, with CUDA events
  on a GPU so no step waits for the device (``meters.py``);
* losses reach TensorBoard with their values, at a step counter that increases;
* a checkpoint stores where to resume (the next batch), so no finished work is redone;
* no host-device sync per step: values stay on the device until every ``log_every`` steps.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchstyle.config import TrainConfig
from torchstyle.data import DataBundle, DataOptions, build_data
from torchstyle.data.loaders import rebuild
from torchstyle.engine import building, distributed, setup
from torchstyle.engine.callbacks import Callback, Checkpointing, EarlyStopping, LearningRateLogger
from torchstyle.engine.checkpoint import CheckpointManager, load_checkpoint, load_model_state
from torchstyle.engine.evaluation import evaluate
from torchstyle.engine.logger import RunLogger
from torchstyle.engine.meters import EfficiencyMeter, MetricBuffer
from torchstyle.engine.metrics import EvaluationMetrics
from torchstyle.engine.reproducibility import (
    capture_rng_state,
    configure_backends,
    restore_rng_state,
    seed_everything,
)
from torchstyle.engine.summary import RunDescription, source_text, startup_lines
from torchstyle.errors import RunInterruptedError, TrainingError, UserError
from torchstyle.models import TorchstyleModel
from torchstyle.models.base import StepModule

log = logging.getLogger(__name__)

# Images in a GAN's sample grid.
NUM_SAMPLES = 64


def _channels_last(batch: Any) -> Any:
    """Images (4-D tensors) of a batch in channels-last memory format; the rest unchanged."""
    if isinstance(batch, Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 else batch
    if isinstance(batch, (list, tuple)):
        return rebuild(batch, [_channels_last(b) for b in batch])
    return batch


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
    """Trains a registered model as ``TrainConfig`` says.

    Args:
        cfg: The run's settings (already merged and validated).
        callbacks: Extra hooks, called after the built-in ones.
        model: A model instance to train instead of ``create_model(cfg.model)``.
        data: Datasets to use instead of ``build_data(cfg.data)``.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        callbacks: Sequence[Callback] = (),
        model: TorchstyleModel | None = None,
        data: DataBundle | None = None,
        model_record: dict[str, Any] | None = None,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.dist = distributed.setup(cfg.strategy, cfg.device)
        self.device = self.dist.device
        self.run_dir = setup.resolve_run_dir(cfg)
        resume_state = setup.load_resume_state(cfg, self.run_dir, self.device)  # before any write

        seed_everything(cfg.seed + self.dist.rank)
        configure_backends(deterministic=cfg.deterministic, cudnn_benchmark=cfg.cudnn_benchmark)

        # Data first: the model's input shape comes from it.
        model_size, layout = building.model_preferences(cfg, model)
        options = DataOptions(
            name=cfg.data,
            data_dir=cfg.data_dir,
            image_size=cfg.image_size or model_size,
            skip_bad_images=cfg.skip_bad_images,
            download=cfg.download,
            seed=cfg.seed,
            layout=layout,
            augment=cfg.augment,
        )
        self.data = data if data is not None else build_data(options)
        self.build = building.prepare_model(
            cfg,
            self.data.spec,
            model=model,
            record=model_record,
            resume_state=resume_state,
            run_dir=self.run_dir,
        )
        self.model = self.build.model
        self.model_record = self.build.record
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.monitor = self.model.monitor

        self.optimizers = self.model.configure_optimizers(cfg.optimizer, cfg.lr, cfg.weight_decay)
        # Batches already on the device: the stock loader behind a device prefetcher,
        # the whole dataset in device memory (--data-on-device), or bytes decoded on the
        # device (--decode gpu).
        self.train_sampler, self.train_batches = setup.build_batches(
            self.data.train, cfg, self.dist, train=True
        )
        # Evaluations during training run on validation when there is one: it picks best.pt
        # and drives early stopping; the test split is evaluated once at the end.
        val = getattr(self.data, "val", None)
        self.eval_split = "val" if val is not None else "test"
        self.test_sampler, self.test_batches = setup.build_batches(
            val if val is not None else self.data.test, cfg, self.dist, train=False
        )
        self.eval_metrics = EvaluationMetrics.for_model(self.model, self.data.spec, self.device)
        self.test_metrics: dict[str, float] = {}
        self.steps_per_epoch = math.ceil(len(self.train_sampler) / cfg.accumulate)
        total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        self.schedulers = setup.build_schedulers(cfg.scheduler, self.optimizers, total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)

        # The engine calls steps through a module's __call__, so DP/DDP hooks fire and a
        # "super network" (networks + losses in one module) gets its whole batch split.
        step_module: torch.nn.Module = StepModule(self.model)
        self.eval_module = step_module
        if cfg.compile:
            step_module = torch.compile(step_module)
        self.step_module = distributed.wrap(
            step_module, self.dist, find_unused_parameters=len(self.optimizers) > 1
        )
        # On one device, uncompiled, there is no wrapper whose hooks must fire: call the step
        # itself and save a module call per step (the model's own hooks still fire inside it).
        wrapped = cfg.compile or self.dist.strategy != "single"
        self._step = self.step_module if wrapped else self.model.training_step
        # No autocast and no DDP: every step runs in the same (empty) context.
        self._plain_context = self.amp_dtype is None and self.dist.strategy != "ddp"

        self.callbacks: list[Callback] = [LearningRateLogger(), Checkpointing()]
        if cfg.early_stopping:
            self.callbacks.append(EarlyStopping(cfg.early_stopping))
        self.callbacks += list(callbacks)
        self._step_callbacks = [
            c for c in self.callbacks if type(c).on_step_end is not Callback.on_step_end
        ]

        # Position in training: `epoch` is the epoch in progress, `batch` the micro-batches of
        # it already consumed, `n_iter` the optimizer steps taken (TensorBoard's x axis).
        self.epoch = 0
        self.batch = 0
        self.n_iter = 0
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.metrics: dict[str, float] = {}
        self.should_stop = False
        self.stop_reason: str | None = None
        self.skipped_steps = 0
        self._interrupt: int | None = None
        self._is_best = False
        self._pbar: Any = None
        self._last_train_loss: float | None = None
        if resume_state is not None:
            self._restore(resume_state)

        setup.prepare_run_dir(cfg, self.run_dir, self.dist)
        if self.dist.is_main:
            self.model_record = building.keep_model_file(self.model_record, self.run_dir)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", cfg.keep)
        self.logger = RunLogger(
            self.run_dir,
            enabled=self.dist.is_main,
            purge_step=self.n_iter + 1 if resume_state is not None else None,
        )
        self.buffer = MetricBuffer()
        self.meter = EfficiencyMeter(self.device)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Runs the remaining epochs; returns the summary of the run."""
        cfg = self.cfg
        if self.dist.is_main:
            for line in startup_lines(self._describe()):
                log.info("%s", line)
        with self._signals_handled():
            self._emit("on_train_start")
            if self.epoch >= cfg.epochs and cfg.resume:
                log.info(
                    "%s has trained %d epochs already; pass a larger --epochs to go on",
                    self.run_dir,
                    self.epoch,
                )
            while self.epoch < cfg.epochs and not self.should_stop:
                epoch = self.epoch
                self.model.train()
                self.train_sampler.set_epoch(epoch, start_batch=self.batch)
                self._emit("on_epoch_start", epoch)
                self.meter.reset()
                for group in self._batch_groups(self._progress(epoch)):
                    self._train_step(group)
                    self.n_iter += 1
                    self.batch += len(group)
                    for cb in self._step_callbacks:
                        cb.on_step_end(self, self.n_iter)
                    log_step = self.n_iter % cfg.log_every == 0
                    if log_step:
                        self._log_training()
                    if self._interrupted(log_step):
                        self._stop_for_signal()
                    if cfg.max_steps is not None and self.n_iter >= cfg.max_steps:
                        self.request_stop(f"reached --max-steps {cfg.max_steps}")
                    if self.should_stop:  # --max-steps, or a callback asked
                        break
                self._log_training()  # the epoch's tail, and a NaN check before saving
                if self.batch < self.train_sampler.batches_per_epoch():
                    # Stopped mid-epoch: save where we are, resumable.
                    self.save_checkpoint(epoch_end=None)
                    break
                self.epoch, self.batch = epoch + 1, 0
                last = self.epoch == cfg.epochs
                if (cfg.eval_every and self.epoch % cfg.eval_every == 0) or last:
                    self._evaluate_and_log(epoch)
                self._emit("on_epoch_end", epoch)
                if self._interrupted(True):  # the epoch's checkpoint is already written
                    raise RunInterruptedError(self._interrupt or 0, str(self.checkpoints.latest))
            if not self.metrics:
                self._evaluate_and_log(max(self.epoch - 1, 0))
            if self.eval_split == "val" and self.data.test is not None:
                self._final_test()
            self._emit("on_train_end")
        self.logger.close()
        return self._result()

    def _train_step(self, micro_batches: list[Any]) -> None:
        """One optimizer step per phase over ``micro_batches`` (gradient accumulation).

        Each micro-batch's loss is weighted by its share of the samples, so N accumulated
        micro-batches give exactly the gradient of one batch of their combined size, even
        when the last one is short. The logged values are the true (unweighted) losses.
        """
        weights = [1.0]
        if len(micro_batches) > 1:
            sizes = [self.model.batch_size_of(b) for b in micro_batches]
            weights = [n / sum(sizes) for n in sizes]
        logged: dict[str, Tensor] = {}
        for phase, optimizer in self.optimizers.items():
            optimizer.zero_grad(set_to_none=True)
            values = self._backward(phase, micro_batches, weights)
            if values is None:  # a non-finite loss under --nan-policy skip: no step
                continue
            if self.cfg.clip_grad is not None:
                self.scaler.unscale_(optimizer)
                params = [p for g in optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
            self.scaler.step(optimizer)
            self.scaler.update()
            if phase in self.schedulers:
                self.schedulers[phase].step()
            if len(self.optimizers) == 1:
                logged = values
            else:
                logged.update({f"{phase}/{k}": v for k, v in values.items()})
        if logged:
            self.buffer.append(self.n_iter + 1, logged)

    def _backward(
        self, phase: str, micro_batches: list[Any], weights: list[float]
    ) -> dict[str, Tensor] | None:
        """Forward and backward of one phase over the micro-batches; returns its detached values."""
        values: dict[str, Tensor] = {}
        last = len(micro_batches) - 1
        for i, (batch, weight) in enumerate(zip(micro_batches, weights, strict=True)):
            # Under DDP only the last micro-batch all-reduces gradients.
            with self._step_context(skip_sync=i < last):
                out = self._step(batch, phase)
            if self.dist.strategy == "dp":  # replicas' scalars come back as a vector
                out = {k: v.mean() for k, v in out.items()}
            if self.cfg.nan_policy == "skip" and not self._all_finite(out["loss"]):
                self.skipped_steps += 1  # its gradients are zeroed before the next step
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
        """Evaluates the test split (every process its shard; results reduced across them)."""
        self.test_sampler.set_epoch(0)
        return self._evaluate(self.test_batches)

    def _evaluate(self, batches: Any) -> dict[str, float]:
        return evaluate(
            self.eval_module,
            self.model,
            batches,
            self.device,
            autocast=self._autocast,
            reduce_sum=lambda t: distributed.all_reduce(t, self.dist),
            metrics=self.eval_metrics,
        )

    def _log_metric_images(self, split: str, epoch: int) -> None:
        if self.eval_metrics is None:
            return
        for name, image in self.eval_metrics.images.items():
            path = self.run_dir / "metrics" / f"{split}_{name}_epoch_{epoch + 1:04d}.png"
            self.logger.log_images(self.n_iter, f"{split}/{name}", image[None] * 2 - 1, path)

    def _final_test(self) -> None:
        """The test split, once, on best.pt's weights (the model is put back afterwards)."""
        best = self.checkpoints.best
        distributed.barrier(self.dist)  # best.pt is written by the main process
        current = None
        if best.exists():
            current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            state = load_checkpoint(best, map_location=self.device)
            load_model_state(self.model, state["net"], best)
        sampler, batches = setup.build_batches(self.data.test, self.cfg, self.dist, train=False)
        sampler.set_epoch(0)
        self.test_metrics = self._evaluate(batches)
        if current is not None:
            self.model.load_state_dict(current)
        self.logger.log_scalars(self.n_iter, self.test_metrics, prefix="test/")
        self._log_metric_images("test", max(self.epoch - 1, 0))
        self.logger.flush()
        log.info(
            "test (%s): %s",
            "best.pt" if current is not None else "last weights",
            ", ".join(f"{k} {v:.4f}" for k, v in self.test_metrics.items() if "/" not in k),
        )

    def _evaluate_and_log(self, epoch: int) -> None:
        metrics = self.evaluate()
        self.metrics = metrics
        self.logger.log_scalars(self.n_iter, metrics, prefix=f"{self.eval_split}/")
        self._log_metric_images(self.eval_split, epoch)
        images = self.model.sample_images(NUM_SAMPLES) if self.dist.is_main else None
        if images is not None:
            path = self.run_dir / "samples" / f"epoch_{epoch + 1:04d}.png"
            self.logger.log_images(self.n_iter, "samples", images, path)
        self.logger.flush()
        train = self._last_train_loss
        log.info(
            "epoch %d/%d: %s%s",
            epoch + 1,
            self.cfg.epochs,
            "" if train is None else f"train loss {train:.4f}, ",
            ", ".join(f"{self.eval_split} {k} {v:.4f}" for k, v in metrics.items() if "/" not in k),
        )
        self._update_best(epoch, metrics)
        self._emit("on_evaluation_end", epoch, metrics)

    def _update_best(self, epoch: int, metrics: dict[str, float]) -> None:
        self._is_best = False
        if self.monitor is None:
            self._is_best, self.best_epoch = True, epoch + 1
            return
        name, mode = self.monitor
        assert name in metrics, (
            f"monitored metric {name!r} not in evaluation output {sorted(metrics)}"
        )
        value = metrics[name]
        better = self.best_value is None or (
            value > self.best_value if mode == "max" else value < self.best_value
        )
        if better:
            self.best_value, self.best_epoch, self._is_best = value, epoch + 1, True

    # ------------------------------------------------------------------ logging
    def _log_training(self) -> None:
        if not len(self.buffer):
            return
        means, bad_step = self.buffer.drain()
        self._last_train_loss = means.get("loss")
        if self.dist.strategy == "ddp":  # log the global mean, and stop together on a NaN
            means, bad_step = self._reduce_logs(means, bad_step)
        if bad_step is not None:
            self._nonfinite(bad_step)
        efficiency, rate = self.meter.report()
        rate *= self.dist.world_size  # every process loads its share at about the same pace
        scalars = {**means, "compute_efficiency": efficiency, "samples_per_sec": rate}
        if self.skipped_steps:
            scalars["skipped_steps"] = float(self.skipped_steps)
        for cb in self.callbacks:
            cb.on_log(self, self.n_iter, scalars)
        self.logger.log_scalars(self.n_iter, scalars, prefix="train/")
        if self._pbar is not None:
            loss = means.get("loss", means.get(next(iter(means), ""), float("nan")))
            self._pbar.set_postfix_str(
                f"loss={loss:.4f} eff={efficiency:.2f} {rate:.0f} samples/s", refresh=False
            )

    def _all_finite(self, loss: Tensor) -> bool:
        """Whether the loss is finite on every process (a host sync; ``--nan-policy skip`` only)."""
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        return not bool(distributed.all_reduce(bad, self.dist, op="max").item())

    def _reduce_logs(
        self, means: dict[str, float], bad_step: int | None
    ) -> tuple[dict[str, float], int | None]:
        keys = sorted(means)
        t = torch.tensor([means[k] for k in keys], dtype=torch.float64, device=self.device)
        t = distributed.all_reduce(t, self.dist) / self.dist.world_size
        none = 2**62
        bad = torch.tensor([none if bad_step is None else bad_step], device=self.device)
        first_bad = int(
            distributed.all_reduce(bad, self.dist, op="min").item()
        )  # earliest of any rank
        return dict(zip(keys, t.tolist(), strict=True)), (None if first_bad == none else first_bad)

    def _interrupted(self, at_log_step: bool) -> bool:
        """True once SIGINT/SIGTERM arrived. Under DDP the ranks agree at logging steps only,
        so they all stop at the same step without a collective on every step."""
        if self.dist.strategy != "ddp":
            return self._interrupt is not None
        if not at_log_step:
            return False
        flag = torch.tensor([self._interrupt or 0], device=self.device)
        signum = int(distributed.all_reduce(flag, self.dist, op="max").item())
        if signum:
            self._interrupt = signum
        return bool(signum)

    def _nonfinite(self, step: int) -> None:
        where = (
            f"{self.checkpoints.latest}"
            if self.checkpoints.latest.exists()
            else "none was written yet"
        )
        self.logger.close()
        raise TrainingError(
            f"loss became NaN or inf at step {step} (epoch {self.epoch + 1}); stopped; last good "
            f"checkpoint: {where}; lower --lr, add --clip-grad, or pass --nan-policy skip"
        )

    def _progress(self, epoch: int) -> Iterator[Any]:
        """Batches of the epoch on the device, behind a tqdm bar on the main process."""
        batches = self.train_batches
        self._pbar = None
        if not (self.cfg.progress and self.dist.is_main):
            yield from batches
            return
        from tqdm import tqdm

        total = len(self.train_sampler)
        desc = f"epoch {epoch + 1}/{self.cfg.epochs}"
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
        while True:
            group = []
            while len(group) < accumulate:
                meter.fetch_begin()
                batch = next(it, None)
                if batch is None:
                    break
                meter.fetch_end(size_of(batch))
                if self.cfg.channels_last:  # the model's weights are channels-last already
                    batch = _channels_last(batch)
                group.append(batch)
            if not group:
                return
            yield group

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, rng_states: list[Any] | None = None) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly where this one is.

        Args:
            rng_states: Every process's RNG state in rank order (default: this process's).
        """
        rng_states = rng_states or [capture_rng_state()]
        return {
            "net": self.model.state_dict(),
            "optim": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scheduler": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "n_iter": self.n_iter,
            "rng": rng_states[0],
            "rng_per_rank": rng_states,
            "config": self.cfg.to_dict(),
            "spec": self.data.spec.to_dict(),
            "model": {
                "name": self.cfg.model,
                "hparams": self.model.hparams(),
                "source": self.model_record,
            },
            "best": {
                "value": self.best_value,
                "epoch": self.best_epoch,
                "monitor": list(self.monitor or []),
            },
            "metrics": self.metrics,
            "skipped_steps": self.skipped_steps,
            "callbacks": {type(c).__name__: c.state_dict() for c in self.callbacks},
        }

    def save_checkpoint(self, *, epoch_end: int | None) -> None:
        """Saves the current state; ``epoch_end``: the epoch just finished, or None mid-epoch.

        Every process calls it (their RNG states are gathered); only the main one writes.
        """
        rng_states = distributed.gather_objects(capture_rng_state(), self.dist)
        if not self.dist.is_main:
            return
        is_best = epoch_end is not None and getattr(self, "_is_best", False)
        self.checkpoints.save(self.state_dict(rng_states), epoch_end=epoch_end, is_best=is_best)
        self._is_best = False

    def _restore(self, state: dict[str, Any]) -> None:
        path = self.run_dir / "checkpoints" / "latest.pt"
        load_model_state(self.model, state["net"], path)
        missing = sorted(set(self.optimizers) - set(state["optim"]))
        if missing:
            raise UserError(
                f"{path} has no optimizer state for {missing}; it was saved by another model"
            )
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optim"][k])
        for k, sched in self.schedulers.items():
            if k in state["scheduler"]:
                sched.load_state_dict(state["scheduler"][k])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch, self.n_iter = state["epoch"], state["batch"], state["n_iter"]
        self.best_value, self.best_epoch = state["best"]["value"], state["best"]["epoch"]
        self.metrics = state["metrics"]
        self.skipped_steps = state.get("skipped_steps", 0)
        for cb in self.callbacks:
            cb_state = state["callbacks"].get(type(cb).__name__)
            if cb_state:
                cb.load_state_dict(cb_state)
        per_rank = state.get("rng_per_rank") or []
        same_world = len(per_rank) == self.dist.world_size
        restore_rng_state(per_rank[self.dist.rank] if same_world else state["rng"])
        log.info(
            "resumed %s at epoch %d, batch %d (step %d)",
            self.run_dir,
            self.epoch + 1,
            self.batch,
            self.n_iter,
        )

    # ------------------------------------------------------------------ set-up helpers
    _NULL = contextlib.nullcontext()  # stateless: one instance serves every step

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return self._NULL
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _step_context(self, *, skip_sync: bool) -> contextlib.AbstractContextManager[Any]:
        """Autocast, and under DDP ``no_sync`` for the inner micro-steps of an accumulation."""
        if self._plain_context:
            return self._NULL
        stack = contextlib.ExitStack()
        if skip_sync and self.dist.strategy == "ddp":
            stack.enter_context(self.step_module.no_sync())  # type: ignore[operator]
        stack.enter_context(self._autocast())
        return stack

    def request_stop(self, reason: str) -> None:
        """Ends training after the current step or evaluation (for callbacks)."""
        self.should_stop = True
        self.stop_reason = reason

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    @contextlib.contextmanager
    def _signals_handled(self) -> Iterator[None]:
        """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the next step boundary."""

        def handler(signum: int, frame: Any) -> None:
            if self._interrupt is not None:  # a second signal: the user insists
                raise KeyboardInterrupt
            self._interrupt = signum

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not in the main thread
                previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)

    def _stop_for_signal(self) -> None:
        assert self._interrupt is not None
        self._log_training()
        self.save_checkpoint(epoch_end=None)
        self.logger.close()
        raise RunInterruptedError(self._interrupt, str(self.checkpoints.latest))

    def _result(self) -> TrainResult:
        best_ckpt = self.checkpoints.best if self.checkpoints.best.exists() else None
        val = self.eval_split == "val"
        return TrainResult(
            run_dir=self.run_dir,
            epochs=self.epoch,
            steps=self.n_iter,
            metrics=self.test_metrics if val else self.metrics,
            val_metrics=self.metrics if val else {},
            best_metric=self.monitor[0] if self.monitor else None,
            best_value=self.best_value,
            best_epoch=self.best_epoch,
            best_checkpoint=best_ckpt,
            stop_reason=self.stop_reason,
        )

    def _describe(self) -> RunDescription:
        cfg = self.cfg
        splits = {"train": self.data.train, "val": getattr(self.data, "val", None)}
        splits["test"] = self.data.test
        return RunDescription(
            splits=splits,
            spec=self.data.spec,
            augment=cfg.augment,
            model_name=cfg.model,
            model_source=source_text(self.model_record),
            adapter=str(self.model_record.get("adapter", "none")),
            notes=self.build.notes,
            model=self.model,
            device=str(self.device),
            strategy=f"{self.dist.strategy} x{self.dist.world_size}",
            amp=cfg.amp,
            batch_size=cfg.batch_size,
            accumulate=cfg.accumulate,
            steps_per_epoch=self.steps_per_epoch,
            epochs=cfg.epochs,
            run_dir=self.run_dir,
        )
