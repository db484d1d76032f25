"""The contract between a finished model and the engine.

A finished model keeps ``forward`` for inference and says how to train itself through plain
methods. The engine never knows which model it drives:

* :meth:`TorchstyleModel.configure_optimizers` returns an *ordered* dict of optimizers; each key
  is a phase of one training iteration (a classifier has one, a GAN has ``"d"`` then ``"g"``).
* :meth:`TorchstyleModel.training_step` runs one phase on one batch and returns a dict whose
  ``"loss"`` entry is back-propagated into that phase's optimizer; other entries are logged.
* :meth:`TorchstyleModel.evaluation_step` returns per-sample values, shape ``(B,)``; the engine
  averages them over the whole split, so an uneven last batch (or uneven ranks) weighs right.

The engine reaches both steps through :class:`StepModule`, a module whose ``__call__`` it uses,
so that DataParallel/DDP hooks fire and a model that packs its networks *and* losses into one
module ("super network", pix2pixHD style) gets its whole batch split across devices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from torchstyle.errors import UserError
from torchstyle.models.arguments import recording_arguments
from torchstyle.spec import DataSpec

Batch = Any  # Whatever the data loader yields, already on the model's device.

#: Optimizers by name (``--optimizer`` offers these); a new optimizer is a new entry.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
}


def build_optimizer(
    params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Builds an optimizer by name.

    Args:
        params: Parameters or parameter groups.
        name: A key of :data:`OPTIMIZERS`.
        lr: Learning rate.
        weight_decay: Weight decay (decoupled for ``adamw``).
        **kwargs: Extra optimizer arguments (``betas``, ``momentum``, ...).

    Returns:
        The optimizer.

    Raises:
        UserError: An unknown name or a learning rate that is not positive.
    """
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise UserError(f"the learning rate must be positive, got {lr}; pass --lr")
    if name == "sgd":
        # Plain SGD without momentum trains our models poorly; 0.9 is the usual default.
        kwargs.setdefault("momentum", 0.9)
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **kwargs)


class TorchstyleModel(nn.Module):
    """Base class of finished models (see the module docstring for the contract).

    Class attributes:
        model_name: Set by ``register_model``.
        monitor: ``(metric, "max"|"min")``: which evaluation metric picks the best checkpoint;
            None when no metric does (the best checkpoint is then the latest).
        default_image_size: Input side the model wants when the user gives no ``--image-size``;
            None takes the dataset's own size.
        data_layout: The folder layout the model trains on: ``classes`` (ImageFolder) or
            ``paired`` (A|B pairs side by side); see ``torchstyle.data.DataOptions``.
        default_optimizer: Optimizer name used when the user does not pass ``--optimizer``.
        default_lr: Learning rate used when the user does not pass ``--lr``.
        task: ``classification`` for models whose ``evaluation_step`` also returns
            ``preds`` (logits ``(B, K)``) and ``target`` (labels ``(B,)``): the engine then
            computes the classification metrics (``torchstyle.engine.metrics``); None for none.
        default_data: The data source the model trains on when the user gives no ``--data``;
            it has the model's ``data_layout``, so every model trains out of the box.
        takes_features: Whether the model also takes feature vectors (``features`` layout,
            tabular data) besides ``(C, H, W)`` images.
        predict_kind: What ``torchstyle predict`` does with the model: ``classify`` (calls
            :meth:`predict`), ``generate`` (:meth:`generate_images`), ``translate``
            (:meth:`translate`) or ``text`` (:meth:`complete`).
    """

    model_name: ClassVar[str] = ""
    monitor: ClassVar[tuple[str, str] | None] = ("loss", "min")
    default_image_size: ClassVar[int | None] = None
    data_layout: ClassVar[str] = "classes"
    default_optimizer: ClassVar[str] = "adamw"
    default_lr: ClassVar[float] = 1e-3
    task: ClassVar[str | None] = None
    default_data: ClassVar[str] = "digits"
    predict_kind: ClassVar[str] = "classify"
    takes_features: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every constructor records its arguments: they rebuild the model from a checkpoint.
        if "__init__" in cls.__dict__:
            setattr(cls, "__init__", recording_arguments(cls.__dict__["__init__"]))  # noqa: B010  # mypy refuses assigning to a method

    @classmethod
    def shape_problem(cls, spec: DataSpec) -> str | None:
        """Why the model cannot take the data's samples (one clause with the fix), or None."""
        if spec.layout == "features" and not cls.takes_features:
            return (
                f"takes (C, H, W) images, but the data's samples are vectors of {spec.features} "
                "features; train a model of feature vectors such as --model mlp"
            )
        return None

    @classmethod
    def from_spec(cls, spec: DataSpec, **kwargs: Any) -> TorchstyleModel:
        """Builds the model for a dataset; ``kwargs`` override what the spec implies."""
        args: dict[str, Any] = {
            "in_channels": spec.channels,
            "image_size": spec.image_size,
            "num_classes": spec.num_classes,
        }
        args.update(kwargs)
        return cls(**args)

    def hparams(self) -> dict[str, Any]:
        """The constructor's arguments (defaults filled in), saved with checkpoints to rebuild
        the model; recorded when it was built, so nothing here is kept by hand."""
        return dict(self.__dict__.get("_hparams", {}))

    def _use_hparam(self, name: str, value: Any) -> None:
        """Records that the constructor uses ``value`` for argument ``name`` instead of the
        one given (a capped size, say), so a rebuild from a checkpoint needs no correcting."""
        self.__dict__["_hparams"][name] = value

    def configure_optimizers(
        self, name: str | None = None, lr: float | None = None, weight_decay: float = 0.0
    ) -> dict[str, torch.optim.Optimizer]:
        """Returns the optimizers, in phase order. Default: one optimizer over all parameters.

        Args:
            name: Optimizer name, or None for the model's default.
            lr: Learning rate, or None for the model's default.
            weight_decay: Weight decay.
        """
        return {
            "model": build_optimizer(
                self.parameters(),
                name or self.default_optimizer,
                lr=lr or self.default_lr,
                weight_decay=weight_decay,
            )
        }

    def training_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        """Runs one phase of a training iteration; returns at least ``{"loss": scalar}``."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_step")

    def evaluation_step(self, batch: Batch) -> dict[str, Tensor]:
        """Returns per-sample metric values, each of shape ``(B,)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement evaluation_step")

    def configure_metrics(self, spec: DataSpec) -> dict[str, Any] | None:
        """The model's own metrics: torchmetrics ``Metric`` objects by name, or None.

        They are updated with the ``preds`` and ``target`` entries of :meth:`evaluation_step`
        and replace the task's default metrics. None keeps the task's (see ``task``).
        """
        return None

    def predict(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, num_classes)`` for ``torchstyle predict``."""
        raise NotImplementedError(f"{type(self).__name__} does not classify images")

    def generate_images(self, num: int, *, generator: torch.Generator) -> Tensor:
        """``num`` new images ``(N, C, H, W)`` in ``[-1, 1]``, drawn with ``generator``."""
        raise NotImplementedError(f"{type(self).__name__} does not generate images")

    def translate(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` translated into the output domain, in ``[-1, 1]``."""
        raise NotImplementedError(f"{type(self).__name__} does not translate images")

    def complete(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = 40,
        seed: int | None = None,
    ) -> str:
        """``prompt`` followed by ``max_new_tokens`` sampled units of text (0 temperature:
        greedy; ``top_k`` None: every unit; ``seed`` None: torch's global generator)."""
        raise NotImplementedError(f"{type(self).__name__} does not generate text")

    def on_evaluation_start(self) -> None:
        """Called before each evaluation of a split, before ``eval()``; does nothing here."""

    def sample_images(self, num: int) -> Tensor | None:
        """Images to show at each evaluation, ``(N, C, H, W)`` in ``[-1, 1]``; None for none."""
        return None

    def batch_size_of(self, batch: Batch) -> int:
        """Number of samples in ``batch`` (first tensor's leading dim)."""
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        return int(first.shape[0])


