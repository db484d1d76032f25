"""``mlp``: a multi-layer perceptron classifier on flattened images or on feature vectors.

A baseline for small images, and a model without batch norm: its gradient does not depend on
how a batch is split, which makes it the reference model for accumulation and DDP checks.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from torchstyle.errors import UserError
from torchstyle.models import register_model
from torchstyle.models.base import ImageClassifier, TorchstyleModel
from torchstyle.spec import DataSpec


@register_model("mlp")
class MLP(ImageClassifier):
    """Flatten, then ``len(hidden)`` linear + ReLU (+ dropout) layers, then a linear head.

    Takes any sample shape: ``(C, H, W)`` images of any height and width, or vectors of
    features (tabular data); built from the data, ``in_features`` is the numbers per sample.

    Args:
        in_channels: Image channels (used when ``in_features`` is not given).
        num_classes: Number of classes.
        image_size: Image side in pixels (used when ``in_features`` is not given).
        in_features: Numbers in one sample (``C * H * W``, or the feature count); None takes
            ``in_channels * image_size ** 2``.
        hidden: Widths of the hidden layers.
        dropout: Dropout after each hidden layer.
    """

    default_optimizer = "adamw"
    default_lr = 1e-3
    takes_features = True

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        in_features: int | None = None,
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
        if in_features is not None and in_features < 1:
            raise UserError(f"in_features must be positive, got {in_features}")
        layers: list[nn.Module] = [nn.Flatten()]  # (B, C, H, W) -> (B, C*H*W); (B, F) stays
        width = in_features or in_channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers += [nn.Dropout(dropout)]
            width = h
        layers += [nn.Linear(width, num_classes)]
        self.net = nn.Sequential(*layers)

    @classmethod
    def from_spec(cls, spec: DataSpec, **kwargs: Any) -> TorchstyleModel:
        """Builds the model for the data's sample shape, whatever it is."""
        if spec.layout == "features":
            args: dict[str, Any] = {"in_features": spec.features}
        else:
            args = {"in_channels": spec.channels, "image_size": spec.image_size}
            if spec.height != spec.width:
                args["in_features"] = spec.numel
        args["num_classes"] = spec.num_classes
        args.update(kwargs)
        return cls(**args)
