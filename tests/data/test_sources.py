"""Data sources: the registry, validation splits, digits-pairs, a user's data function,
augmentation on in-memory sources, and the layout check."""

from __future__ import annotations

import logging
import textwrap

import pytest
import torch

from tests.data.helpers import make_image_folder, write_image
from torchstyle.data import (
    DATA_SOURCES,
    DataBundle,
    DataOptions,
    EpochBatchSampler,
    build_data,
    default_source,
    list_sources,
    make_loader,
    register_source,
    sources_help,
)
from torchstyle.data.checks import check_data_fits_run
from torchstyle.data.digit_pairs import TensorPairDataset, edges
from torchstyle.data.digits import load_digits_split
from torchstyle.data.splits import stratified_split
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec


# ------------------------------------------------------------------------------ registry
def test_every_source_has_a_one_line_description_and_a_layout():
    listed = dict(list_sources())
    assert {"digits", "digits-pairs", "cifar10", "synthetic"} <= set(listed)
    for name, line in listed.items():
        assert line and "\n" not in line and line.endswith(("[classes]", "[paired]")), name
    assert all(name in sources_help() for name in listed)
    assert (default_source("classes"), default_source("paired")) == ("digits", "digits-pairs")


def test_listing_the_sources_does_not_import_torch():
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys, torchstyle.data as d; d.list_sources(); d.sources_help(); "
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert proc.stdout.strip() == "False"


def test_a_registered_source_is_built_by_name_and_names_are_unique():
    @register_source("tiny-test-source", description="two images, for a test")
    def tiny(options: DataOptions) -> DataBundle:
        ds = load_digits_split().test.subset(torch.arange(20))
        return DataBundle(train=ds, test=ds, spec=DataSpec(1, 8, 10))

    try:
        assert len(build_data(DataOptions(name="tiny-test-source")).train) == 20
        assert "tiny-test-source" in dict(list_sources())
        with pytest.raises(ValueError, match="already registered"):
            register_source("tiny-test-source", description="again")(lambda o: o)
        with pytest.raises(ValueError, match="must not"):
            register_source("a/b", description="a path")
    finally:
        DATA_SOURCES.pop("tiny-test-source")


# ------------------------------------------------------------------------------ validation
def test_stratified_split_is_fixed_by_the_seed_and_keeps_every_class():
    labels = torch.arange(100) % 4
    a_train, a_val = stratified_split(labels, 0.2, seed=3)
    _, b_val = stratified_split(labels, 0.2, seed=3)
    _, c_val = stratified_split(labels, 0.2, seed=4)
    assert torch.equal(a_val, b_val) and not torch.equal(a_val, c_val)
    assert torch.bincount(labels[a_val]).tolist() == [5, 5, 5, 5]
    assert sorted(torch.cat([a_train, a_val]).tolist()) == list(range(100))


def test_digits_hold_out_validation_from_train_and_keep_the_test_split():
    plain = load_digits_split()
    bundle = build_data(DataOptions(name="digits", seed=1))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (1295, 142, 360)
    assert torch.equal(bundle.test.labels, plain.test.labels)
    assert torch.equal(bundle.test.images, plain.test.images), "test figures stay comparable"
    train_val = torch.cat([bundle.train.images, bundle.val.images]).flatten(1)
    assert len(torch.unique(train_val, dim=0)) == len(
        torch.unique(plain.train.images.flatten(1), dim=0)
    )
    counts = torch.bincount(bundle.val.labels, minlength=10)
    assert counts.min() >= 13 and counts.max() <= 16  # stratified
    assert bundle.val.augment == "none"
    assert "142 samples held out" in bundle.info["val"] and bundle.info["val_seed"] == 1
    again = build_data(DataOptions(name="digits", seed=1))
    other = build_data(DataOptions(name="digits", seed=2))
    assert torch.equal(again.val.labels, bundle.val.labels)
    assert not torch.equal(other.val.images, bundle.val.images)
    none = build_data(DataOptions(name="digits", val_split=0.0))
    assert none.val is None and len(none.train) == 1437
    with pytest.raises(UserError, match=r"--val-split must be a fraction in \[0, 1\)"):
        build_data(DataOptions(name="digits", val_split=1.5))


