"""A data source builds only the splits it is asked for, and `torchstyle test` asks for the
test split alone: it neither lists, checks nor decodes the training images.

Generated from the registry (every named source), plus folders, A|B folders, a user's data
function and CIFAR-10 from a local ``cifar-10-batches-py`` written here.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import textwrap

import pytest
import torch

from tests.data.helpers import make_image_folder, write_fake_cifar10, write_image
from torchstyle.data import DATA_SOURCES, DataOptions, build_data
from torchstyle.errors import UserError

# The smallest options each named source takes (the tests compare two builds of each).
SMALL: dict[str, dict[str, object]] = {"stdlib": {"image_size": 16}}


def _options(name: str, tmp_path, **extra) -> DataOptions:
    layout = DATA_SOURCES[name].layout
    settings = {**SMALL.get(name, {}), **extra}
    if name == "cifar10":
        settings["data_dir"] = str(write_fake_cifar10(tmp_path / "cifar"))
    return DataOptions(name=name, layout=layout, **settings)  # type: ignore[arg-type]


def _first(dataset) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(t) for t in dataset[0])


@pytest.mark.parametrize("name", list(DATA_SOURCES))
def test_every_source_builds_just_the_split_asked_for(name, tmp_path):
    whole = build_data(_options(name, tmp_path))
    test = build_data(_options(name, tmp_path, splits=("test",)))
    assert test.train is None and test.val is None and test.test is not None
    assert test.spec == whole.spec
    assert len(test.test) == len(whole.test)
    for a, b in zip(_first(test.test), _first(whole.test), strict=True):
        assert torch.equal(a, b)
    train = build_data(_options(name, tmp_path, splits=("train",)))
    assert train.test is None and train.val is None and train.train is not None
    assert len(train.train) == len(whole.train)


def test_a_folder_evaluated_alone_never_reads_train(tmp_path, caplog):
    root = make_image_folder(tmp_path / "data")
    for image in (root / "train").rglob("*.png"):
        image.write_bytes(b"not an image")  # every training image is garbage
    caplog.set_level(logging.INFO)
    options = DataOptions(name=str(root), splits=("test",), skip_bad_images=True)
    bundle = build_data(options)
    assert bundle.train is None and len(bundle.test) == 6
    assert bundle.spec.class_names == ("cat", "dog")  # train/'s folder names, no image read
    assert "train" not in caplog.text
    with pytest.raises(UserError, match="train"):  # what a build of every split says
        build_data(DataOptions(name=str(root), skip_bad_images=True))


def test_a_held_out_test_split_is_drawn_from_the_listing_alone(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=5)
    (root / "test").rename(tmp_path / "elsewhere")
    whole = build_data(DataOptions(name=str(root), test_split=0.4, seed=2))
    held = sorted(p for p, _ in whole.test.samples)
    kept = {p for p, _ in whole.train.samples}
    for path in kept:
        path.write_bytes(b"garbage")  # the images trained on are no longer readable
    alone = build_data(DataOptions(name=str(root), test_split=0.4, seed=2, splits=("test",)))
    assert sorted(p for p, _ in alone.test.samples) == held and alone.train is None


def test_an_ab_folder_evaluated_alone_never_reads_train(tmp_path):
    import numpy as np
    from PIL import Image

    root = tmp_path / "pairs"
    for split in ("train", "test"):
        for i in range(2):
            (root / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 16, 3), 60 * i, np.uint8)).save(root / split / f"{i}.png")
    for image in (root / "train").glob("*.png"):
        image.write_bytes(b"garbage")
    bundle = build_data(DataOptions(name=str(root), layout="paired", splits=("test",)))
    assert bundle.train is None and len(bundle.test) == 2


DATA_FUNCTION = """
import json
import os

import torch
from torch.utils.data import TensorDataset


def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 4, 4, generator=g), torch.arange(n) % 3)


def make(options):
    with open(os.environ["SPLITS_LOG"], "a") as f:
        f.write(json.dumps(list(options.splits)) + "\\n")
    splits = {"classes": ["a", "b", "c"]}
    if options.wants("train"):
        splits["train"] = _split(24, 0)
    if options.wants("test"):
        splits["test"] = _split(12, 1)
    return splits
