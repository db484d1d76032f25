"""Device-side data: keyed augmentation draws, torchvision semantics, --data-on-device, --decode gpu.

Everything runs on the CPU here: the device paths are the same code on any device.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from tests.conftest import run_cli
from torchstyle.config import TrainConfig
from torchstyle.data import (
    DataOptions,
    EpochBatchSampler,
    TensorImageDataset,
    build_data,
    make_loader,
)
from torchstyle.data.augment import (
    flip_mask,
    keyed_uniform,
    pad_crop,
    resized_crop,
    rrc_params,
    transform_images,
)
from torchstyle.data.device import DeviceBatches
from torchstyle.data.jpeg import DecodeOnDevice, EncodedImageFolder, collate_encoded
from torchstyle.engine.trainer import Trainer

N = 20_000


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, grid, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, grid, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


def test_keyed_draws_are_uniform_reproducible_and_independent():
    idx = torch.arange(N)
    u = keyed_uniform(7, 3, idx, 1)
    assert torch.equal(u, keyed_uniform(7, 3, idx, 1))
    assert torch.equal(u[5000:6000], keyed_uniform(7, 3, idx[5000:6000], 1)), (
        "a draw depends on its key only"
    )
    assert ks_distance(u, torch.rand(N, generator=torch.Generator().manual_seed(0))) < 0.02
    for other in (
        keyed_uniform(8, 3, idx, 1),
        keyed_uniform(7, 4, idx, 1),
        keyed_uniform(7, 3, idx, 2),
    ):
        corr = torch.corrcoef(torch.stack([u, other]))[0, 1]
        assert abs(float(corr)) < 0.03
    # Neighbouring indices are not correlated either.
    assert abs(float(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1])) < 0.03


def test_flip_probability_is_one_half():
    flips = flip_mask(1, 0, torch.arange(N)).double()
    # Binomial(N, 1/2): 4 standard deviations.
    assert abs(flips.mean().item() - 0.5) < 4 * math.sqrt(0.25 / N)


def test_pad_crop_matches_torchvision_crop_of_the_padded_image_with_uniform_offsets():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(64, 3, 12, 12, generator=g)
    idx = torch.arange(100, 164)
    out = pad_crop(images, 5, 2, idx, pad=3)
    top = (keyed_uniform(5, 2, idx, 2) * 7).long()
    left = (keyed_uniform(5, 2, idx, 3) * 7).long()
    for i in range(64):
        padded = TF.pad(images[i], [3, 3, 3, 3])
        expected = TF.crop(padded, int(top[i]), int(left[i]), 12, 12)
        torch.testing.assert_close(out[i], expected)
    offsets = (keyed_uniform(5, 2, torch.arange(N), 2) * 7).long()
    counts = torch.bincount(offsets, minlength=7).double()
    chi2 = float(((counts - N / 7) ** 2 / (N / 7)).sum())
    assert chi2 < 22.5, chi2  # chi-square, 6 degrees of freedom, p = 0.001


@pytest.mark.parametrize(("height", "width"), [(300, 300), (200, 500), (600, 150)])
def test_random_resized_crop_boxes_follow_torchvision_distribution(height, width):
    n = 4000
    ours = rrc_params(torch.full((n,), height), torch.full((n,), width), 3, 0, torch.arange(n))
    torch.manual_seed(0)
    theirs = torch.tensor(
        [
            RandomResizedCrop.get_params(torch.empty(1, height, width), (0.08, 1.0), (3 / 4, 4 / 3))
            for _ in range(n)
        ]
    )
    for boxes in (ours, theirs):
        t, left, h, w = boxes.unbind(1)
        assert (
            (t >= 0).all()
            and (left >= 0).all()
            and (t + h <= height).all()
            and (left + w <= width).all()
        )
    area = lambda b: (b[:, 2] * b[:, 3]).double() / (height * width)  # noqa: E731
    ratio = lambda b: (b[:, 3].double() / b[:, 2]).log()  # noqa: E731
    centre_y = lambda b: (b[:, 0] + b[:, 2] / 2).double() / height  # noqa: E731
    # Two-sample KS at alpha = 0.001 for n = m = 4000: 1.95 * sqrt(2 / 4000).
    limit = 1.95 * math.sqrt(2 / n)
    for stat in (area, ratio, centre_y):
        assert ks_distance(stat(ours), stat(theirs)) < limit


def test_resized_crop_matches_torchvision_pixels():
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 40, 60, generator=g), torch.rand(3, 33, 21, generator=g)]
    boxes = torch.tensor([[5, 7, 20, 30], [0, 0, 33, 21]])
    out = resized_crop(images, boxes, 16)
    for img, (t, left, h, w), o in zip(images, boxes.tolist(), out, strict=True):
        expected = TF.resized_crop(img, t, left, h, w, [16, 16], antialias=True)
        torch.testing.assert_close(o, expected, atol=1e-5, rtol=1e-5)


def test_transform_is_the_same_one_at_a_time_and_batched():
    g = torch.Generator().manual_seed(2)
    images = [
        torch.randint(0, 256, (3, 30 + i, 40 - i), dtype=torch.uint8, generator=g) for i in range(6)
    ]
    idx = torch.arange(10, 16)
    for policy in ("none", "flip", "crop-flip", "rrc-flip"):
        batched = transform_images(images, policy, 16, 4, 1, idx, train=True)
        single = torch.cat(
            [
                transform_images([im], policy, 16, 4, 1, idx[i : i + 1], train=True)
                for i, im in enumerate(images)
            ]
        )
        torch.testing.assert_close(batched, single)
        assert batched.min() >= -1 and batched.max() <= 1


def test_device_batches_equal_the_stock_batches():
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (50, 3, 16, 16), dtype=torch.uint8, generator=g)
    ds = TensorImageDataset(images, torch.arange(50) % 10, augment="crop-flip", seed=9)
    stock_sampler = EpochBatchSampler(50, batch_size=8, shuffle=True, seed=2)
    device_sampler = EpochBatchSampler(50, batch_size=8, shuffle=True, seed=2)
    stock = make_loader(ds, stock_sampler)
    device = DeviceBatches(ds, device_sampler, torch.device("cpu"))
    for epoch, start in ((0, 0), (3, 2)):
        stock_sampler.set_epoch(epoch, start)
        device_sampler.set_epoch(epoch, start)
        a, b = list(stock), list(device)
        assert len(a) == len(b) == 7 - start
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_data_on_device_trains_digits_to_the_stock_accuracy(tmp_path):
    results = {}
    for on_device in (False, True):
        cfg = TrainConfig(
            run_dir=str(tmp_path / str(on_device)),
            epochs=3,
            progress=False,
            data_on_device=on_device,
            model_args={"width": 8},
        )
        results[on_device] = Trainer(cfg).fit().metrics
    assert results[True]["accuracy"] >= 0.8  # 3 short epochs of a tiny model
    assert results[True] == pytest.approx(results[False], abs=1e-6)


def _jpeg_folder(root, n=4, corrupt=None):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, name in enumerate(("a", "b")):
            for i in range(n):
                h, w = 24 + 4 * i, 40 - 4 * i
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) // 4 + 60 * c
                path = root / split / name / f"{i}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr.astype(np.uint8)).save(path, quality=95)
    if corrupt:
        bad = root / "train" / "b" / "1.jpg"
        bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 3])
        return bad
    return root


def test_decode_gpu_path_gives_the_stock_batches(tmp_path):
    root = _jpeg_folder(tmp_path / "jpg")
    for policy in ("flip", "rrc-flip"):
        bundle = build_data(DataOptions(name=str(root), image_size=16, augment=policy, seed=5))
        for split in (bundle.train, bundle.test):
            stock_sampler = EpochBatchSampler(len(split), batch_size=8, shuffle=True, seed=1)
            stock_sampler.set_epoch(2)
            (xs, ys) = next(iter(make_loader(split, stock_sampler)))
            enc_sampler = EpochBatchSampler(len(split), batch_size=8, shuffle=True, seed=1)
            enc_sampler.set_epoch(2)
            encoded = make_loader(
                EncodedImageFolder(split), enc_sampler, collate_fn=collate_encoded
            )
            xd, yd = DecodeOnDevice(split, torch.device("cpu"))(next(iter(encoded)))
            assert torch.equal(ys, yd)
            # PIL and torchvision decode JPEG with libjpeg; tiny IDCT differences at most.
            assert (xs - xd).abs().mean() < 0.02, (policy, (xs - xd).abs().mean())


def test_corrupt_jpeg_gives_the_same_error_in_both_paths(tmp_path):
    bad = _jpeg_folder(tmp_path / "jpg", corrupt=True)
    root = tmp_path / "jpg"
    common = (
        "train",
        "--data",
        str(root),
        "--image-size",
        "16",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--model-arg",
        "width=8",
        "--no-progress",
    )
    errors = []
    for decode in ("cpu", "gpu"):
        proc = run_cli(*common, "--decode", decode, "--run-dir", str(tmp_path / decode))
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        line = next(line for line in proc.stderr.splitlines() if "error:" in line)
        assert f"cannot read image {bad}:" in line and "--skip-bad-images" in line
        errors.append(line.split(f"{bad}:")[0])
    assert errors[0] == errors[1]
    proc = run_cli(
        *common, "--decode", "gpu", "--skip-bad-images", "--run-dir", str(tmp_path / "skip")
    )
    assert proc.returncode == 0 and "skipped 1 unreadable images" in proc.stderr


def test_decode_gpu_refuses_tensor_datasets(tmp_path):
    proc = run_cli("train", "--decode", "gpu", "--run-dir", str(tmp_path / "r"), "--no-progress")
    assert proc.returncode == 2 and "--decode gpu decodes image files" in proc.stderr


def test_config_offers_exactly_the_augmentation_policies_there_are():
    from torchstyle.config import AUGMENTS as FLAG_CHOICES
    from torchstyle.data.augment import AUGMENTS

    assert FLAG_CHOICES == AUGMENTS
