"""What a dataset tells a model about its inputs.

A leaf module: the data side produces a :class:`DataSpec`, models consume it, and neither
has to import the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The layouts a sample can have; ``torchstyle.data.registry.LAYOUTS`` describes each.
LAYOUT_NAMES = ("classes", "paired", "tokens", "features")


@dataclass(frozen=True)
class DataSpec:
    """Shape and labels of a dataset's samples.

    Images are ``(channels, height, width)``; ``image_size`` is their longer side (the side
    of square images, what ``--image-size`` sets). Tabular samples (``features`` layout) are
    vectors of ``features`` numbers; their ``channels``, ``height`` and ``width`` are 0.

    Attributes:
        channels: Image channels (1 for grayscale digits, 3 for RGB); 0 for feature vectors.
        image_size: The longer side of the images in pixels (the window of a token corpus).
        num_classes: Number of classes (0 when the dataset has no labels).
        class_names: Names of the classes in label order.
        layout: What a sample is: ``classes`` (an image and its label), ``paired`` (an input
            image A and its target B), ``tokens`` (a window of tokens and the next ones) or
            ``features`` (a vector of numbers and its label).
        height: Image height in pixels; 0 means ``image_size`` (square images).
        width: Image width in pixels; 0 means ``image_size`` (square images).
        features: Length of a feature vector (``features`` layout); 0 for images.
    """

    channels: int
    image_size: int
    num_classes: int
    class_names: tuple[str, ...] = field(default_factory=tuple)
    layout: str = "classes"
    height: int = 0
    width: int = 0
    features: int = 0

    def __post_init__(self) -> None:
        # Frozen: the derived sides are set through object.__setattr__, once, here.
        if self.layout == "features":
            return
        if not self.height:
            object.__setattr__(self, "height", self.image_size)
        if not self.width:
            object.__setattr__(self, "width", self.image_size)
        if not self.image_size:
            object.__setattr__(self, "image_size", max(self.height, self.width))

    @classmethod
    def for_images(
        cls,
        channels: int,
        height: int,
        width: int,
        num_classes: int,
        class_names: tuple[str, ...] = (),
        layout: str = "classes",
    ) -> DataSpec:
        """The spec of ``(channels, height, width)`` images."""
        return cls(
            channels=channels,
            image_size=max(height, width),
            num_classes=num_classes,
            class_names=class_names,
            layout=layout,
            height=height,
            width=width,
        )

    @classmethod
    def for_features(
        cls, features: int, num_classes: int, class_names: tuple[str, ...] = ()
    ) -> DataSpec:
        """The spec of labelled vectors of ``features`` numbers (``features`` layout)."""
        return cls(
            channels=0,
            image_size=0,
            num_classes=num_classes,
            class_names=class_names,
            layout="features",
            features=features,
        )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one input sample: ``(features,)`` or ``(channels, height, width)``."""
        if self.layout == "features":
            return (self.features,)
        return (self.channels, self.height, self.width)

    @property
    def numel(self) -> int:
        """Numbers in one input sample (what a flattening model takes)."""
        n = 1
        for side in self.sample_shape:
            n *= side
        return n

    def describe(self) -> str:
        """The sample shape in words: ``30 features`` or ``3 channels, 32x48 px``."""
        if self.layout == "features":
            return f"{self.features} features"
        s = "s" if self.channels != 1 else ""
        return f"{self.channels} channel{s}, {self.height}x{self.width} px"

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON- and ``weights_only``-safe dict."""
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        """Inverse of :meth:`to_dict` (also reads specs saved before shapes were recorded)."""
        return cls(
            channels=int(d["channels"]),
            image_size=int(d["image_size"]),
            num_classes=int(d["num_classes"]),
            class_names=tuple(d.get("class_names", ())),
            layout=str(d.get("layout", "classes")),
            height=int(d.get("height", 0)),
            width=int(d.get("width", 0)),
            features=int(d.get("features", 0)),
        )
