"""A run resolved once: :func:`build_run` turns settings into the :class:`Run` the loop drives.

Every door into training builds its run here (``torchstyle train``, ``--resume``, a sweep's
trial, which is a ``train`` subprocess, and ``torchstyle.fit``), in one order, each step once:

1. the settings are checked, and ``--model`` is parsed (the only place a run parses it);
2. ``--data`` is resolved (the model's own when not given) and recorded as resolved;
3. the strategy: the device, and the launcher's place for several processes;
4. the plan: new run, resume or replace, refused before anything is written; a resume reads
   its checkpoint and checks which flags it may change;
5. seeds and backend settings;
6. the data, then the model for it (built, given, or rebuilt from the resumed record),
   with ``--weights`` and ``--freeze``; a resume's data spec is checked against the run's;
7. the model on its device, its optimizers, the batches of the training and evaluation
   splits, the evaluation metrics, the schedules, the gradient scaler and the hooks.

Building reads but writes nothing and joins no process group: ``Trainer.fit`` does both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from torchstyle.config import TrainConfig
from torchstyle.data import DataBundle, DataOptions
from torchstyle.engine import building, finetune, memory, resume_policy, runs, setup
from torchstyle.engine.callbacks import Callback, EarlyStopping, Hooks, LearningRateLogger
from torchstyle.engine.metrics import EvaluationMetrics
from torchstyle.engine.programs import replayable, resume_refusal
from torchstyle.engine.reproducibility import configure_backends, seed_everything
from torchstyle.engine.resume_policy import Changes
from torchstyle.engine.strategies import Strategy, make_strategy
from torchstyle.models import TorchstyleModel
from torchstyle.models.loading import ModelBuild
from torchstyle.models.preprocessing import Preprocessing
from torchstyle.models.sources import ModelSource, parse_model_spec
from torchstyle.recipes import apply_drop_path
from torchstyle.recipes import resolve as resolve_recipe


@dataclass
class Run:
    """Everything a training run is, resolved once (see the module's docstring for the order).

    Attributes:
        cfg: The settings, ``data`` resolved.
        source: ``--model`` parsed (None when the caller gave a model instance).
        strategy: How the run spreads over devices.
        plan: The run folder and whether the command resumes or replaces it.
        resume_state: The checkpoint being resumed (None for a new run).
        changes: The flags a resume changed, accepted by ``resume_policy``.
        data: The splits and their spec.
        build: The model, its record (where it came from) and notes on its adaptation.
        optimizers: One per phase of an iteration, in order.
        batches: The batching settings every split shares.
        train_sampler: The training split's sampler (resumes at a batch).
        train_batches: The training batches, on the device.
        eval_split: ``val`` when the data has one, else ``test``.
        eval_sampler: The evaluated split's sampler.
        eval_batches: Its batches.
        eval_metrics: The model's metrics (or its task's), None when it has none.
        schedulers: The learning-rate schedules, by phase.
        scaler: The gradient scaler (enabled under ``--amp fp16``).
        hooks: The built-in callbacks, then the caller's.
        recipe: The fine-tuning recipe's parts in the loop (batch mixing, the weight average).
        preprocessing: The input normalisation installed on the model, as recorded.
    """

    cfg: TrainConfig
    source: ModelSource | None
    strategy: Strategy
    plan: runs.RunPlan
    resume_state: dict[str, Any] | None
    changes: Changes | None
    data: DataBundle
    build: ModelBuild
    optimizers: dict[str, torch.optim.Optimizer]
    batches: setup.BatchSettings
    train_sampler: Any
    train_batches: Any
    eval_split: str
    eval_sampler: Any
    eval_batches: Any
    eval_metrics: EvaluationMetrics | None
    schedulers: dict[str, Any]
    scaler: torch.amp.GradScaler
    hooks: Hooks
    recipe: finetune.RecipeRun
    preprocessing: Preprocessing

    @property
    def model(self) -> TorchstyleModel:
        """The model the run trains."""
        return self.build.model


def build_run(
    cfg: TrainConfig,
    *,
    model: TorchstyleModel | None = None,
    data: DataBundle | None = None,
    model_record: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
) -> Run:
    """Resolves ``cfg`` (and what the caller built itself) into a :class:`Run`. Writes nothing.

    Args:
        cfg: The run's settings.
        model: A model instance to train instead of ``--model``'s.
        data: Datasets to use instead of ``--data``'s.
        model_record: Where ``model`` came from (``torchstyle.fit`` knows).
        callbacks: Extra hooks, after the built-in ones.

    Raises:
        UserError: A bad setting, or a request the run folder cannot take.
    """
    cfg.validate()
    resolve_recipe(cfg)  # the recipe's settings as they will run, recorded so
    apply_drop_path(cfg)
    source = parse_model_spec(cfg.model) if model is None else None
    if cfg.data is None:  # recorded as resolved, so test and resume read the same data
        cfg.data = building.default_data(source, model)
    strategy = make_strategy(
        cfg.strategy,
        cfg.device,
        amp=cfg.amp,
        cpu_offload=cfg.cpu_offload,
        activation_checkpointing=cfg.activation_checkpointing,
        sync_batchnorm=cfg.sync_batchnorm,
    )
    plan, resume_state, changes = _plan(cfg, source, model, strategy)
    seed_everything(cfg.seed + strategy.rank)
    configure_backends(deterministic=cfg.deterministic, cudnn_benchmark=cfg.cudnn_benchmark)
    # The weights' input side and resize policy (a resume's own), before the data is read.
    sizing = finetune.input_size(cfg, resume_state) if data is None else None
    size = sizing.size if sizing is not None else cfg.image_size
    if size:  # a size that cannot fit is refused before anything is allocated
        memory.check_input_size(image_size=size, batch_size=cfg.batch_size, device=strategy.device)
    data, build = setup.build_data_and_model(
        data if data is not None else _data_options(cfg, source, model, sizing),
        building.ModelSettings.of(cfg),
        model=model,
        source=source,
        record=model_record,
        resume_state=resume_state,
        run_dir=plan.run_dir,
        fits=setup.MemoryFit(strategy.device, cfg.batch_size, _size_settings(cfg)),
    )
    if sizing is not None:
        data.info.update(finetune.describe_input(sizing))
    if resume_state is not None:
        resume_policy.check_spec(resume_state["spec"], data.spec.to_dict(), run_dir=plan.run_dir)
    return _assemble(
        cfg, source, strategy, plan, resume_state, changes, data, build, callbacks, sizing
    )


def _data_options(
    cfg: TrainConfig,
    source: ModelSource | None,
    model: TorchstyleModel | None,
    sizing: finetune.InputSize | None,
) -> DataOptions:
    """What ``--data`` and its flags ask the data source for: every split, at the weights' or
    the flags' size (else the model's preferred one) and in the model's layout."""
    model_size, layout = building.model_preferences(source, model)
    sizing = sizing or finetune.InputSize(cfg.image_size)
    return DataOptions(
        name=cfg.data or building.default_data(source, model),
        data_dir=cfg.data_dir,
        image_size=sizing.size or model_size,
        resize=sizing.resize,
        channels=cfg.channels,
        skip_bad_images=cfg.skip_bad_images,
        download=cfg.download,
        seed=cfg.seed,
        layout=layout,
        augment=cfg.augment,
        val_split=cfg.val_split,
        test_split=cfg.test_split,
    )


