"""A damaged image in any split is found while the data is built, before the first step."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

from tests.data.helpers import make_image_folder
from torchstyle.data.base import DataOptions
from torchstyle.data.folder import build_folder
from torchstyle.data.images import BadImageError


def _truncated_png(path):
    """A PNG whose header is whole and whose pixels stop half-way (a header scan passes)."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


@pytest.mark.parametrize("split", ["train", "val", "test"])
@pytest.mark.parametrize("given", [True, False], ids=["size given", "size measured"])
def test_a_truncated_image_is_named_before_training(tmp_path, split, given, caplog):
    root = make_image_folder(tmp_path / "data")
    make_image_folder(tmp_path / "v")  # a val/ split too
    (tmp_path / "v" / "train").rename(root / "val")
    bad = root / split / "cat" / "bad.png"
    _truncated_png(bad)
    sizes = {"channels": 3, "image_size": 12} if given else {}
    with pytest.raises(BadImageError, match=f"cannot read image {bad}.*--skip-bad-images"):
        build_folder(DataOptions(name=str(root), **sizes))
    with caplog.at_level(logging.WARNING):
        bundle = build_folder(DataOptions(name=str(root), skip_bad_images=True, **sizes))
    held = {"train": bundle.train, "val": bundle.val, "test": bundle.test}[split]
    assert len(held) == 6  # three images of each class; the damaged one left out
    said = " ".join(r.getMessage() for r in caplog.records)
    assert str(bad) in said and "pass --skip-bad-images" not in said, said


def test_a_train_folder_too_large_to_decode_up_front_is_checked_in_the_background(
    tmp_path, monkeypatch
):
    from torchstyle.data import folder

    monkeypatch.setattr(folder, "DECODE_UP_FRONT", 2)  # this folder's 7 train images: too many
    root = make_image_folder(tmp_path / "data")
    bad = root / "train" / "dog" / "bad.png"
    _truncated_png(bad)
    bundle = build_folder(DataOptions(name=str(root), channels=3, image_size=12))  # headers only
    assert len(bundle.checks) == 1
    with pytest.raises(BadImageError, match=f"cannot read image {bad}"):
        bundle.checks[0].wait()  # what the engine calls before the first evaluation
    bad.unlink()
    clean = build_folder(DataOptions(name=str(root), channels=3, image_size=12))
    clean.checks[0].wait()  # nothing to report
