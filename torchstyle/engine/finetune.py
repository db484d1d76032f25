"""The recipe's parts that run inside the training loop, built once from the resolved config.

* the optimizers regrouped (norms and biases, layer decay) and the warm-up before the
  schedule (``param_groups.py``);
* the batch recipe: random erasing, mixup/cutmix, label smoothing (``data/mixing.py``);
* the weight average (``ema.py``);
* the input the weights expect: the side and resize policy image files are read with
  (:func:`input_size`), and the normalisation installed on the model.

The trainer calls :meth:`RecipeRun.prepare` on each micro-batch, :meth:`RecipeRun.after_step`
after each optimizer step, evaluates inside :meth:`RecipeRun.evaluating`, and saves and
restores :meth:`RecipeRun.state_dict`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim import lr_scheduler as lr_sched

from torchstyle.data.augment import ResizePolicy
from torchstyle.data.mixing import BatchRecipe
from torchstyle.engine import param_groups
from torchstyle.engine.ema import WeightAverage
from torchstyle.engine.schedulers import build_schedulers
from torchstyle.errors import UserError
from torchstyle.models import TorchstyleModel, preprocessing
from torchstyle.recipes import warmup_steps as recipe_warmup_steps
from torchstyle.spec import DataSpec

if TYPE_CHECKING:
    from torchstyle.config import TrainConfig
    from torchstyle.engine.strategies import Strategy


@dataclass
class RecipeRun:
    """The recipe's state during a run (see the module docstring)."""

    batch: BatchRecipe | None = None
    ema: WeightAverage | None = None
    ema_eval: bool = False

    def prepare(self, batch: Any, step: int, micro: int, strategy: Strategy) -> Any:
        """A training micro-batch with the batch recipe applied (unchanged when off)."""
        if self.batch is None:
            return batch
        images, labels = batch
        gather = _gatherer(strategy) if strategy.world_size > 1 else None
        return self.batch(
            images,
            labels,
            step,
            micro=micro,
            rank=strategy.rank,
            world=strategy.world_size,
            gather=gather,
        )

    def after_step(self, model: nn.Module) -> None:
        """Updates the weight average with the weights just stepped."""
        if self.ema is not None:
            self.ema.update(model)

    @contextlib.contextmanager
    def evaluating(self, model: nn.Module) -> Iterator[None]:
        """Evaluation runs on the average under ``--ema-eval``, else on the model's weights."""
        if self.ema is None or not self.ema_eval:
            yield
            return
        with self.ema.swapped_into(model):
            yield

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the recipe (the average, when there is one)."""
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the average of a checkpoint.

        Raises:
            UserError: The run has an average but the checkpoint none.
        """
        if self.ema is None:
            return
        if not isinstance(state.get("ema"), dict):
            raise UserError("the checkpoint holds no --ema average; resume without --ema")
        self.ema.load_state_dict(state["ema"])


def _gatherer(strategy: Strategy) -> Any:
    import torch.distributed as dist

    def gather(t: Tensor) -> list[Tensor]:
        out = [torch.empty_like(t) for _ in range(strategy.world_size)]
        dist.all_gather(out, t.contiguous())
        return out

    return gather


def check_applies(
    cfg: TrainConfig, model: TorchstyleModel, optimizers: dict[str, Optimizer], strategy: str
) -> None:
    """Refuses recipe settings the model or strategy cannot take (never silently ignored).

    Raises:
        UserError: Names the flag and why it does not apply.
    """
    batch_flags = {
        "label-smoothing": cfg.label_smoothing,
        "mixup": cfg.mixup,
        "cutmix": cfg.cutmix,
        "random-erasing": cfg.random_erasing,
    }
    given = [f"--{k}" for k, v in batch_flags.items() if v]
    if given and (model.task != "classification" or len(optimizers) != 1):
        raise UserError(
            f"{', '.join(given)} apply to classifiers trained on (image, label) batches; "
            f"{type(model).__name__} is not one: drop {'it' if len(given) == 1 else 'them'}"
        )
    if cfg.ema and strategy == "fsdp":
        raise UserError("--ema keeps a whole copy of the weights, which --strategy fsdp shards")