def test_a_folder_takes_its_val_folder_or_a_val_split(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=4)
    bundle = build_data(DataOptions(name=str(root), image_size=8))
    assert bundle.val is None and "no val/ folder" in bundle.info["val"]
    carved = build_data(DataOptions(name=str(root), image_size=8, val_split=0.25, seed=5))
    assert (len(carved.train), len(carved.val)) == (6, 2)
    assert sorted(label for _, label in carved.val.samples) == [0, 1]
    assert not carved.val.train and carved.train.train
    for i in range(2):
        write_image(root / "val" / "dog" / f"{i}.png", 120)
    with_val = build_data(DataOptions(name=str(root), image_size=8))
    assert len(with_val.val) == 2 and len(with_val.train) == 8
    assert {label for _, label in with_val.val.samples} == {1}
    with pytest.raises(UserError, match="has a val/ folder and --val-split"):
        build_data(DataOptions(name=str(root), image_size=8, val_split=0.25))


# ------------------------------------------------------------------------------ augmentation
def _first(ds, epoch=0):
    sampler = EpochBatchSampler(len(ds), batch_size=len(ds), shuffle=False)
    sampler.set_epoch(epoch)
    return next(iter(make_loader(ds, sampler)))[0]


def test_synthetic_data_honours_augment_and_refuses_what_it_cannot_do():
    plain = build_data(DataOptions(name="synthetic", seed=3))
    flipped = build_data(DataOptions(name="synthetic", seed=3, augment="flip"))
    x0, x1 = _first(plain.train), _first(flipped.train)
    changed = (x0 != x1).flatten(1).any(dim=1)
    assert 0.4 < changed.float().mean() < 0.6  # about half the images flipped
    assert torch.equal(x1[changed], x0[changed].flip(-1))
    assert torch.equal(_first(flipped.test), _first(plain.test)), "test data is not augmented"
    with pytest.raises(UserError, match="rrc-flip crops images of varying size"):
        build_data(DataOptions(name="synthetic", augment="rrc-flip"))
    with pytest.raises(UserError, match="rrc-flip"):
        build_data(DataOptions(name="digits", augment="rrc-flip"))
    with pytest.raises(UserError, match="drop --channels"):
        build_data(DataOptions(name="digits", channels=3))


def test_data_on_device_refuses_rrc_flip_and_equals_the_stock_batches_after_a_resize(tmp_path):
    from torchstyle.data.device import DeviceBatches

    root = tmp_path / "photos"
    g = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for c, name in enumerate(("a", "b")):
            for i in range(4):
                arr = torch.randint(0, 200, (64, 64, 3), generator=g, dtype=torch.uint8) + 40 * c
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                from PIL import Image

                Image.fromarray(arr.numpy()).save(path)
    rrc = build_data(DataOptions(name=str(root), image_size=32, augment="rrc-flip"))
    with pytest.raises(UserError, match="rrc-flip crops the original images"):
        rrc.train.to_tensor_dataset()
    for policy in ("flip", "crop-flip"):
        bundle = build_data(DataOptions(name=str(root), image_size=32, augment=policy, seed=4))
        for split in (bundle.train, bundle.test):
            stock = EpochBatchSampler(8, batch_size=8, shuffle=True, seed=1)
            device = EpochBatchSampler(8, batch_size=8, shuffle=True, seed=1)
            stock.set_epoch(3)
            device.set_epoch(3)
            xs, ys = next(iter(make_loader(split, stock)))
            xd, yd = next(
                iter(DeviceBatches(split.to_tensor_dataset(), device, torch.device("cpu")))
            )
            assert torch.equal(xs, xd) and torch.equal(ys, yd), policy


# ------------------------------------------------------------------------------ pairs, layout
def test_digits_pairs_are_edges_and_digits_with_the_digits_splits():
    bundle = build_data(DataOptions(name="digits-pairs", layout="paired"))
    assert bundle.spec.layout == "paired" and bundle.spec.image_size == 32
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (1295, 142, 360)
    assert isinstance(bundle.train, TensorPairDataset)
    a, b = _pair_batch(bundle.test)
    assert a.shape == b.shape == (360, 1, 32, 32)
    digits = load_digits_split(32)
    assert torch.equal(b, digits.test.images)
    assert torch.equal(a, edges(b))
    assert a.min() >= -1 and a.max() <= 1 and not torch.equal(a, b)
    l1 = (a - b).abs().mean().item()
    assert l1 > 0.2, "the identity must not already solve the task"


