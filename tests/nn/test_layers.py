"""Numerical behaviour of the layers in torchstyle.nn.layers."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import torchstyle.nn as tnn
from torchstyle.nn import (
    AdaptiveInstanceNorm,
    ConvBlock,
    ResnetBlock,
    SelfAttention,
    SNConv2d,
    SNLinear,
)
from torchstyle.nn.errors import ArgumentError


def _layer_types(block: ConvBlock) -> list[type[nn.Module]]:
    return [type(m) for m in block.block]


# ---------------------------------------------------------------- ConvBlock


def test_convblock_default_order_is_the_guides_conv_relu_batchnorm() -> None:
    block = ConvBlock(in_channels=3, out_channels=8)
    assert _layer_types(block) == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    assert isinstance(block.block, nn.Sequential)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("cna", [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]),
        ("nac", [nn.BatchNorm2d, nn.ReLU, nn.Conv2d]),
        (("conv", "act"), [nn.Conv2d, nn.ReLU]),
        (("norm", "conv", "activation"), [nn.BatchNorm2d, nn.Conv2d, nn.ReLU]),
    ],
)
def test_convblock_order(order, expected) -> None:
    block = ConvBlock(in_channels=3, out_channels=8, order=order)
    assert _layer_types(block) == expected


def test_convblock_norm_sees_the_channels_at_its_position() -> None:
    before = ConvBlock(in_channels=3, out_channels=8, order="nac")
    after = ConvBlock(in_channels=3, out_channels=8, order="cna")
    assert before.block[0].num_features == 3
    assert after.block[1].num_features == 8
    # And it runs: a norm with the wrong size would raise here.
    assert before(torch.randn(2, 3, 4, 4)).shape == (2, 8, 4, 4)


@pytest.mark.parametrize("order", ["cc", "nna", "an", "cxa", ("conv", "pool")])
def test_convblock_rejects_bad_orders(order) -> None:
    with pytest.raises(ArgumentError, match="order"):
        ConvBlock(in_channels=3, out_channels=8, order=order)


def test_convblock_none_layers_are_skipped_and_partial_types_work() -> None:
    block = ConvBlock(
        in_channels=3,
        out_channels=4,
        norm_layer=None,
        activation=functools.partial(nn.LeakyReLU, 0.2),
    )
    assert _layer_types(block) == [nn.Conv2d, nn.LeakyReLU]
    assert block.block[1].negative_slope == 0.2


def test_convblock_bias_is_dropped_only_when_a_norm_directly_follows_the_conv() -> None:
    assert ConvBlock(in_channels=3, out_channels=4, order="cna").block[0].bias is None
    assert ConvBlock(in_channels=3, out_channels=4, order="can").block[0].bias is not None
    assert (
        ConvBlock(in_channels=3, out_channels=4, norm_layer=None, order="cna").block[0].bias
        is not None
    )
    assert (
        ConvBlock(in_channels=3, out_channels=4, order="cna", bias=True).block[0].bias is not None
    )


def test_convblock_default_padding_keeps_the_size_and_stride_halves_it() -> None:
    x = torch.randn(1, 3, 12, 12)
    assert ConvBlock(in_channels=3, out_channels=4, kernel_size=5)(x).shape == (1, 4, 12, 12)
    assert ConvBlock(in_channels=3, out_channels=4, stride=2)(x).shape == (1, 4, 6, 6)


def test_convblock_padding_mode_changes_the_border() -> None:
    torch.manual_seed(0)
    zeros = ConvBlock(in_channels=1, out_channels=1, norm_layer=None, activation=None)
    reflect = ConvBlock(
        in_channels=1, out_channels=1, norm_layer=None, activation=None, padding_mode="reflect"
    )
    reflect.load_state_dict(zeros.state_dict())
    x = torch.randn(1, 1, 6, 6)
    a, b = zeros(x), reflect(x)
    torch.testing.assert_close(a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1])
    assert not torch.allclose(a[..., 0, :], b[..., 0, :])


def test_convblock_transpose_upsamples() -> None:
    block = ConvBlock(
        in_channels=4, out_channels=2, kernel_size=4, stride=2, padding=1, transpose=True
    )
    assert isinstance(block.block[0], nn.ConvTranspose2d)
    assert block(torch.randn(1, 4, 5, 7)).shape == (1, 2, 10, 14)
    k3 = ConvBlock(in_channels=4, out_channels=2, stride=2, transpose=True, output_padding=1)
    assert k3(torch.randn(1, 4, 5, 7)).shape == (1, 2, 10, 14)


def test_convblock_transpose_rejects_non_zero_padding_mode() -> None:
    with pytest.raises(ArgumentError, match="zeros"):
        ConvBlock(in_channels=4, out_channels=2, transpose=True, padding_mode="reflect")


def test_convblock_spectral_parametrizes_the_conv_weight() -> None:
    block = ConvBlock(in_channels=3, out_channels=4, spectral=True)
    assert parametrize.is_parametrized(block.block[0], "weight")
    assert not parametrize.is_parametrized(ConvBlock(in_channels=3, out_channels=4).block[0])


# ---------------------------------------------------------------- ResnetBlock


@pytest.mark.parametrize("padding_type", ["reflect", "replicate", "zero"])
def test_resnetblock_output_is_input_plus_residual_branch(padding_type) -> None:
    torch.manual_seed(0)
    block = ResnetBlock(dim=6, padding_type=padding_type).eval()
    x = torch.randn(2, 6, 5, 5)
    branch = block.conv_block(x)
    out = block(x)
    torch.testing.assert_close(out, x + branch)
    # Neither term alone: the branch is not ~0 and the skip is really there.
    assert branch.abs().mean() > 0.1
    assert not torch.allclose(out, branch)


def test_resnetblock_padding_types_build_the_right_layers() -> None:
    def pads(padding_type: str) -> list[type[nn.Module]]:
        block = ResnetBlock(dim=4, padding_type=padding_type)
        return [type(m) for m in block.conv_block if "Pad" in type(m).__name__]

    assert pads("reflect") == [nn.ReflectionPad2d, nn.ReflectionPad2d]
    assert pads("replicate") == [nn.ReplicationPad2d, nn.ReplicationPad2d]
    assert pads("zero") == []
    zero_convs = [
        m for m in ResnetBlock(dim=4, padding_type="zero").conv_block if isinstance(m, nn.Conv2d)
    ]
    assert all(c.padding == (1, 1) for c in zero_convs)


def test_resnetblock_padding_differs_at_the_border() -> None:
    torch.manual_seed(0)
    reflect = ResnetBlock(dim=3, padding_type="reflect", norm_layer=None).eval()
    zero = ResnetBlock(dim=3, padding_type="zero", norm_layer=None).eval()
    # The pad layers shift the Sequential indices, so copy the convolutions pairwise.
    convs = [[m for m in b.conv_block if isinstance(m, nn.Conv2d)] for b in (reflect, zero)]
    for source, target in zip(*convs, strict=True):
        target.load_state_dict(source.state_dict())
    x = torch.randn(1, 3, 8, 8)
    assert not torch.allclose(reflect(x), zero(x))


def test_resnetblock_rejects_unknown_padding() -> None:
    with pytest.raises(ArgumentError, match="padding_type"):
        ResnetBlock(dim=4, padding_type="circular")


def test_resnetblock_dropout_and_bias_options() -> None:
    with_dropout = ResnetBlock(dim=4, use_dropout=True)
    assert any(isinstance(m, nn.Dropout) for m in with_dropout.conv_block)
    assert not any(isinstance(m, nn.Dropout) for m in ResnetBlock(dim=4).conv_block)

    def conv_biases(block: ResnetBlock) -> list[bool]:
        return [m.bias is not None for m in block.conv_block if isinstance(m, nn.Conv2d)]

    # BatchNorm has its own shift; affine-free InstanceNorm does not, so the conv keeps a bias.
    assert conv_biases(ResnetBlock(dim=4, norm_layer=nn.BatchNorm2d)) == [False, False]
    assert conv_biases(ResnetBlock(dim=4, norm_layer=nn.InstanceNorm2d)) == [True, True]
    assert conv_biases(ResnetBlock(dim=4, use_bias=True)) == [True, True]


# ---------------------------------------------------------------- SelfAttention


def _attention_reference(layer: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """SAGAN attention written with explicit einsums over positions."""
    b, c, h, w = x.shape
    q = layer.query(x).reshape(b, -1, h * w)  # (B, C', N)
    k = layer.key(x).reshape(b, -1, h * w)  # (B, C', N)
    v = layer.value(x).reshape(b, c, h * w)  # (B, C, N)
    energy = torch.einsum("bki,bkj->bij", q, k)  # (B, N, N)
    attention = energy.softmax(dim=-1)
    out = torch.einsum("bcj,bij->bci", v, attention)  # (B, C, N)
    return layer.gamma * out.reshape(b, c, h, w) + x  # (B, C, H, W)


def test_selfattention_starts_as_the_identity() -> None:
    torch.manual_seed(0)
    layer = SelfAttention(in_channels=16)
    assert layer.gamma.item() == 0.0
    x = torch.randn(2, 16, 4, 5)
    torch.testing.assert_close(layer(x), x, rtol=0, atol=0)


def test_selfattention_with_nonzero_gamma_matches_the_reference() -> None:
    torch.manual_seed(0)
    layer = SelfAttention(in_channels=16)
    with torch.no_grad():
        layer.gamma.fill_(0.5)
    x = torch.randn(2, 16, 4, 5)
    out = layer(x)
    assert (out - x).abs().max() > 1e-3
    torch.testing.assert_close(out, _attention_reference(layer, x))


def test_selfattention_channel_reduction() -> None:
    assert SelfAttention(in_channels=64).query.out_channels == 8
    assert SelfAttention(in_channels=64, reduction=4).key.out_channels == 16
    assert SelfAttention(in_channels=4).query.out_channels == 1  # never zero channels


def test_selfattention_gamma_learns() -> None:
    torch.manual_seed(0)
    layer = SelfAttention(in_channels=8)
    x = torch.randn(2, 8, 3, 3)
    layer(x).square().sum().backward()
    assert layer.gamma.grad is not None and layer.gamma.grad.abs() > 0


# ---------------------------------------------------------------- AdaIN


def test_adain_output_carries_the_style_statistics() -> None:
    torch.manual_seed(0)
    content = torch.randn(3, 4, 8, 8) * 3 + 2
    style_mean = torch.tensor([-1.0, 0.0, 2.0, 5.0]).view(1, 4, 1, 1)
    style_std = torch.tensor([0.5, 1.0, 2.0, 4.0]).view(1, 4, 1, 1)
    style = torch.randn(3, 4, 6, 10) * style_std + style_mean
    out = AdaptiveInstanceNorm(eps=1e-8)(content, style)

    assert out.shape == content.shape
    torch.testing.assert_close(out.mean(dim=(2, 3)), style.mean(dim=(2, 3)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        out.std(dim=(2, 3), correction=0), style.std(dim=(2, 3), correction=0), atol=1e-4, rtol=1e-4
    )

    # The spatial pattern is the content's: the normalised maps agree.
    def normalise(t: torch.Tensor) -> torch.Tensor:
        return (t - t.mean(dim=(2, 3), keepdim=True)) / t.std(dim=(2, 3), keepdim=True)

    torch.testing.assert_close(normalise(out), normalise(content), atol=1e-4, rtol=1e-4)


def test_adain_eps_guards_flat_channels() -> None:
    content = torch.ones(1, 2, 4, 4)
    style = torch.randn(1, 2, 4, 4)
    out = AdaptiveInstanceNorm()(content, style)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.mean(dim=(2, 3)), style.mean(dim=(2, 3)))


def test_adain_rejects_mismatched_channels() -> None:
    with pytest.raises(ArgumentError, match="channels"):
        AdaptiveInstanceNorm()(torch.randn(1, 3, 4, 4), torch.randn(1, 4, 4, 4))


# ---------------------------------------------------------------- spectral norm


def test_spectral_norm_is_torchs_own() -> None:
    assert tnn.spectral_norm is torch.nn.utils.parametrizations.spectral_norm


@pytest.mark.parametrize(
    ("build", "x"),
    [
        (lambda: SNConv2d(4, 6, 3, padding=1), torch.randn(2, 4, 5, 5)),
        (lambda: SNLinear(10, 7), torch.randn(3, 10)),
    ],
    ids=["SNConv2d", "SNLinear"],
)
def test_spectral_layers_have_unit_spectral_norm(build, x) -> None:
    torch.manual_seed(0)
    layer = build()
    assert isinstance(layer, nn.Conv2d | nn.Linear)
    raw = layer.parametrizations.weight.original
    with torch.no_grad():
        raw.mul_(3.0)  # make sure the stored weight is far from unit norm
    raw_sigma = torch.linalg.matrix_norm(raw.detach().flatten(1), ord=2)
    assert abs(raw_sigma.item() - 1.0) > 0.5, "raw weight already has unit norm; test is moot"
    layer.train()
    with torch.no_grad():
        for _ in range(30):  # power iterations converge over training-mode passes
            layer(x)
    sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=1e-3)
