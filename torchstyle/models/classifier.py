"""``classifier``: a small ResNet image classifier (8 to 64 px), trained with cross-entropy."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from torchstyle.models import register_model
from torchstyle.models.base import Batch, TorchstyleModel
from torchstyle.nn.networks import ResNetClassifier


@register_model("classifier")
class Classifier(TorchstyleModel):
    """Image classifier: ``forward`` returns logits ``(B, num_classes)``.

    Args:
        in_channels: Image channels.
        num_classes: Number of classes.
        image_size: Input side in pixels (8 to 64).
        width: Channels of the first stage; later stages double it.
        num_blocks: Residual blocks per stage.
        dropout: Dropout before the final linear layer.
        label_smoothing: Cross-entropy label smoothing.
    """

    monitor = ("accuracy", "max")
    default_optimizer = "adamw"
    # Measured on digits: 3e-3 reaches >97% in a few epochs at batch 64 without a scheduler.
    default_lr = 3e-3

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        width: int = 32,
        num_blocks: tuple[int, ...] | list[int] = (2, 2),
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        assert num_classes >= 2, f"a classifier needs at least 2 classes, got {num_classes}"
        self._hparams: dict[str, Any] = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "image_size": image_size,
            "width": width,
            "num_blocks": list(num_blocks),
            "dropout": dropout,
            "label_smoothing": label_smoothing,
        }
        self.net = ResNetClassifier(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            width=width,
            num_blocks=tuple(num_blocks),
            dropout=dropout,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, x: Tensor) -> Tensor:
        """Returns class logits ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        return self.net(x)

    def predict(self, x: Tensor) -> Tensor:
        """Returns class probabilities ``(B, num_classes)``."""
        return self(x).softmax(dim=1)

    def training_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        """Cross-entropy on one batch; accuracy rides along for the logs (no extra sync)."""
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        accuracy = (logits.detach().argmax(dim=1) == y).float().mean()
        return {"loss": loss, "accuracy": accuracy}

    @torch.no_grad()
    def evaluation_step(self, batch: Batch) -> dict[str, Tensor]:
        """Per-sample loss and correctness, so the engine's average is exact over any batching."""
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y, reduction="none")
        return {"loss": loss, "accuracy": (logits.argmax(dim=1) == y).float()}
