"""Data sources, the resumable batch sampler, and the device prefetcher."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.data.helpers import make_image_folder
from torchstyle.data import (
    DataOptions,
    DevicePrefetcher,
    EpochBatchSampler,
    build_data,
    make_loader,
)
from torchstyle.data.digits import load_digits_split
from torchstyle.errors import UserError


def test_digits_split_is_fixed_stratified_and_resizable():
    a, b = load_digits_split(), load_digits_split(16)
    assert (len(a.train), len(a.test)) == (1437, 360)
    assert a.train.images.shape[1:] == (1, 8, 8) and b.train.images.shape[1:] == (1, 16, 16)
    assert torch.equal(a.test.labels, b.test.labels), "the split must not depend on the size"
    counts = torch.bincount(a.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 of each digit
    assert a.train.images.min() >= -1 and a.train.images.max() <= 1
    assert a.spec.num_classes == 10 and a.spec.channels == 1


def test_sampler_order_depends_on_seed_and_epoch_only():
    s = EpochBatchSampler(100, batch_size=8, shuffle=True, seed=3)
    s.set_epoch(1)
    first = list(s)
    s.set_epoch(1)
    assert list(s) == first
    s.set_epoch(2)
    assert list(s) != first
    assert sorted(i for b in first for i in b) == list(range(100))
    assert len(first) == 13 and len(first[-1]) == 4


def test_sampler_starts_part_way_without_reading_skipped_batches():
    s = EpochBatchSampler(100, batch_size=8, shuffle=True, seed=3)
    s.set_epoch(4)
    whole = list(s)
    s.set_epoch(4, start_batch=5)
    assert len(s) == 8
    assert list(s) == whole[5:]


def test_sampler_shards_ranks_without_overlap():
    ranks = [
        EpochBatchSampler(10, batch_size=2, shuffle=True, seed=1, rank=r, world_size=2, pad=True)
        for r in (0, 1)
    ]
    seen = []
    for s in ranks:
        s.set_epoch(0)
        seen.append([i for b in s for i in b])
    assert len(seen[0]) == len(seen[1]) == 5
    assert sorted(seen[0] + seen[1]) == list(range(10))
    # Uneven without padding (evaluation): every sample exactly once.
    ev = [EpochBatchSampler(11, batch_size=4, shuffle=False, rank=r, world_size=2) for r in (0, 1)]
    assert sorted(i for s in ev for b in s for i in b) == list(range(11))


def test_loader_yields_whole_batches_from_in_memory_data():
    data = load_digits_split()
    loader = make_loader(
        data.train, EpochBatchSampler(len(data.train), batch_size=64, shuffle=False)
    )
    x, y = next(iter(DevicePrefetcher(loader, torch.device("cpu"))))
    assert x.shape == (64, 1, 8, 8) and torch.equal(y, data.train.labels[:64])


def test_image_folder_reads_classes_and_flips_by_epoch(tmp_path):
    root = make_image_folder(tmp_path / "data")
    bundle = build_data(DataOptions(name=str(root), image_size=12))
    assert bundle.spec.class_names == ("cat", "dog") and bundle.spec.channels == 3
    loader = make_loader(bundle.train, EpochBatchSampler(6, batch_size=6, shuffle=False), workers=2)
    sampler = loader.batch_sampler
    flips = []
    for epoch in range(6):
        sampler.set_epoch(epoch)
        x, y = next(iter(loader))
        assert y.tolist() == [0, 0, 0, 1, 1, 1]
        flips.append((x[:, 0, 0, -1] > 0.99).tolist())  # the bright column moved right
    assert any(any(f) for f in flips) and not all(all(f) for f in flips)
    assert len({tuple(f) for f in flips}) > 1, "flips must change from epoch to epoch"
    again = []
    for epoch in range(6):  # same (seed, epoch) -> same flips, whatever the worker count
        loader0 = make_loader(
            bundle.train, EpochBatchSampler(6, batch_size=6, shuffle=False), workers=0
        )
        loader0.batch_sampler.set_epoch(epoch)
        x, _ = next(iter(loader0))
        again.append((x[:, 0, 0, -1] > 0.99).tolist())
    assert again == flips
    x_test, _ = next(
        iter(make_loader(bundle.test, EpochBatchSampler(6, batch_size=6, shuffle=False)))
    )
    assert (x_test[:, 0, 0, 0] > 0.99).all(), "test images are never flipped"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda r: None, "does not exist"),
        (
            lambda r: make_image_folder(r, per_class=1) and __import__("shutil").rmtree(r / "test"),
            "missing folder",
        ),
        (lambda r: (make_image_folder(r), (r / "train" / "bird").mkdir()), "holds no images"),
        (
            lambda r: (
                make_image_folder(r),
                make_image_folder(r / "x", classes=("eel",)),
                (r / "x" / "test" / "eel").rename(r / "test" / "eel"),
            ),
            "different classes from the training split: eel",
        ),
    ],
    ids=["missing-root", "missing-test", "empty-class", "class-mismatch"],
)
def test_folder_errors_name_the_problem(tmp_path, breakage, message):
    root = tmp_path / "data"
    breakage(root)
    with pytest.raises(UserError, match=message):
        build_data(DataOptions(name=str(root)))


def test_unknown_named_source_lists_the_choices():
    with pytest.raises(UserError, match="digits, cifar10, synthetic"):
        build_data(DataOptions(name="imagenette"))


def test_cifar10_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match="--download"):
        build_data(DataOptions(name="cifar10", data_dir=str(tmp_path)))


def test_loader_prefetches_with_dataloader_itself_not_background_generator(tmp_path):
    # The guide wraps loaders in prefetch_generator.BackgroundGenerator; its author dropped it
    # for DataLoader's own persistent workers and prefetch_factor (it leaks under DDP).
    root = make_image_folder(tmp_path / "data")
    bundle = build_data(DataOptions(name=str(root), image_size=12))
    loader = make_loader(bundle.train, EpochBatchSampler(6, batch_size=2, shuffle=True), workers=2)
    assert loader.persistent_workers and loader.prefetch_factor == 4 and loader.num_workers == 2
    import torchstyle

    package = Path(torchstyle.__file__).parent
    assert not [
        p
        for p in package.rglob("*.py")
        if "BackgroundGenerator" in p.read_text() and "lint" not in p.parts
    ]


def test_to_device_keeps_the_batch_structure():
    from collections import namedtuple

    from torchstyle.data import to_device

    Pair = namedtuple("Pair", "x y")
    batch = {"a": Pair(torch.ones(2), [torch.zeros(1), "label"]), "b": (torch.ones(1),)}
    moved = to_device(batch, torch.device("cpu"))
    assert (
        isinstance(moved["a"], Pair)
        and moved["a"].y[1] == "label"
        and isinstance(moved["b"], tuple)
    )
    assert torch.equal(moved["a"].x, torch.ones(2))
