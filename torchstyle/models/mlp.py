"""``mlp``: a multi-layer perceptron classifier on flattened images.

A baseline for small images, and a model without batch norm: its gradient does not depend on
how a batch is split, which makes it the reference model for accumulation and DDP checks.
"""

from __future__ import annotations

from torch import nn

from torchstyle.errors import UserError
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
        if num_classes < 2:
            raise UserError(f"a classifier needs at least 2 classes, got {num_classes}")
        if not all(h > 0 for h in hidden):
            raise UserError(f"hidden widths must be positive, got {hidden}")
        if not 0.0 <= dropout < 1.0:  # written so that NaN fails too
            raise UserError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]  # (B, C, H, W) -> (B, C*H*W)
        width = in_channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers += [nn.Dropout(dropout)]
            width = h
        layers += [nn.Linear(width, num_classes)]
        self.net = nn.Sequential(*layers)
