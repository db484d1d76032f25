"""Building blocks from the PyTorch style guide: layers, networks, losses and ops.

Imports only its own submodules and does no I/O at import time; the one file it ever reads is
a VGG19 weights file, when :class:`Vgg19Features` is built.
"""

from torchstyle.nn.errors import ArgumentError
from torchstyle.nn.layers import (
    AdaptiveInstanceNorm,
    ConvBlock,
    LayerType,
    ResnetBlock,
    SelfAttention,
    SNConv2d,
    SNLinear,
    spectral_norm,
)
from torchstyle.nn.losses import (
    GAN_MODES,
    CustomLoss,
    GANLoss,
    PerceptualLoss,
    gradient_penalty,
)
from torchstyle.nn.networks import (
    VGG19_CACHE_FILENAME,
    DCGANDiscriminator,
    DCGANGenerator,
    PatchGANDiscriminator,
    ResNetClassifier,
    ResnetGenerator,
    SimpleNetwork,
    Vgg19Features,
)
from torchstyle.nn.ops import INIT_TYPES, count_parameters, freeze, init_weights, one_hot, unfreeze

__all__ = [
    "GAN_MODES",
    "INIT_TYPES",
    "VGG19_CACHE_FILENAME",
    "AdaptiveInstanceNorm",
    "ArgumentError",
    "ConvBlock",
    "CustomLoss",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GANLoss",
    "LayerType",
    "PatchGANDiscriminator",
    "PerceptualLoss",
    "ResNetClassifier",
    "ResnetBlock",
    "ResnetGenerator",
    "SNConv2d",
    "SNLinear",
    "SelfAttention",
    "SimpleNetwork",
    "Vgg19Features",
    "count_parameters",
    "freeze",
    "gradient_penalty",
    "init_weights",
    "one_hot",
    "spectral_norm",
    "unfreeze",
]