def _size_settings(cfg: TrainConfig) -> str:
    """The flags that set a model's size, as typed (for messages)."""
    parts = [f"--model {cfg.model}"]
    parts += [f"--model-arg {k}={v}" for k, v in cfg.model_args.items()]
    if cfg.image_size:
        parts.append(f"--image-size {cfg.image_size}")
    return " ".join(parts)


def _plan(
    cfg: TrainConfig,
    source: ModelSource | None,
    model: TorchstyleModel | None,
    strategy: Strategy,
) -> tuple[runs.RunPlan, dict[str, Any] | None, Changes | None]:
    """What the command means for the run folder, the checkpoint to resume, and the flags a
    resume changes (refused here, before anything is written)."""
    name = source.short_name if source is not None else cfg.model
    plan = runs.plan_run(cfg, model_name=name)
    resume_state = runs.load_resume_state(plan, strategy.device)
    if resume_state is None:
        return plan, None, None
    record = resume_state.get("model", {}).get("source")
    if model is None and isinstance(record, dict) and not replayable(record):
        raise resume_refusal(record, plan.run_dir)  # before its name is read as a --model
    model_cls = type(model) if model is not None else building.model_class(source)
    changes = runs.check_resume(cfg, resume_state, run_dir=plan.run_dir, model_cls=model_cls)
    return plan, resume_state, changes


def _assemble(
    cfg: TrainConfig,
    source: ModelSource | None,
    strategy: Strategy,
    plan: runs.RunPlan,
    resume_state: dict[str, Any] | None,
    changes: Changes | None,
    data: DataBundle,
    build: ModelBuild,
    callbacks: Sequence[Callback],
    sizing: finetune.InputSize | None,
) -> Run:
    """The model on its device and everything that steps it."""
    model = build.model
    model.to(strategy.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizers = model.configure_optimizers(cfg.optimizer, cfg.lr, cfg.weight_decay)
    batches = setup.BatchSettings.of(cfg)
    train_sampler, train_batches = setup.build_batches(data.train, batches, strategy, train=True)
    # Evaluations during training run on validation when there is one: it picks best.pt
    # and drives early stopping; the test split is evaluated once, at the end.
    eval_split, evaluated = ("val", data.val) if data.val is not None else ("test", data.test)
    eval_sampler, eval_batches = setup.build_batches(evaluated, batches, strategy, train=False)
    steps_per_epoch = math.ceil(len(train_sampler) / cfg.accumulate)
    # The recipe regroups the optimizers and puts its warm-up before the schedule.
    optimizers, schedulers, recipe = finetune.build(
        cfg,
        model,
        data.spec,
        optimizers,
        steps_per_epoch=steps_per_epoch,
        total_steps=resume_policy.total_steps(cfg.epochs, steps_per_epoch, cfg.max_steps),
        strategy=strategy.name,
    )
    pre = finetune.install_preprocessing(cfg, model, data.spec, sizing)
    early = [EarlyStopping(cfg.early_stopping)] if cfg.early_stopping else []
    return Run(
        cfg=cfg,
        source=source,
        strategy=strategy,
        plan=plan,
        resume_state=resume_state,
        changes=changes,
        data=data,
        build=build,
        optimizers=optimizers,
        batches=batches,
        train_sampler=train_sampler,
        train_batches=train_batches,
        eval_split=eval_split,
        eval_sampler=eval_sampler,
        eval_batches=eval_batches,
        eval_metrics=EvaluationMetrics.for_model(model, data.spec, strategy.device),
        schedulers=schedulers,
        scaler=torch.amp.GradScaler(strategy.device.type, enabled=cfg.amp == "fp16"),
        hooks=Hooks([LearningRateLogger(), *early, *callbacks]),
        recipe=recipe,
        preprocessing=pre,
    )