def build(
    cfg: TrainConfig,
    model: TorchstyleModel,
    spec: DataSpec,
    optimizers: dict[str, Optimizer],
    *,
    steps_per_epoch: int,
    total_steps: int,
    strategy: str,
) -> tuple[dict[str, Optimizer], dict[str, lr_sched.LRScheduler], RecipeRun]:
    """The regrouped optimizers, their schedules (warm-up first) and the loop's recipe parts.

    Raises:
        UserError: A recipe setting that does not apply to the model or strategy.
    """
    check_applies(cfg, model, optimizers, strategy)
    optimizers = param_groups.regroup(
        optimizers,
        model,
        decay_norms_and_biases=cfg.decay_norms_and_biases,
        layer_decay=float(cfg.layer_decay or 0.0),
    )
    warmup = min(recipe_warmup_steps(cfg, steps_per_epoch), total_steps)
    schedulers = build_schedulers(cfg.scheduler, optimizers, total_steps - warmup)
    schedulers = param_groups.with_warmup(schedulers, optimizers, warmup)
    batch = BatchRecipe(
        num_classes=spec.num_classes,
        seed=cfg.seed,
        label_smoothing=float(cfg.label_smoothing or 0.0),
        mixup=float(cfg.mixup or 0.0),
        cutmix=float(cfg.cutmix or 0.0),
        switch_prob=float(cfg.mix_switch_prob if cfg.mix_switch_prob is not None else 0.5),
        random_erasing=float(cfg.random_erasing or 0.0),
    )
    ema = WeightAverage(model, float(cfg.ema)) if cfg.ema else None
    run = RecipeRun(batch=batch if batch.active else None, ema=ema, ema_eval=cfg.ema_eval)
    return optimizers, schedulers, run


@dataclass(frozen=True)
class InputSize:
    """The run's input side and how image files are resized to it.

    Attributes:
        size: The side (None: the data's own, or the model's default).
        policy: The weights' resize policy at ``size`` (None: the centred square).
        origin: Where ``size`` came from, for the summary and the record.
    """

    size: int | None
    policy: preprocessing.WeightsPolicy | None = None
    origin: str = ""

    @property
    def resize(self) -> ResizePolicy | None:
        """The data path's form of :attr:`policy`."""
        p = self.policy
        return ResizePolicy(p.resize, p.crop, p.interpolation) if p is not None else None


def input_size(cfg: TrainConfig, resume_state: dict[str, Any] | None = None) -> InputSize:
    """The input side and resize policy of a run, decided before its data is built.

    A resumed run keeps its recorded policy (applied, whatever the flags now say: a
    different ``--image-size`` was refused by the resume check). A new ``torchvision:`` or
    ``timm:`` model with ``--weights`` reads image files as the weights' library evaluates
    them, at the weights' crop size unless ``--image-size`` says another (the resize keeps
    the weights' ratio to the crop). Anything else keeps torchstyle's centred square.
    """
    if resume_state is not None:
        pre = preprocessing.from_state(resume_state)
        args = pre.resize_args() if pre is not None else None
        if pre is None or args is None:
            return InputSize(cfg.image_size)
        resize, crop, mode = args
        policy = preprocessing.WeightsPolicy(resize, crop, mode, pre.source)
        return InputSize(crop, policy, pre.size_from or "the run's record")
    found = preprocessing.library_policy(cfg.model) if cfg.weights else None
    if found is None:
        return InputSize(cfg.image_size, None, "--image-size" if cfg.image_size else "")
    weights = found[0]
    if cfg.image_size:
        policy = weights.at_size(cfg.image_size)
        return InputSize(cfg.image_size, policy, f"--image-size (the weights' {weights.crop})")
    return InputSize(weights.crop, weights, f"the weights' crop ({weights.source})")


def describe_input(sizing: InputSize) -> dict[str, str]:
    """The summary's (and ``data.json``'s) lines about the input side and resize."""
    p = sizing.policy
    if p is None:
        return {}
    return {
        "image_size": f"{p.crop} from {sizing.origin}",
        "resize": f"image files: shorter side to {p.resize} ({p.interpolation}), centre "
        f"{p.crop}x{p.crop} crop; training's random resized crop resamples {p.interpolation}",
    }


def resize_policy(pre: preprocessing.Preprocessing | None) -> ResizePolicy | None:
    """The data path's resize policy of a recorded preprocessing (None: the centred square)."""
    args = pre.resize_args() if pre is not None else None
    return ResizePolicy(*args) if args is not None else None


def recorded_resize(state: dict[str, Any]) -> ResizePolicy | None:
    """The resize policy a checkpoint's run read image files with (None: the centred square)."""
    return resize_policy(preprocessing.from_state(state))


def install_preprocessing(
    cfg: TrainConfig, model: TorchstyleModel, spec: DataSpec, sizing: InputSize | None = None
) -> preprocessing.Preprocessing:
    """The weights' (or ``--normalize``'s) input normalisation, installed on the model; the
    config records the resolved ``--normalize`` value, the record the applied resize."""
    sizing = sizing or InputSize(cfg.image_size)
    # Data given by the caller was not read by the policy: its record must not say it was.
    applied = sizing.policy if sizing.size == spec.image_size else None
    pre = preprocessing.resolve(
        cfg.model,
        weights=cfg.weights,
        normalize=cfg.normalize,
        channels=spec.channels,
        size=spec.image_size,
        applied=applied,
        size_from=sizing.origin or ("--image-size" if cfg.image_size else "the data"),
    )
    pre.height, pre.width = spec.height, spec.width
    cfg.normalize = pre.flag_value()
    preprocessing.install(model, pre)
    return pre
