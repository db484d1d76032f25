"""init_weights, one_hot, freeze/unfreeze and count_parameters."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from torchstyle.nn import (
    INIT_TYPES,
    SNConv2d,
    count_parameters,
    freeze,
    init_weights,
    one_hot,
    unfreeze,
)
from torchstyle.nn.errors import ArgumentError

# ---------------------------------------------------------------- init_weights


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(32, 64, 3),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4),
        nn.InstanceNorm2d(32, affine=True),
        nn.Flatten(),
        nn.Linear(128, 256),
    )


@pytest.mark.parametrize(
    ("init_type", "expected_std"),
    [
        ("normal", lambda fan_in, fan_out, gain: gain),
        ("xavier", lambda fan_in, fan_out, gain: gain * math.sqrt(2.0 / (fan_in + fan_out))),
        ("kaiming", lambda fan_in, fan_out, gain: math.sqrt(2.0 / fan_in)),
    ],
)
def test_init_weights_scales_kernels(init_type: str, expected_std) -> None:
    torch.manual_seed(0)
    gain = 0.5
    net = init_weights(_net(), init_type, gain=gain)
    conv = net[0]
    fan_in, fan_out = 32 * 9, 64 * 9
    assert conv.weight.std().item() == pytest.approx(expected_std(fan_in, fan_out, gain), rel=0.05)
    assert conv.weight.mean().abs().item() < 0.05 * expected_std(fan_in, fan_out, gain) + 1e-3


def test_init_weights_orthogonal_rows() -> None:
    torch.manual_seed(0)
    linear = init_weights(nn.Linear(32, 16), "orthogonal", gain=2.0)
    torch.testing.assert_close(linear.weight @ linear.weight.T, 4.0 * torch.eye(16))


@pytest.mark.parametrize("init_type", INIT_TYPES)
def test_init_weights_zeroes_biases_and_centres_norm_scales(init_type: str) -> None:
    torch.manual_seed(0)
    net = _net()
    for m in net:
        for p in m.parameters():
            nn.init.constant_(p, 5.0)
    returned = init_weights(net, init_type, gain=0.02)
    assert returned is net
    for m in (net[0], net[3], net[6]):
        assert torch.count_nonzero(m.bias) == 0
        assert (m.weight != 5.0).all()
    for norm in (net[1], net[4]):
        assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.02)
        assert 0.0 < norm.weight.std().item() < 0.05
        assert torch.count_nonzero(norm.bias) == 0


def test_init_weights_reaches_spectral_norm_originals() -> None:
    torch.manual_seed(0)
    conv = SNConv2d(32, 64, 3)
    init_weights(conv, "normal", gain=0.3)
    original = conv.parametrizations.weight.original
    assert original.std().item() == pytest.approx(0.3, rel=0.05)


def test_init_weights_leaves_other_layers_alone() -> None:
    embedding = nn.Embedding(10, 4)
    before = embedding.weight.clone()
    init_weights(nn.Sequential(embedding, nn.LayerNorm(4, elementwise_affine=False)))
    torch.testing.assert_close(embedding.weight, before)


def test_init_weights_rejects_unknown_type() -> None:
    with pytest.raises(ArgumentError, match="unknown init_type"):
        init_weights(nn.Linear(2, 2), "uniform")


# ---------------------------------------------------------------- one_hot


def test_one_hot_label_map() -> None:
    labels = torch.tensor([[[0, 2], [1, 2]]])  # (1, 2, 2)
    out = one_hot(labels, 3)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.float32
    expected = torch.tensor(
        [[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]]]
    )
    torch.testing.assert_close(out, expected)


def test_one_hot_class_vector_matches_torch() -> None:
    labels = torch.tensor([3, 0, 1, 3])
    torch.testing.assert_close(
        one_hot(labels, 5), nn.functional.one_hot(labels, 5).float(), rtol=0, atol=0
    )


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    height=st.integers(1, 5),
    width=st.integers(1, 5),
    num_classes=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_one_hot_roundtrips_through_argmax(batch, height, width, num_classes, seed) -> None:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (batch, height, width), generator=generator)
    out = one_hot(labels, num_classes)
    assert out.shape == (batch, num_classes, height, width)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(batch, height, width))
    assert torch.equal(out.argmax(dim=1), labels)


def test_one_hot_rejects_float_and_out_of_range_labels() -> None:
    with pytest.raises(ArgumentError, match="integer"):
        one_hot(torch.zeros(2, 4, 4), 3)
    with pytest.raises(RuntimeError):
        one_hot(torch.tensor([0, 3]), 3)


# ---------------------------------------------------------------- freeze / unfreeze


def _bn_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))


def test_freeze_stops_gradients_and_statistics() -> None:
    torch.manual_seed(0)
    net = freeze(_bn_net())
    assert not any(p.requires_grad for p in net.parameters())
    assert not net.training and not any(m.training for m in net.modules())
    stats = net[1].running_mean.clone()
    x = torch.randn(8, 4) + 3.0
    out = net(x)
    assert not out.requires_grad
    torch.testing.assert_close(net[1].running_mean, stats)  # eval: no statistics update
    torch.testing.assert_close(net(x), out)  # eval: dropout is off, so it is deterministic


def test_freeze_can_leave_the_mode_alone() -> None:
    net = freeze(_bn_net().train(), eval_mode=False)
    assert net.training
    assert not any(p.requires_grad for p in net.parameters())


def test_unfreeze_restores_gradients_and_training_mode() -> None:
    net = unfreeze(freeze(_bn_net()))
    assert all(p.requires_grad for p in net.parameters())
    assert net.training and net[1].training
    net = unfreeze(freeze(_bn_net()), train_mode=False)
    assert not net.training and all(p.requires_grad for p in net.parameters())


def test_frozen_part_gets_no_gradient_but_the_rest_does() -> None:
    backbone, head = nn.Linear(4, 4), nn.Linear(4, 1)
    freeze(backbone)
    head(backbone(torch.randn(3, 4))).sum().backward()
    assert backbone.weight.grad is None
    assert head.weight.grad is not None


# ---------------------------------------------------------------- count_parameters


def test_count_parameters() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))  # 3*4 + 4 and 4 + 4; buffers excluded
    assert count_parameters(net) == 16 + 8
    freeze(net[0])
    assert count_parameters(net, trainable_only=True) == 8
    assert count_parameters(net) == 24


def test_count_parameters_counts_shared_weights_once() -> None:
    shared = nn.Linear(5, 5)
    assert count_parameters(nn.Sequential(shared, nn.ReLU(), shared)) == 30