"""


def _test_args(run, **extra) -> argparse.Namespace:
    values = {"checkpoint": "best", "device": "cpu", "batch_size": 256, "data": None}
    return argparse.Namespace(run=str(run), json=True, **{**values, **extra})


def test_a_data_function_is_asked_for_every_split_to_train_and_the_test_split_to_test(
    tmp_path, monkeypatch
):
    from torchstyle.commands import run_test
    from torchstyle.config import TrainConfig
    from torchstyle.engine.trainer import Trainer

    (tmp_path / "mydata.py").write_text(textwrap.dedent(DATA_FUNCTION))
    calls = tmp_path / "splits.jsonl"
    monkeypatch.setenv("SPLITS_LOG", str(calls))
    run = tmp_path / "run"
    cfg = TrainConfig(
        model="mlp", data=f"{tmp_path / 'mydata.py'}:make", epochs=1, max_steps=1,
        batch_size=8, run_dir=str(run), progress=False,
    )  # fmt: skip
    Trainer(cfg).fit()
    out = run_test(_test_args(run))
    assert json.loads(out.stdout)["samples"] == 12
    asked = [json.loads(line) for line in calls.read_text().splitlines()]
    assert asked == [["train", "val", "test"], ["test"]]


def test_torchstyle_test_reads_only_the_test_split_of_its_folder(tmp_path, caplog):
    """Trained with --skip-bad-images on a folder, then train/ becomes garbage: `test RUN`
    gives the figures it gave before and logs nothing about train."""
    from torchstyle.commands import run_test
    from torchstyle.config import TrainConfig
    from torchstyle.engine.trainer import Trainer

    root = make_image_folder(tmp_path / "data")
    write_image(root / "train" / "cat" / "extra.png", 10)
    run = tmp_path / "run"
    cfg = TrainConfig(
        model="mlp", data=str(root), image_size=8, epochs=1, max_steps=1, batch_size=4,
        skip_bad_images=True, run_dir=str(run), progress=False,
    )  # fmt: skip
    Trainer(cfg).fit()
    before = json.loads(run_test(_test_args(run)).stdout)
    for image in (root / "train").rglob("*.png"):
        image.write_bytes(b"\x89PNG truncated")
    caplog.set_level(logging.INFO)
    after = json.loads(run_test(_test_args(run)).stdout)
    assert after == before and after["samples"] == 6
    assert "train" not in caplog.text, caplog.text


# ------------------------------------------------------------------------------ CIFAR-10
def test_cifar10_reads_a_local_batches_folder_without_the_network(tmp_path):
    root = write_fake_cifar10(tmp_path, per_batch=4, test=10)
    bundle = build_data(DataOptions(name="cifar10", data_dir=str(root), val_split=0.0))
    assert len(bundle.train) == 20 and len(bundle.test) == 10 and bundle.val is None
    assert bundle.spec.class_names[:3] == ("airplane", "automobile", "bird")
    x, y = bundle.test.images, bundle.test.labels
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0, 5, 5].long(), y * 20)  # red plane first, labels in order
    assert torch.equal(x[:, 2, 0, 0], torch.full((10,), 255, dtype=torch.uint8))


def test_a_cifar10_file_that_is_not_a_batch_is_refused_without_running_it(tmp_path):
    root = write_fake_cifar10(tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(UserError, match="test_batch is not a CIFAR-10 batch"):
        build_data(DataOptions(name="cifar10", data_dir=str(root), splits=("test",)))
    assert not marker.exists()
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3 is missing"):
        build_data(DataOptions(name="cifar10", data_dir=str(root), splits=("train",)))


def test_a_source_that_leaves_out_a_split_asked_for_is_refused_in_one_line(tmp_path):
    from torchstyle.config import TrainConfig
    from torchstyle.data import DataBundle, register_source
    from torchstyle.data.digits import load_digits_split
    from torchstyle.engine.run import build_run

    @register_source("no-test-split", description="train only, for a test")
    def no_test(options: DataOptions) -> DataBundle:
        digits = load_digits_split(splits=("train",))
        return DataBundle(train=digits.train, test=None, spec=digits.spec)

    try:
        with pytest.raises(UserError, match="gave no test split"):
            build_data(DataOptions(name="no-test-split", splits=("test",)))
        assert build_data(DataOptions(name="no-test-split", splits=("train",))).test is None
    finally:
        DATA_SOURCES.pop("no-test-split")
    only_test = load_digits_split(splits=("test",))
    cfg = TrainConfig(model="mlp", run_dir=str(tmp_path / "run"), progress=False)
    with pytest.raises(UserError, match="needs a train split"):
        build_run(cfg, data=only_test)
