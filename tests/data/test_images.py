"""Image folders as people have them: PNG-only and mixed batches under --decode gpu, 16-bit
PNGs, EXIF orientation, hidden files, classes without test images, huge images, channels
and sizes decided from the whole dataset. Every file is made by the test."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.helpers import (
    asymmetric,
    make_image_folder,
    write_gradient16,
    write_huge_png,
    write_image,
    write_oriented,
)
from torchstyle.data import DataOptions, EpochBatchSampler, build_data, make_loader
from torchstyle.data import images as images_module
from torchstyle.data.folder import ImageFolderDataset, load_image
from torchstyle.data.images import BadImageError, read_image
from torchstyle.data.jpeg import DecodeOnDevice, EncodedImageFolder, collate_encoded
from torchstyle.errors import UserError

CPU = torch.device("cpu")


def _first_batch(split, *, gpu: bool, batch_size: int = 16):
    sampler = EpochBatchSampler(len(split), batch_size=batch_size, shuffle=False)
    if not gpu:
        return next(iter(make_loader(split, sampler)))
    loader = make_loader(EncodedImageFolder(split), sampler, collate_fn=collate_encoded)
    return DecodeOnDevice(split, CPU)(next(iter(loader)))


def _uint8(x: torch.Tensor) -> np.ndarray:
    """A ``(C, H, W)`` float image in [-1, 1] back to ``(H, W, C)`` uint8."""
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("kind", ["png-only", "mixed"])
def test_decode_gpu_handles_batches_without_a_jpeg_and_mixed_ones(tmp_path, kind):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, name in enumerate(("a", "b")):
            for i in range(3):
                arr = (rng.integers(0, 64, (20, 20, 3)) + 80 * c).astype(np.uint8)
                suffix = ".jpg" if kind == "mixed" and i == 0 else ".png"
                path = tmp_path / split / name / f"{i}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(path, **({"quality": 95} if suffix == ".jpg" else {}))
    bundle = build_data(DataOptions(name=str(tmp_path), image_size=16, augment="flip"))
    for split in (bundle.train, bundle.test):
        xs, ys = _first_batch(split, gpu=False)
        xd, yd = _first_batch(split, gpu=True)
        assert xd.shape == xs.shape == (6, 3, 16, 16) and torch.equal(ys, yd)
        if kind == "png-only":  # decoded by PIL on both paths: the very same pixels
            assert torch.equal(xs, xd)
        else:
            assert (xs - xd).abs().mean() < 0.02


def test_sixteen_bit_pngs_keep_their_gray_levels_on_every_path(tmp_path):
    for split in ("train", "test"):
        for name in ("a", "b"):
            write_gradient16(tmp_path / split / name / "g.png")
    assert Image.open(tmp_path / "train" / "a" / "g.png").mode == "I;16"
    bundle = build_data(DataOptions(name=str(tmp_path), image_size=8, augment="none"))
    assert bundle.spec.channels == 1
    raw = read_image(tmp_path / "train" / "a" / "g.png", 1)
    assert raw.float().mean().item() == pytest.approx(127.5, abs=0.01)
    assert raw.max().item() == 255 and raw.min().item() == 0
    # training, test (stock and --decode gpu) and predict's loader: mean 0 in [-1, 1]
    for split in (bundle.train, bundle.test):
        for gpu in (False, True):
            x, _ = _first_batch(split, gpu=gpu)
            assert x.mean().item() == pytest.approx(0.0, abs=0.02), (split.train, gpu)
    x = load_image(tmp_path / "test" / "a" / "g.png", 3, 8)
    assert x.mean().item() == pytest.approx(0.0, abs=0.02)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_exactly_on_the_cpu_path(tmp_path, orientation):
    shown = write_oriented(tmp_path / "o.png", orientation)
    got = read_image(tmp_path / "o.png", 3).permute(1, 2, 0).numpy()
    assert np.array_equal(got, shown)


def test_exif_rotated_jpeg_is_read_as_displayed_on_cpu_and_gpu_paths(tmp_path):
    stored = asymmetric(16, 24)
    for split in ("train", "test"):
        shown = write_oriented(tmp_path / split / "a" / "phone.jpg", 6, stored)
    assert shown.shape == (24, 16, 3), "orientation 6 shows the 24-wide image upright"
    ds = ImageFolderDataset(
        [(tmp_path / "test" / "a" / "phone.jpg", 0)], channels=3, image_size=16, train=False
    )
    # image_size 16 = the displayed width: the centre crop takes rows 4..20 of the shown image
    expected = shown[4:20].astype(np.float64)
    for gpu in (False, True):
        x, _ = _first_batch(ds, gpu=gpu)
        got = _uint8(x[0]).astype(np.float64)
        assert np.abs(got - expected).mean() < 3, gpu  # JPEG: decoders may differ by a level
        sideways = np.rot90(stored, 1)[4:20].astype(np.float64)  # as the file stores it, turned
        assert np.abs(got - sideways).mean() > 30


def test_hidden_files_and_folders_are_skipped(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=2)
    (root / "train" / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")
    write_image(root / "train" / "dog" / ".thumbnails" / "t.png", 7)
    write_image(root / "test" / ".DS_Store_dir" / "x.png", 7)  # a hidden class folder
    (root / "test" / "dog" / ".DS_Store").write_bytes(b"Bud1 junk")
    bundle = build_data(DataOptions(name=str(root), image_size=8))
    paths = [p for split in (bundle.train, bundle.test) for p, _ in split.samples]
    assert len(paths) == 8 and not any("/." in str(p) for p in paths)
    assert bundle.spec.class_names == ("cat", "dog")
    for split in (bundle.train, bundle.test):  # every sample reads
        x, _ = _first_batch(split, gpu=False)
        assert x.shape[0] == 4


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_a_class_without_test_images_is_allowed_with_a_warning(tmp_path, caplog, how):
    root = make_image_folder(tmp_path / "data", classes=("ant", "bee", "cat"), per_class=2)
    for f in (root / "test" / "bee").iterdir():
        f.unlink()
    if how == "missing":
        (root / "test" / "bee").rmdir()
    with caplog.at_level(logging.WARNING):
        bundle = build_data(DataOptions(name=str(root), image_size=8))
    assert bundle.spec.class_names == ("ant", "bee", "cat")
    assert sorted({label for _, label in bundle.test.samples}) == [0, 2], "cat keeps label 2"
    assert "no images of class(es) bee" in caplog.text and "test" in caplog.text


def test_a_class_without_training_images_is_refused_naming_the_fix(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=1)
    (root / "train" / "eel").mkdir()
    with pytest.raises(UserError, match=r"train/eel holds no images.*add images or remove"):
        build_data(DataOptions(name=str(root), image_size=8))


def test_channels_come_from_every_image_and_are_logged(tmp_path, caplog):
    root = make_image_folder(tmp_path / "data", per_class=3)
    write_image(root / "train" / "cat" / "gray.png", 90, mode="L")  # one gray among RGB
    with caplog.at_level(logging.INFO):
        bundle = build_data(DataOptions(name=str(root), image_size=8))
    assert bundle.spec.channels == 3 and "channels 3" in caplog.text
    assert "1 grayscale" in bundle.info["channels"]
    gray_index = [str(p) for p, _ in bundle.train.samples].index(str(root / "train/cat/gray.png"))
    x, _ = bundle.train[gray_index]
    assert x.shape == (3, 8, 8) and torch.equal(x[0], x[1])  # converted to RGB

    gray_root = make_image_folder(tmp_path / "gray", per_class=2, mode="L")
    assert build_data(DataOptions(name=str(gray_root), image_size=8)).spec.channels == 1
    forced = build_data(DataOptions(name=str(root), image_size=8, channels=1))
    assert forced.spec.channels == 1 and forced.train[0][0].shape == (1, 8, 8)
    with pytest.raises(UserError, match="1 \\(grayscale\\) or 3 \\(RGB\\) channels, not 2"):
        build_data(DataOptions(name=str(root), image_size=8, channels=2))


def test_default_image_size_is_measured_and_capped(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "test"):
        for name in ("a", "b"):
            for i, (w, h) in enumerate(((40, 30), (50, 20), (28, 60))):
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (w, h), (9, 9, 9)).save(path)
    bundle = build_data(DataOptions(name=str(root)))
    assert bundle.spec.image_size == 28  # median of the shorter sides 30, 20, 28
    assert bundle.train[0][0].shape == (3, 28, 28) and "median" in bundle.info["image_size"]
    big = tmp_path / "big"
    for split in ("train", "test"):
        Image.new("L", (300, 260)).save(_mk(big / split / "a" / "0.png"))
    assert build_data(DataOptions(name=str(big))).spec.image_size == 224
    assert build_data(DataOptions(name=str(big), image_size=256)).spec.image_size == 256


def _mk(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_evaluation_resizes_and_centre_crops(tmp_path):
    arr = np.zeros((10, 30, 3), dtype=np.uint8)
    arr[:, :10] = 250  # left third bright, the rest dark
    Image.fromarray(arr).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", 3, 10)
    assert x.shape == (3, 10, 10)
    assert x.max().item() == pytest.approx(-1.0)  # the centre square holds only the dark part


def test_an_image_over_the_pixel_limit_is_a_bad_image(tmp_path, caplog):
    root = make_image_folder(tmp_path / "data", per_class=2)
    write_huge_png(root / "train" / "cat" / "huge.png")
    with pytest.raises(BadImageError) as info:
        build_data(DataOptions(name=str(root), image_size=8))
    message = str(info.value)
    assert "\n" not in message and "huge.png" in message and "14000x14000" not in message
    assert "196,000,000 pixels" in message and "89,478,485" in message
    assert "--skip-bad-images" in message
    with caplog.at_level(logging.WARNING):
        bundle = build_data(DataOptions(name=str(root), image_size=8, skip_bad_images=True))
    assert len(bundle.train) == 4 and "skipped 1 unreadable images" in caplog.text
    with pytest.raises(BadImageError, match="pixels, over the limit"):
        load_image(root / "train" / "cat" / "huge.png", 3, 8, hint="remove it")


def test_decode_gpu_worker_refuses_an_image_over_the_limit(tmp_path, monkeypatch):
    root = tmp_path / "jpg"
    for split in ("train", "test"):
        for name in ("a", "b"):
            Image.fromarray(asymmetric()).save(_mk(root / split / name / "0.jpg"))
    bundle = build_data(DataOptions(name=str(root), image_size=8))
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 100)  # 24x16 is over it
    with pytest.raises(BadImageError, match="24x16 = 384 pixels, over the limit of 100"):
        EncodedImageFolder(bundle.test)[0]
    skipping = EncodedImageFolder(bundle.test, skip_bad_images=True)
    sampler = EpochBatchSampler(2, batch_size=2, shuffle=False)
    decoder = DecodeOnDevice(bundle.test, CPU, skip_bad_images=True)
    x, y = decoder(next(iter(make_loader(skipping, sampler, collate_fn=collate_encoded))))
    assert x.shape == (0, 3, 8, 8) and y.shape == (0,) and decoder.skipped == 2