class ImageClassifier(TorchstyleModel):
    """A classifier: ``self.net`` maps images to logits; trained with cross-entropy.

    Subclasses build ``self.net`` (and may set ``self.label_smoothing``); the steps, the
    prediction and the monitored metric are shared.
    """

    monitor = ("accuracy", "max")
    task = "classification"
    net: nn.Module
    label_smoothing: float = 0.0

    def forward(self, x: Tensor) -> Tensor:
        """Returns class logits ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        out: Tensor = self.net(x)
        return out

    def predict(self, x: Tensor) -> Tensor:
        """Returns class probabilities ``(B, num_classes)``."""
        out: Tensor = self(x).softmax(dim=1)
        return out

    def training_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        """Cross-entropy on one batch; accuracy rides along for the logs (no extra sync)."""
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        labels = y.argmax(dim=1) if y.is_floating_point() else y  # mixed: probabilities
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return {"loss": loss, "accuracy": accuracy}

    @torch.no_grad()
    def evaluation_step(self, batch: Batch) -> dict[str, Tensor]:
        """Per-sample loss and correctness, so the engine's average is exact over any batching,
        and the logits and labels for the classification metrics."""
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y, reduction="none")
        accuracy = (logits.argmax(dim=1) == y).float()
        return {"loss": loss, "accuracy": accuracy, "preds": logits, "target": y}


class GANModel(TorchstyleModel):
    """A generator and a discriminator, trained in two phases: ``"d"``, then ``"g"``.

    Subclasses build ``self.generator`` and ``self.discriminator`` and write the phases in
    ``training_step``. Default optimisation is the DCGAN paper's: Adam, learning rate 2e-4,
    betas (0.5, 0.999), one optimizer per network.
    """

    # A discriminator's score says little about samples: keep the latest.
    monitor: ClassVar[tuple[str, str] | None] = None
    predict_kind = "generate"
    default_optimizer = "adam"
    default_lr = 2e-4
    generator: nn.Module
    discriminator: nn.Module

    def configure_optimizers(
        self, name: str | None = None, lr: float | None = None, weight_decay: float = 0.0
    ) -> dict[str, torch.optim.Optimizer]:
        """Discriminator first, then generator (phase order); Adam with betas (0.5, 0.999)."""
        name = name or self.default_optimizer
        extra = {"betas": (0.5, 0.999)} if name in ("adam", "adamw") else {}
        kw: dict[str, Any] = {"lr": lr or self.default_lr, "weight_decay": weight_decay, **extra}
        return {
            "d": build_optimizer(self.discriminator.parameters(), name, **kw),
            "g": build_optimizer(self.generator.parameters(), name, **kw),
        }


class StepModule(nn.Module):
    """Routes ``__call__`` to a model's training or evaluation step.

    Wrapping this (not the bare model) in DataParallel/DDP makes the whole step, losses
    included, run on each replica with its share of the batch.
    """

    def __init__(self, model: TorchstyleModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, phase: str | None = None) -> dict[str, Tensor]:
        if phase is None:
            return self.model.evaluation_step(batch)
        return self.model.training_step(batch, phase)
