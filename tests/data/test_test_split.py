"""`--test-split`: a folder with only train/ gets a stratified, seeded, recorded test split."""

from __future__ import annotations

import pytest

from tests.data.helpers import write_image
from torchstyle.data.base import DataOptions
from torchstyle.data.folder import build_folder
from torchstyle.errors import UserError


def _train_only(root):
    for value, name in enumerate(("cat", "dog")):
        for i in range(5):
            write_image(root / "train" / name / f"{i}.png", 40 + 80 * value)
    return root


def test_a_folder_with_only_train_holds_out_a_test_split(tmp_path):
    root = _train_only(tmp_path / "data")
    with pytest.raises(UserError, match="missing folder"):
        build_folder(DataOptions(name=str(root)))
    bundle = build_folder(DataOptions(name=str(root), test_split=0.2, seed=3))
    tested = sorted(str(p) for p, _ in bundle.test.samples)
    assert sorted(label for _, label in bundle.test.samples) == [0, 1]  # stratified
    assert len(bundle.train) == 8 and not set(tested) & {str(p) for p, _ in bundle.train.samples}
    assert "2 images held out of 10" in bundle.info["test"] and "seed 3" in bundle.info["test"]
    again = build_folder(DataOptions(name=str(root), test_split=0.2, seed=3))
    assert sorted(str(p) for p, _ in again.test.samples) == tested  # the same seed, the same
    (root / "test").mkdir()
    with pytest.raises(UserError, match="has a test/ folder and --test-split"):
        build_folder(DataOptions(name=str(root), test_split=0.2))