def _pair_batch(ds):
    sampler = EpochBatchSampler(len(ds), batch_size=len(ds), shuffle=False)
    return next(iter(make_loader(ds, sampler)))


def test_flipped_pairs_flip_a_and_b_together():
    bundle = build_data(DataOptions(name="digits-pairs", layout="paired", augment="flip"))
    a, b = _pair_batch(bundle.train)
    plain_a, plain_b = bundle.train.a, bundle.train.b
    flipped = (a != plain_a).flatten(1).any(dim=1)
    assert flipped.any() and torch.equal((b != plain_b).flatten(1).any(dim=1), flipped)


@pytest.mark.parametrize(
    ("name", "layout", "needs"),
    [
        ("digits", "paired", "pass --data digits-pairs, or A|B image pairs: a folder with train/"),
        (
            "digits-pairs",
            "classes",
            "pass --data digits, or class-labelled images: a folder with train/<class>/",
        ),
    ],
)
def test_data_of_the_wrong_layout_is_refused_naming_what_is_needed(name, layout, needs):
    with pytest.raises(UserError) as info:
        build_data(DataOptions(name=name, layout=layout))
    message = str(info.value)
    assert "\n" not in message and f"needs {layout!r} data" in message and needs in message


def test_a_class_folder_given_to_a_paired_model_says_how_to_lay_it_out(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=1)
    with pytest.raises(UserError, match="not twice as wide as high"):
        build_data(DataOptions(name=str(root), layout="paired"))


# ------------------------------------------------------------------------------ test --data
def test_data_that_does_not_fit_the_run_is_refused_naming_the_difference(tmp_path):
    run = DataSpec(3, 8, 2, ("cat", "dog"))
    check_data_fits_run(DataSpec(3, 8, 2, ("cat", "dog")), run, "x", tmp_path)
    with pytest.raises(
        UserError, match="classes the run does not know: dok, kat; run classes it lacks: cat, dog"
    ):
        check_data_fits_run(DataSpec(3, 8, 2, ("dok", "kat")), run, "x", tmp_path)
    with pytest.raises(UserError, match=r"1-channel images but run .* 3-channel"):
        check_data_fits_run(DataSpec(1, 8, 2, ("cat", "dog")), run, "x", tmp_path)
    with pytest.raises(UserError, match="another order"):
        check_data_fits_run(DataSpec(3, 8, 2, ("dog", "cat")), run, "x", tmp_path)


def test_a_folder_labelled_with_a_runs_classes_keeps_the_runs_labels(tmp_path, caplog):
    root = make_image_folder(tmp_path / "data", classes=("cat", "fox"), per_class=1)
    with caplog.at_level(logging.WARNING):
        bundle = build_data(
            DataOptions(name=str(root), image_size=8, class_names=("cat", "dog", "fox"))
        )
    assert bundle.spec.class_names == ("cat", "dog", "fox")
    assert [label for _, label in bundle.test.samples] == [0, 2], "fox keeps the run's label"
    assert "no images of class(es) dog" in caplog.text
    with pytest.raises(UserError, match="different classes from the training split: fox"):
        build_data(DataOptions(name=str(root), image_size=8, class_names=("cat", "dog")))


# ------------------------------------------------------------------------------ --data file.py:fn
_DATA_FILE = """
import torch
from torch.utils.data import IterableDataset, TensorDataset

def _tensors(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 12, 12, generator=g), torch.arange(n) % 4

def as_dict():
    return {"train": TensorDataset(*_tensors(40, 0)), "test": TensorDataset(*_tensors(8, 1)),
            "classes": ["w", "x", "y", "z"]}

def as_tuple(options):
    assert options.seed == 7
    return TensorDataset(*_tensors(40, 0)), TensorDataset(*_tensors(4, 2)), TensorDataset(*_tensors(8, 1))

class Stream(IterableDataset):
    def __iter__(self):
        x, y = _tensors(10, 3)
        yield from zip(x, y)

def streams():
    return {"train": Stream(), "test": Stream()}

def pairs():
    x, _ = _tensors(10, 4)
    return TensorDataset(x, x.flip(-1)), TensorDataset(x, x)

def broken():
    return [1, 2, 3, 4]

def raises():
    raise RuntimeError("no network here")
"""


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "elsewhere" / "mydata.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(_DATA_FILE))
    return path


