"""Image folders the data tests write to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, value: int, size: int = 12, mode: str = "RGB") -> None:
    """Writes a small solid image with a bright left column (so flips are visible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    arr = np.full((size, size, channels), value, dtype=np.uint8)
    arr[:, 0] = 255
    Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode=mode).save(path)


def make_image_folder(
    root: Path, classes=("cat", "dog"), per_class: int = 3, mode: str = "RGB"
) -> Path:
    """ROOT/{train,test}/<class>/<i>.png with a distinct gray level per class."""
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            for i in range(per_class):
                write_image(root / split / name / f"{i}.png", 40 + 80 * c, mode=mode)
    return root
