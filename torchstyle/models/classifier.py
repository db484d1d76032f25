"""``classifier``: a small ResNet image classifier (8 to 64 px), trained with cross-entropy."""

from __future__ import annotations

from torchstyle.errors import UserError
from torchstyle.models import register_model
from torchstyle.models.base import ImageClassifier
from torchstyle.nn.networks import ResNetClassifier


@register_model("classifier")
class Classifier(ImageClassifier):
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
        if num_classes < 2:
            raise UserError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.net = ResNetClassifier(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            width=width,
            num_blocks=tuple(num_blocks),
            dropout=dropout,
        )
        self.label_smoothing = label_smoothing
