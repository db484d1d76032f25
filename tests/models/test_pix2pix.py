"""pix2pix: the paired folder source, the model's phases and contract, and a CLI run end to end."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchstyle.data import DataOptions, EpochBatchSampler, build_data, make_loader
from torchstyle.data.folder import BadImageError
from torchstyle.data.paired import PairedImageDataset, build_paired
from torchstyle.errors import UserError
from torchstyle.models import create_model, get_model_class
from torchstyle.models.base import StepModule
from torchstyle.models.pix2pix import Pix2Pix
from torchstyle.nn.errors import ArgumentError

SIZE = 16  # side of each half: the files are SIZE high and 2 * SIZE wide
N_TRAIN, N_TEST = 12, 4
TINY = {"ngf": 8, "ndf": 8, "n_blocks": 1, "image_size": SIZE}


def make_pair(rng: np.random.Generator, mode: str = "RGB") -> np.ndarray:
    """A 4x4 grid of random blocks as A, its negative as B, side by side: ``(S, 2S[, 3])``."""
    shape = (4, 4) if mode == "L" else (4, 4, 3)
    blocks = rng.integers(0, 256, size=shape, dtype=np.uint8)
    a = blocks.repeat(SIZE // 4, axis=0).repeat(SIZE // 4, axis=1)  # (S, S[, 3])
    return np.concatenate([a, 255 - a], axis=1)  # (S, 2S[, 3])


def write_pairs(root: Path, *, mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(make_pair(rng, mode), mode=mode).save(root / split / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "data")


@pytest.fixture
def pairs_copy(pairs_dir, tmp_path) -> Path:
    """A copy a test may break."""
    return Path(shutil.copytree(pairs_dir, tmp_path / "data"))


def paired(path: Path, **kwargs) -> DataOptions:
    return DataOptions(name=str(path), layout="paired", **kwargs)


def pixels(path: Path) -> torch.Tensor:
    """The file's pixels in [-1, 1] as ``(C, S, 2S)``."""
    with Image.open(path) as img:
        x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)  # (C, S, 2S)
    return x.float() / 127.5 - 1.0


# ------------------------------------------------------------------------------- the dataset
def test_pairs_split_into_input_left_and_target_right(pairs_dir):
    bundle = build_data(paired(pairs_dir, image_size=SIZE))
    assert isinstance(bundle.train, PairedImageDataset)
    assert (len(bundle.train), len(bundle.test)) == (N_TRAIN, N_TEST)
    assert (bundle.spec.channels, bundle.spec.image_size) == (3, SIZE)
    assert (bundle.spec.num_classes, bundle.spec.class_names) == (0, ())
    a, b = bundle.test[1]
    assert a.shape == b.shape == (3, SIZE, SIZE) and a.dtype == torch.float32
    full = pixels(pairs_dir / "test" / "001.png")
    torch.testing.assert_close(a, full[..., :SIZE])
    torch.testing.assert_close(b, full[..., SIZE:])
    torch.testing.assert_close(b, -a)  # B = 255 - A
    assert a.min() >= -1 and a.max() <= 1


def test_default_size_is_32_and_grayscale_gives_one_channel(tmp_path):
    bundle = build_paired(paired(write_pairs(tmp_path / "gray", mode="L")))
    assert (bundle.spec.channels, bundle.spec.image_size) == (1, 32)
    a, b = bundle.train[0]
    assert a.shape == b.shape == (1, 32, 32)


