"""Behaviour of the networks in torchstyle.nn.networks (shapes, options, weights loading)."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from torchstyle.nn import (
    VGG19_CACHE_FILENAME,
    ConvBlock,
    DCGANDiscriminator,
    DCGANGenerator,
    PatchGANDiscriminator,
    ResnetBlock,
    ResNetClassifier,
    ResnetGenerator,
    SimpleNetwork,
    Vgg19Features,
    count_parameters,
)
from torchstyle.nn.errors import ArgumentError
from torchstyle.nn.networks import _vgg19_features_layers

# ---------------------------------------------------------------- SimpleNetwork


def test_simple_network_is_a_convblock_then_resnet_blocks() -> None:
    net = SimpleNetwork(in_channels=3, dim=8, num_resnet_blocks=3)
    assert isinstance(net.net, nn.Sequential)
    assert [type(m) for m in net.net] == [ConvBlock, ResnetBlock, ResnetBlock, ResnetBlock]
    assert net(torch.randn(2, 3, 6, 6)).shape == (2, 8, 6, 6)


# ---------------------------------------------------------------- ResnetGenerator


@pytest.mark.parametrize("size", [16, 32])
def test_resnet_generator_keeps_the_size_and_outputs_tanh_range(size: int) -> None:
    torch.manual_seed(0)
    gen = ResnetGenerator(in_channels=3, out_channels=1, ngf=8, n_blocks=2)
    out = gen(torch.randn(2, 3, size, size) * 10)
    assert out.shape == (2, 1, size, size)
    assert out.abs().max() <= 1.0
    assert out.std() > 0.01


def test_resnet_generator_structure_follows_its_arguments() -> None:
    gen = ResnetGenerator(in_channels=3, out_channels=3, ngf=4, n_downsampling=3, n_blocks=5)
    assert sum(isinstance(m, ResnetBlock) for m in gen.modules()) == 5
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in gen.modules()) == 3
    widest = max(m.out_channels for m in gen.modules() if isinstance(m, nn.Conv2d))
    assert widest == 4 * 2**3
    assert gen(torch.randn(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_resnet_generator_rejects_sizes_it_cannot_restore() -> None:
    gen = ResnetGenerator(in_channels=3, out_channels=3, ngf=4, n_blocks=1)
    with pytest.raises(ArgumentError, match="divisible"):
        gen(torch.randn(1, 3, 18, 18))


# ---------------------------------------------------------------- DCGAN


@pytest.mark.parametrize("image_size", [32, 64])
def test_dcgan_generator_accepts_flat_and_4d_noise(image_size: int) -> None:
    torch.manual_seed(0)
    gen = DCGANGenerator(latent_dim=10, out_channels=1, image_size=image_size, base_width=4).eval()
    z = torch.randn(3, 10)
    flat = gen(z)
    assert flat.shape == (3, 1, image_size, image_size)
    torch.testing.assert_close(flat, gen(z.view(3, 10, 1, 1)))
    assert flat.abs().max() <= 1.0
    # Different noise, different images.
    assert not torch.allclose(flat[0], flat[1])


@pytest.mark.parametrize(("image_size", "hidden"), [(32, 3), (64, 4)])
def test_dcgan_layers_follow_the_paper(image_size: int, hidden: int) -> None:
    gen = DCGANGenerator(latent_dim=8, image_size=image_size, base_width=4)
    types = [type(m) for m in gen.modules()]
    # Generator: transposed convolutions only, BatchNorm + ReLU on every hidden layer, tanh out.
    assert nn.Conv2d not in types
    assert types.count(nn.ConvTranspose2d) == hidden + 1
    assert types.count(nn.BatchNorm2d) == types.count(nn.ReLU) == hidden
    assert isinstance(list(gen.modules())[-1], nn.Tanh)
    widths = [m.out_channels for m in gen.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [4 * 2**i for i in reversed(range(hidden))] + [3]

    disc = DCGANDiscriminator(image_size=image_size, base_width=4)
    relus = [m for m in disc.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(relus) == hidden and all(r.negative_slope == 0.2 for r in relus)
    # No BatchNorm on the first layer, BatchNorm on every later hidden layer.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in disc.modules()) == hidden - 1
    assert isinstance(disc.net[0].block[1], nn.LeakyReLU)


def test_dcgan_generator_rejects_wrong_noise() -> None:
    gen = DCGANGenerator(latent_dim=10, image_size=32, base_width=4)
    with pytest.raises(ArgumentError, match="noise"):
        gen(torch.randn(3, 11))


@pytest.mark.parametrize("cls", [DCGANGenerator, DCGANDiscriminator])
@pytest.mark.parametrize("image_size", [16, 48, 128])
def test_dcgan_rejects_unsupported_image_sizes(cls, image_size: int) -> None:
    with pytest.raises(ArgumentError, match="image_size must be 32 or 64"):
        cls(image_size=image_size, base_width=4)


@pytest.mark.parametrize("image_size", [32, 64])
def test_dcgan_discriminator_returns_one_logit_per_image(image_size: int) -> None:
    torch.manual_seed(0)
    disc = DCGANDiscriminator(in_channels=3, image_size=image_size, base_width=4).eval()
    x = torch.randn(5, 3, image_size, image_size)
    logits = disc(x)
    assert logits.shape == (5,)
    # Each logit depends only on its own image (eval mode: no batch statistics).
    torch.testing.assert_close(disc(x[2:3]), logits[2:3])


def test_dcgan_discriminator_spectral_replaces_batchnorm() -> None:
    plain = DCGANDiscriminator(image_size=32, base_width=4)
    spectral = DCGANDiscriminator(image_size=32, base_width=4, spectral=True)
    convs = [m for m in spectral.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(c, "weight") for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in spectral.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())


def test_dcgan_rejects_wrong_input_size() -> None:
    with pytest.raises(ArgumentError, match="32x32"):
        DCGANDiscriminator(image_size=32, base_width=4)(torch.randn(1, 3, 64, 64))


# ---------------------------------------------------------------- PatchGAN


@pytest.mark.parametrize(("n_layers", "side"), [(3, 2), (2, 6), (1, 14)])
def test_patchgan_gives_a_logit_map_on_32px(n_layers: int, side: int) -> None:
    disc = PatchGANDiscriminator(in_channels=3, ndf=4, n_layers=n_layers)
    assert disc(torch.randn(2, 3, 32, 32)).shape == (2, 1, side, side)


def test_patchgan_is_local() -> None:
    torch.manual_seed(0)
    disc = PatchGANDiscriminator(in_channels=1, ndf=4, n_layers=1, norm_layer=None).eval()
    x = torch.randn(1, 1, 32, 32)
    y = x.clone()
    y[..., :4, :4] += 5.0  # change only the top-left corner
    a, b = disc(x), disc(y)
    assert not torch.allclose(a[..., 0, 0], b[..., 0, 0])
    torch.testing.assert_close(a[..., -1, -1], b[..., -1, -1])


def test_patchgan_rejects_too_small_inputs_with_a_message() -> None:
    with pytest.raises(ArgumentError, match="too small"):
        PatchGANDiscriminator(in_channels=3, ndf=4, n_layers=3)(torch.randn(1, 3, 16, 16))


def test_patchgan_options() -> None:
    disc = PatchGANDiscriminator(in_channels=3, ndf=4, norm_layer=nn.InstanceNorm2d, spectral=True)
    assert any(isinstance(m, nn.InstanceNorm2d) for m in disc.modules())
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(parametrize.is_parametrized(c) for c in convs)
    assert max(c.out_channels for c in convs) == 4 * 8


# ---------------------------------------------------------------- Vgg19Features


def test_vgg_slices_have_the_guides_layers_and_shapes(vgg_features: Vgg19Features) -> None:
    assert [int(k) for k, _ in vgg_features.slice1.named_children()] == list(range(7))
    assert [int(k) for k, _ in vgg_features.slice2.named_children()] == list(range(7, 21))
    assert [int(k) for k, _ in vgg_features.slice3.named_children()] == list(range(21, 30))
    outputs = vgg_features(torch.randn(2, 3, 32, 32))
    assert isinstance(outputs, list)
    # relu2_1 at H/2, relu4_1 at H/8, relu5_1 at H/16.
    assert [tuple(o.shape) for o in outputs] == [(2, 128, 16, 16), (2, 512, 4, 4), (2, 512, 2, 2)]
    assert all((o >= 0).all() for o in outputs)  # every slice ends in a ReLU


def test_vgg_is_frozen_by_default(vgg_features: Vgg19Features) -> None:
    params = list(vgg_features.parameters())
    assert len(params) == 2 * 13  # conv1_1 .. conv5_1: 2 + 2 + 4 + 4 + 1 convolutions
    assert not any(p.requires_grad for p in params)


def test_vgg_can_be_trainable(no_vgg_cache) -> None:
    with pytest.warns(UserWarning):
        vgg = Vgg19Features(requires_grad=True)
    assert all(p.requires_grad for p in vgg.parameters())


def test_vgg_matches_torchvision_features_and_torchvision_init(
    vgg_features: Vgg19Features,
) -> None:
    conv = vgg_features.slice1[0]
    assert isinstance(conv, nn.Conv2d) and (conv.in_channels, conv.out_channels) == (3, 64)
    assert torch.count_nonzero(conv.bias) == 0
    # torchvision initialises VGG convolutions with Kaiming normal, fan_out mode.
    expected_std = (2.0 / (64 * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.15)


def _random_features_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    features = _vgg19_features_layers()
    with torch.no_grad():
        for p in features.parameters():
            p.normal_(0.0, 0.01)
    return features.state_dict()


@pytest.mark.parametrize("layout", ["features-only", "full-vgg19"])
def test_vgg_loads_a_weights_file(tmp_path, no_vgg_cache, layout: str) -> None:
    state = _random_features_state()
    if layout == "full-vgg19":
        # A torchvision vgg19 state dict: 'features.' prefix plus a classifier. The classifier
        # is ignored by the loader, so small stand-ins keep the file (and the test) small.
        state = {f"features.{k}": v for k, v in state.items()}
        state["classifier.0.weight"] = torch.zeros(4, 8)
        state["classifier.0.bias"] = torch.zeros(4)
    path = tmp_path / "vgg.pth"
    torch.save(state, path)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading a file must not warn
        vgg = Vgg19Features(weights=path)

    prefix = "features." if layout == "full-vgg19" else ""
    torch.testing.assert_close(
        getattr(vgg.slice1, "0").weight, state[f"{prefix}0.weight"], rtol=0, atol=0
    )
    torch.testing.assert_close(
        getattr(vgg.slice2, "19").bias, state[f"{prefix}19.bias"], rtol=0, atol=0
    )
    torch.testing.assert_close(
        getattr(vgg.slice3, "28").weight, state[f"{prefix}28.weight"], rtol=0, atol=0
    )
    assert vgg.weights_source == str(path)
    assert not any(p.requires_grad for p in vgg.parameters())


def test_vgg_loads_torchvisions_cache_file(no_vgg_cache) -> None:
    state = _random_features_state()
    no_vgg_cache.mkdir(parents=True)
    torch.save(state, no_vgg_cache / VGG19_CACHE_FILENAME)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vgg = Vgg19Features()
    assert vgg.weights_source == str(no_vgg_cache / VGG19_CACHE_FILENAME)
    torch.testing.assert_close(getattr(vgg.slice3, "21").weight, state["21.weight"], rtol=0, atol=0)


def test_vgg_warns_loudly_without_weights(no_vgg_cache, caplog) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="torchstyle.nn.networks"),
        pytest.warns(UserWarning, match="RANDOM") as record,
    ):
        vgg = Vgg19Features()
    message = str(record[0].message)
    assert VGG19_CACHE_FILENAME in message and "weights=" in message
    assert str(no_vgg_cache) in message
    assert any("RANDOM" in r.getMessage() for r in caplog.records)
    assert vgg.weights_source is None


def test_vgg_rejects_missing_and_malformed_files(tmp_path, no_vgg_cache) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Vgg19Features(weights=tmp_path / "nope.pth")

    bad = tmp_path / "bad.pth"
    torch.save({"backbone.conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="unexpected key"):
        Vgg19Features(weights=bad)

    partial = tmp_path / "partial.pth"
    state = _random_features_state()
    del state["28.weight"]
    torch.save(state, partial)
    with pytest.raises(RuntimeError, match=r"28\.weight"):
        Vgg19Features(weights=partial)


# ---------------------------------------------------------------- ResNetClassifier


def test_classifier_is_cheap_on_digits() -> None:
    net = ResNetClassifier(in_channels=1, num_classes=10, image_size=8, width=32)
    n = count_parameters(net)
    assert 10_000 <= n < 100_000, n
    assert net(torch.randn(4, 1, 8, 8)).shape == (4, 10)


@pytest.mark.parametrize("image_size", [7, 65])
def test_classifier_rejects_image_sizes_out_of_range(image_size: int) -> None:
    with pytest.raises(ArgumentError, match="image_size"):
        ResNetClassifier(image_size=image_size)


def test_classifier_rejects_too_many_stages_for_the_image() -> None:
    with pytest.raises(ArgumentError, match="stages"):
        ResNetClassifier(in_channels=1, image_size=8, num_blocks=(1, 1, 1, 1))


def test_classifier_stages_downsample_and_dropout_is_used() -> None:
    net = ResNetClassifier(image_size=32, width=8, num_blocks=(1, 2, 1), dropout=0.3)
    assert net.features(torch.randn(1, 3, 32, 32)).shape == (1, 8, 8, 8)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in net.modules())


def test_classifier_can_fit_a_small_batch() -> None:
    torch.manual_seed(0)
    net = ResNetClassifier(in_channels=1, num_classes=4, image_size=8, width=16)
    x = torch.randn(16, 1, 8, 8)
    y = torch.arange(16) % 4
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x).argmax(dim=1) == y).float().mean().item()
    assert accuracy == 1.0
