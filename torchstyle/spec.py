"""What a dataset tells a model about its inputs.

A leaf module: the data side produces a :class:`DataSpec`, models consume it, and neither
has to import the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataSpec:
    """Shape and labels of an image dataset.

    Attributes:
        channels: Image channels (1 for grayscale digits, 3 for RGB).
        image_size: Side length in pixels of the square images the loader yields.
        num_classes: Number of classes (0 when the dataset has no labels).
        class_names: Names of the classes in label order.
        layout: What a sample is: ``classes`` (an image and its label) or ``paired`` (an
            input image A and its target B).
    """

    channels: int
    image_size: int
    num_classes: int
    class_names: tuple[str, ...] = field(default_factory=tuple)
    layout: str = "classes"

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON- and ``weights_only``-safe dict."""
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            channels=int(d["channels"]),
            image_size=int(d["image_size"]),
            num_classes=int(d["num_classes"]),
            class_names=tuple(d.get("class_names", ())),
            layout=str(d.get("layout", "classes")),
        )