def test_training_flip_is_keyed_on_epoch_and_applied_to_both_halves(pairs_dir):
    bundle = build_paired(paired(pairs_dir, image_size=SIZE, seed=3))
    train = bundle.train
    assert train.epoch_aware
    draws = {(i, e): train.flipped(i, e) for i in range(N_TRAIN) for e in range(4)}
    assert any(draws.values()) and not all(draws.values())
    i, e = next(k for k, v in draws.items() if v)
    full = pixels(train.paths[i])
    a, b = train[(i, e)]
    torch.testing.assert_close(a, full[..., :SIZE].flip(-1))
    torch.testing.assert_close(b, full[..., SIZE:].flip(-1))
    # A plain index reads epoch 0; the test split never flips.
    torch.testing.assert_close(train[i][0], train[(i, 0)][0])
    assert not any(bundle.test.flipped(j, e) for j in range(N_TEST) for e in range(4))
    # Through the real loader: the sampler hands out (index, epoch) keys to this dataset.
    sampler = EpochBatchSampler(N_TRAIN, batch_size=N_TRAIN, shuffle=False)
    loader = make_loader(train, sampler)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        [(batch_a, _)] = list(loader)
        for j in range(N_TRAIN):
            want = pixels(train.paths[j])[..., :SIZE]
            torch.testing.assert_close(batch_a[j], want.flip(-1) if draws[j, epoch] else want)


def test_missing_folders_and_empty_split_name_the_path(pairs_copy, tmp_path):
    with pytest.raises(
        UserError,
        match=r"data folder .*nope does not exist; if it moved, pass --data NEW_PATH; a paired",
    ):
        build_paired(paired(tmp_path / "nope"))
    shutil.rmtree(pairs_copy / "test")
    with pytest.raises(UserError, match=r"missing folder .*data/test; .*train/ and test/"):
        build_paired(paired(pairs_copy))
    (pairs_copy / "test").mkdir()
    (pairs_copy / "test" / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match=r"data/test holds no images .*width = 2 x height"):
        build_paired(paired(pairs_copy))


def test_image_not_twice_as_wide_is_named(pairs_copy):
    square = pairs_copy / "train" / "square.png"
    Image.new("RGB", (SIZE, SIZE)).save(square)
    with pytest.raises(UserError, match=r"square\.png is 16x16 .*not twice as wide as high"):
        build_paired(paired(pairs_copy))