def test_a_data_function_in_a_file_returns_the_splits(data_file):
    bundle = build_data(DataOptions(name=f"{data_file}:as_dict"))
    assert (len(bundle.train), len(bundle.test), bundle.val) == (40, 8, None)
    assert bundle.spec == DataSpec(3, 12, 4, ("w", "x", "y", "z"), "classes")
    with_val = build_data(DataOptions(name=f"{data_file}:as_tuple", seed=7))
    assert (len(with_val.train), len(with_val.val), len(with_val.test)) == (40, 4, 8)
    assert with_val.spec.class_names == ("0", "1", "2", "3"), "counted from the labels"
    carved = build_data(DataOptions(name=f"{data_file}:as_dict", val_split=0.2))
    assert (len(carved.train), len(carved.val)) == (32, 8)


def test_a_data_function_may_return_iterable_and_paired_datasets(data_file):
    stream = build_data(DataOptions(name=f"{data_file}:streams"))
    assert stream.spec.num_classes == 4 and stream.spec.channels == 3
    with pytest.raises(UserError, match="needs a map-style training split"):
        build_data(DataOptions(name=f"{data_file}:streams", val_split=0.2))
    pairs = build_data(DataOptions(name=f"{data_file}:pairs", layout="paired"))
    assert pairs.spec.layout == "paired" and pairs.spec.num_classes == 0
    with pytest.raises(UserError, match="needs 'classes' data"):
        build_data(DataOptions(name=f"{data_file}:pairs"))


def test_a_data_function_in_a_module_is_found_on_the_path(data_file, monkeypatch):
    monkeypatch.syspath_prepend(str(data_file.parent))
    assert len(build_data(DataOptions(name="mydata:as_dict")).train) == 40


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("{dir}/nope.py:f", "no such file"),
        ("{file}:missing", "has no function 'missing'; it defines: as_dict"),
        ("{file}:broken", "the function returned list"),
        ("{file}:raises", "calling it raised RuntimeError: no network here at .*mydata.py:"),
        ("nosuchmodule_xyz:f", "no module named 'nosuchmodule_xyz'"),
    ],
)
def test_a_bad_data_function_gets_a_one_line_error(data_file, reference, message):
    name = reference.format(dir=data_file.parent, file=data_file)
    with pytest.raises(UserError, match=message) as info:
        build_data(DataOptions(name=name))
    assert "\n" not in str(info.value)


def _paired_folder(root, n=4, splits=("train", "test")):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in splits:
        for i in range(n):
            arr = torch.randint(0, 256, (8, 16, 3), generator=g, dtype=torch.uint8)
            path = root / split / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr.numpy()).save(path)
    return root


def test_a_paired_folder_takes_augment_val_folder_and_val_split(tmp_path):
    root = _paired_folder(tmp_path / "pairs")
    plain = build_data(DataOptions(name=str(root), layout="paired", image_size=8, augment="none"))
    assert not any(plain.train.flipped(i, e) for i in range(4) for e in range(4))
    flipping = build_data(DataOptions(name=str(root), layout="paired", image_size=8))
    assert any(flipping.train.flipped(i, e) for i in range(4) for e in range(4))
    with pytest.raises(UserError, match=r"crop-flip does not apply to A\|B pairs"):
        build_data(DataOptions(name=str(root), layout="paired", augment="crop-flip"))
    carved = build_data(DataOptions(name=str(root), layout="paired", image_size=8, val_split=0.25))
    assert (len(carved.train), len(carved.val)) == (3, 1) and not carved.val.hflip
    _paired_folder(root, n=2, splits=("val",))
    with_val = build_data(DataOptions(name=str(root), layout="paired", image_size=8))
    assert (len(with_val.train), len(with_val.val), len(with_val.test)) == (4, 2, 4)


def test_a_data_function_refuses_flags_it_cannot_honour(data_file):
    with pytest.raises(UserError, match="--augment flip does not apply"):
        build_data(DataOptions(name=f"{data_file}:as_dict", augment="flip"))
    with pytest.raises(UserError, match="yields 3-channel images, not --channels 1"):
        build_data(DataOptions(name=f"{data_file}:as_dict", channels=1))
