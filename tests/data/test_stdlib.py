"""``--data stdlib``: a fixed split by file, windows whose target is the input shifted by one."""

from __future__ import annotations

import math

import pytest
import torch

from torchstyle.data import DataOptions, build_data, make_loader
from torchstyle.data.loaders import EpochBatchSampler
from torchstyle.data.stdlib import (
    EVAL_WINDOWS,
    SPLITS,
    ByteWindows,
    build_stdlib,
    split_files,
    split_of,
    stdlib_dir,
    unigram_loss,
)
from torchstyle.errors import UserError


def _library(root, n=60):
    root.mkdir()
    for i in range(n):
        (root / f"mod{i:03d}.py").write_text(f"def f{i}(x):\n    return x * {i}\n" * 3)
    (root / "package").mkdir()  # packages are not part of the corpus
    (root / "package" / "inner.py").write_text("x = 1\n")
    (root / "notes.txt").write_text("not python")
    return root


def test_split_is_by_file_disjoint_complete_and_independent_of_listing_order(tmp_path):
    root = _library(tmp_path / "lib")
    files = split_files(root)
    names = [n for s in SPLITS for n in files[s]]
    assert sorted(names) == sorted(f"mod{i:03d}.py" for i in range(60))
    assert len(set(names)) == len(names)
    assert all(files[s] == sorted(files[s]) for s in SPLITS)
    assert all(split_of(n) == s for s in SPLITS for n in files[s])
    assert len(files["train"]) > len(files["validation"]) and files["test"]


def test_windows_predict_the_next_byte_and_cover_the_stream_once():
    data = torch.arange(23, dtype=torch.uint8)
    windows = ByteWindows(data, context=5)
    assert len(windows) == 4  # (23 - 1) // 5
    x, y = windows.__getitems__([0, 3])
    assert x.dtype == torch.long and x.shape == y.shape == (2, 5)
    assert x[1].tolist() == [15, 16, 17, 18, 19] and y[1].tolist() == [16, 17, 18, 19, 20]
    predicted = torch.cat([windows[i][1] for i in range(len(windows))])
    assert predicted.tolist() == list(range(1, 21))
    with pytest.raises(UserError, match="smaller"):
        ByteWindows(data, context=23)


def test_evaluation_windows_are_capped_and_evenly_spaced():
    data = torch.arange(101, dtype=torch.uint8)
    windows = ByteWindows(data, context=2, max_windows=10)  # 50 windows, every 5th kept
    assert len(windows) == 10
    assert windows.starts.tolist() == list(range(0, 100, 10))
    x, y = windows[9]
    assert x.tolist() == [90, 91] and y.tolist() == [91, 92]
    assert windows.targets().tolist()[:4] == [1, 2, 11, 12]
    assert len(ByteWindows(data, context=2, max_windows=1000)) == 50


def test_the_real_library_builds_a_bundle_that_records_its_split():
    bundle = build_data(DataOptions(name="stdlib", image_size=16, layout="tokens"))
    assert bundle.spec.num_classes == 256 and bundle.spec.image_size == 16
    files = bundle.info["files"]
    on_disk = sorted(p.name for p in stdlib_dir().glob("*.py"))
    assert sorted(files["train"] + files["validation"] + files["test"]) == on_disk
    assert len(bundle.train) > len(bundle.val) > 0 and len(bundle.test) > 0
    assert len(bundle.val) <= EVAL_WINDOWS and len(bundle.test) <= EVAL_WINDOWS
    # A loader yields whole batches of windows.
    sampler = EpochBatchSampler(len(bundle.val), batch_size=4, shuffle=False)
    x, y = next(iter(make_loader(bundle.val, sampler)))
    assert x.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    first = stdlib_dir() / files["validation"][0]
    assert bytes(x[0].tolist()) == first.read_bytes()[:16]


def test_an_image_model_is_told_stdlib_holds_bytes():
    with pytest.raises(UserError, match="needs 'classes' data but --data stdlib is 'tokens'"):
        build_data(DataOptions(name="stdlib", layout="classes"))


def test_a_folder_without_python_files_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no \.py files"):
        build_stdlib(DataOptions(name="stdlib"), root=tmp_path / "empty")


def test_unigram_loss_is_the_smoothed_cross_entropy():
    train = torch.tensor([97] * 30 + [98] * 10, dtype=torch.uint8)
    evaluated = torch.tensor([97, 98, 99], dtype=torch.uint8)
    total = 40 + 256  # add-one smoothing over every byte value
    expected = -(math.log(31 / total) + math.log(11 / total) + math.log(1 / total)) / 3
    assert unigram_loss(train, evaluated) == pytest.approx(expected)