def test_unreadable_images_fail_or_are_skipped_and_counted(pairs_copy, caplog):
    (pairs_copy / "train" / "garbage.png").write_bytes(b"not a png at all")
    good = (pairs_copy / "test" / "000.png").read_bytes()
    (pairs_copy / "test" / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(BadImageError, match=r"cannot read image .*garbage\.png: .*--skip-bad"):
        build_paired(paired(pairs_copy))
    with caplog.at_level(logging.WARNING, logger="torchstyle.data.paired"):
        bundle = build_paired(paired(pairs_copy, skip_bad_images=True))
    assert (len(bundle.train), len(bundle.test)) == (N_TRAIN, N_TEST)
    assert "train: skipped 1 unreadable images" in caplog.text
    assert "test: skipped 1 unreadable images" in caplog.text
    # Without the flag a truncated file passes the header check and fails when read.
    (pairs_copy / "train" / "garbage.png").unlink()
    bundle = build_paired(paired(pairs_copy, image_size=SIZE))
    with pytest.raises(BadImageError, match=r"cannot read image .*truncated\.png"):
        bundle.test[N_TEST]


def test_skip_flag_with_nothing_readable_says_so(pairs_copy):
    for path in (pairs_copy / "test").iterdir():
        path.write_bytes(b"junk")
    with pytest.raises(UserError, match=r"every image in .*data/test is unreadable"):
        build_paired(paired(pairs_copy, skip_bad_images=True))


# ------------------------------------------------------------------------------- the model
@pytest.fixture
def batch():
    torch.manual_seed(0)
    a = torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    return a, -a


def grads(module: torch.nn.Module) -> list[bool]:
    return [p.grad is not None for p in module.parameters()]


def test_registered_with_the_engine_contract():
    cls = get_model_class("pix2pix")
    assert cls is Pix2Pix
    assert (cls.data_layout, cls.default_image_size, cls.monitor) == ("paired", 32, ("l1", "min"))


def test_each_phase_trains_only_its_own_network(batch):
    model = create_model("pix2pix", **TINY)
    step = StepModule(model)
    out = step(batch, "d")
    assert set(out) == {"loss", "loss_d_real", "loss_d_fake"}
    out["loss"].backward()
    assert all(math.isfinite(float(v.detach())) for v in out.values())
    assert all(grads(model.discriminator)) and not any(grads(model.generator))

    model.zero_grad(set_to_none=True)
    out = step(batch, "g")
    out["loss"].backward()
    assert all(math.isfinite(float(v.detach())) for v in out.values())
    assert all(grads(model.generator)) and not any(grads(model.discriminator))
    # Frozen only while phase "g" ran: phase "d" must train the discriminator next.
    assert all(p.requires_grad for p in model.discriminator.parameters())
    with pytest.raises(ValueError, match="unknown phase 'x'"):
        step(batch, "x")


def test_one_module_call_returns_the_whole_loss_and_its_parts(batch):
    """The super-network property: networks and losses in one module, one call per phase."""
    model = create_model("pix2pix", **TINY, lambda_l1=10.0)
    out = StepModule(model)(batch, "g")
    assert {"loss", "loss_gan", "loss_l1", "l1"} <= set(out)
    assert "loss_perceptual" not in out and model.perceptual_loss is None
    torch.testing.assert_close(out["loss"], out["loss_gan"] + out["loss_l1"])
    torch.testing.assert_close(out["loss_l1"], 10.0 * out["l1"])
    torch.testing.assert_close(out["l1"], (model(batch[0]) - batch[1]).abs().mean())


def test_optimizers_are_discriminator_then_generator_with_pix2pix_betas():
    model = create_model("pix2pix", **TINY)
    optimizers = model.configure_optimizers()
    assert list(optimizers) == ["d", "g"]
    for name, net in (("d", model.discriminator), ("g", model.generator)):
        group = optimizers[name].param_groups[0]
        assert isinstance(optimizers[name], torch.optim.Adam)
        assert (group["lr"], group["betas"]) == (2e-4, (0.5, 0.999))
        assert {id(p) for p in group["params"]} == {id(p) for p in net.parameters()}


def test_evaluation_gives_per_sample_l1_and_psnr(batch):
    model = create_model("pix2pix", **TINY).eval()
    a, b = batch
    out = StepModule(model)((a, b))
    assert set(out) == {"l1", "psnr", "l1_input"} and out["l1"].shape == out["psnr"].shape == (4,)
    fake = model(a)
    torch.testing.assert_close(out["l1"], (fake - b).abs().mean(dim=(1, 2, 3)))
    torch.testing.assert_close(out["l1_input"], (a - b).abs().mean(dim=(1, 2, 3)))
    mse = (((fake + 1) / 2 - (b + 1) / 2) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(out["psnr"], 10 * torch.log10(1 / mse))
    perfect = model.evaluation_step((a, model(a)))
    assert torch.all(perfect["l1"] == 0) and torch.all(perfect["psnr"] == 100.0)


def test_sample_grid_shows_inputs_outputs_targets_in_columns(batch):
    model = create_model("pix2pix", **TINY).eval()
    assert model.sample_images(64) is None  # nothing evaluated yet
    a, b = batch
    model.evaluation_step((a[:3], b[:3]))
    model.evaluation_step((a, b))  # fills up to 8 columns, in test order
    grid = model.sample_images(64)
    assert grid.shape == (24, 3, SIZE, SIZE)
    kept = torch.cat([a[:3], a])
    torch.testing.assert_close(grid[:7], kept)
    torch.testing.assert_close(grid[8:15], model(kept))
    torch.testing.assert_close(grid[16:23], -kept)
    assert torch.all(grid[[7, 15, 23]] == -1)  # the eighth column is blank
    assert grid.min() >= -1 and grid.max() <= 1
    assert model.sample_images(6).shape == (6, 3, SIZE, SIZE)  # two columns
    # The next evaluation (the engine calls on_evaluation_start) starts a new set of columns.
    model.on_evaluation_start()
    model.evaluation_step((b[:2], a[:2]))
    grid = model.sample_images(64)
    torch.testing.assert_close(grid[:2], b[:2])
    assert torch.all(grid[2:8] == -1)


def test_state_dict_round_trip_through_hparams(batch):
    model = create_model("pix2pix", **TINY, n_layers_d=2, gan_mode="vanilla")
    StepModule(model)(batch, "g")["loss"].backward()
    hparams = json.loads(json.dumps(model.hparams()))  # JSON-safe, as checkpoints need
    rebuilt = create_model("pix2pix", **hparams)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    model.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(batch[0]), model(batch[0]))
    torch.testing.assert_close(
        rebuilt.discriminator(torch.cat(batch, 1)), model.discriminator(torch.cat(batch, 1))
    )


def test_from_spec_and_argument_checks(caplog):
    from torchstyle.spec import DataSpec

    spec = DataSpec(channels=1, image_size=SIZE, num_classes=0)
    with caplog.at_level(logging.WARNING, logger="torchstyle.models.pix2pix"):
        model = create_model("pix2pix", spec, ngf=8, ndf=8, n_blocks=1)
    hp = model.hparams()
    assert (hp["in_channels"], hp["out_channels"], hp["image_size"]) == (1, 1, SIZE)
    # 16 px is too small for a 3-layer PatchGAN: capped, and said so.
    assert hp["n_layers_d"] == 2 and "n_layers_d=3 needs 32 px" in caplog.text
    assert model(torch.zeros(2, 1, SIZE, SIZE)).shape == (2, 1, SIZE, SIZE)
    with pytest.raises(UserError, match="multiple of 2 \\*\\* n_downsampling"):
        Pix2Pix(image_size=18)
    with pytest.raises(ArgumentError, match="unknown GAN mode"):
        Pix2Pix(**TINY, gan_mode="nope")
    with pytest.raises(UserError, match=r"vgg_weights file nope\.pt does not exist"):
        Pix2Pix(**TINY, perceptual_weight=1.0, vgg_weights="nope.pt")
    with pytest.raises(TypeError):
        Pix2Pix(3)  # keyword-only


def test_perceptual_loss_is_part_of_the_generator_loss(batch):
    with pytest.warns(UserWarning, match="RANDOM VGG19 weights"):
        model = create_model("pix2pix", **TINY, perceptual_weight=0.5)
    out = StepModule(model)(batch, "g")
    torch.testing.assert_close(
        out["loss"], out["loss_gan"] + out["loss_l1"] + out["loss_perceptual"]
    )
    assert out["loss_perceptual"] > 0
    out["loss"].backward()
    assert not any(grads(model.perceptual_loss)) and all(grads(model.generator))


# ------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_cli_trains_and_tests_a_paired_run(pairs_dir, tmp_path, cli):
    run_dir = tmp_path / "run"
    proc = cli(
        "train", "--model", "pix2pix", "--data", str(pairs_dir), "--epochs", "1",
        "--model-arg", "ngf=8", "--model-arg", "ndf=8", "--model-arg", "n_blocks=1",
        "--image-size", str(SIZE), "--batch-size", "4", "--run-dir", str(run_dir), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train/d/loss" in r]
    assert train, rows
    for r in train:
        for key in ("train/d/loss", "train/g/loss", "train/g/loss_l1", "train/g/loss_gan"):
            assert math.isfinite(r[key]), (key, r)
    test = [r for r in rows if "test/l1" in r]
    assert test and math.isfinite(test[-1]["test/l1"]) and math.isfinite(test[-1]["test/psnr"])
    with Image.open(run_dir / "samples" / "epoch_0001.png") as img:
        assert img.size[0] > 8 * SIZE and img.size[1] > 3 * SIZE  # 8 columns, 3 rows

    proc = cli("test", str(run_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["samples"] == N_TEST
    assert out["l1"] == pytest.approx(test[-1]["test/l1"], rel=1e-5)
