"""Class folder names as file systems hand them over: NFC or NFD, or one level too deep."""

from __future__ import annotations

import unicodedata

import pytest

from tests.data.helpers import write_image
from torchstyle.data.base import DataOptions
from torchstyle.data.folder import build_folder
from torchstyle.errors import UserError

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")


def _split(root, split, names):
    for value, name in enumerate(names):
        for i in range(2):
            write_image(root / split / name / f"{i}.png", 40 + 80 * value)


def test_a_class_written_in_nfd_by_another_system_is_the_same_class(tmp_path):
    assert NFC != NFD
    _split(tmp_path, "train", [NFC, "tea"])
    _split(tmp_path, "test", [NFD, "tea"])
    bundle = build_folder(DataOptions(name=str(tmp_path)))
    assert bundle.spec.class_names == (NFC, "tea")
    assert sorted(label for _, label in bundle.test.samples) == [0, 0, 1, 1]


def test_two_folders_differing_only_in_normalisation_are_named(tmp_path):
    _split(tmp_path, "train", [NFC, NFD])
    _split(tmp_path, "test", [NFC])
    with pytest.raises(UserError, match="differ only in Unicode normalisation"):
        build_folder(DataOptions(name=str(tmp_path)))


def test_class_folders_one_level_too_deep_get_a_hint(tmp_path):
    _split(tmp_path / "train", "images", ["cat", "dog"])
    _split(tmp_path / "test", "images", ["cat", "dog"])
    with pytest.raises(
        UserError, match=r"images/, whose subfolders \(cat, dog\).*one level too deep"
    ):
        build_folder(DataOptions(name=str(tmp_path)))
