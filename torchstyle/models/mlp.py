"""``mlp``: a multi-layer perceptron classifier on flattened images.

A baseline for small images, and a model without batch norm: its gradient does not depend on
how a batch is split, which makes it the reference model for accumulation and DDP checks.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from torchstyle.models import register_model
from torchstyle.models.base import ImageClassifier


@register_model("mlp")
class MLP(ImageClassifier):
    """Flatten, then ``len(hidden)`` linear + ReLU (+ dropout) layers, then a linear head.

    Args:
        in_channels: Image channels.
        num_classes: Number of classes.
        image_size: Image side in pixels.
        hidden: Widths of the hidden layers.
        dropout: Dropout after each hidden layer.
    """

    default_optimizer = "adamw"
    default_lr = 1e-3

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        hidden: tuple[int, ...] | list[int] = (128,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        assert num_classes >= 2, f"a classifier needs at least 2 classes, got {num_classes}"
        assert all(h > 0 for h in hidden), f"hidden widths must be positive, got {hidden}"
        assert 0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}"
        self._hparams: dict[str, Any] = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "image_size": image_size,
            "hidden": list(hidden),
            "dropout": dropout,
        }
        layers: list[nn.Module] = [nn.Flatten()]  # (B, C, H, W) -> (B, C*H*W)
        width = in_channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers += [nn.Dropout(dropout)]
            width = h
        layers += [nn.Linear(width, num_classes)]
        self.net = nn.Sequential(*layers)
