"""The transformer blocks: causality, agreement with attention written out, shapes, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchstyle.nn import CausalSelfAttention, TransformerBlock, TransformerMLP
from torchstyle.nn.errors import ArgumentError


def _reference_attention(layer: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Causal multi-head attention written out: scores, mask, softmax, weighted sum."""
    b, t, c = x.shape
    h = layer.num_heads
    q, k, v = layer.qkv(x).split(c, dim=2)
    q, k, v = (z.view(b, t, h, c // h).transpose(1, 2) for z in (q, k, v))  # (B, H, T, D)
    scores = q @ k.transpose(-1, -2) / math.sqrt(c // h)  # (B, H, T, T)
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
    y = (weights @ v).transpose(1, 2).reshape(b, t, c)
    return layer.proj(y)


def test_attention_matches_the_written_out_computation():
    torch.manual_seed(0)
    layer = CausalSelfAttention(dim=16, num_heads=4)
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(layer(x), _reference_attention(layer, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("module", ["attention", "block"])
def test_a_position_never_sees_the_future(module):
    torch.manual_seed(0)
    layer = (
        CausalSelfAttention(dim=16, num_heads=2)
        if module == "attention"
        else TransformerBlock(dim=16, num_heads=2)
    )
    x = torch.randn(1, 8, 16)
    changed = x.clone()
    changed[:, 5:] = torch.randn(1, 3, 16)  # only positions 5.. differ
    a, b = layer(x), layer(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_block_is_pre_norm_residual_and_trains():
    torch.manual_seed(0)
    block = TransformerBlock(dim=16, num_heads=2, mlp_ratio=2.0)
    assert block.mlp.net[0].out_features == 32
    x = torch.randn(3, 5, 16, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    # With both branches' output projections zeroed the block is the identity: residual paths.
    with torch.no_grad():
        block.attn.proj.weight.zero_()
        block.attn.proj.bias.zero_()
        block.mlp.net[2].weight.zero_()
        block.mlp.net[2].bias.zero_()
    torch.testing.assert_close(block(x), x)


def test_layer_types_are_passed_not_instances():
    block = TransformerBlock(dim=8, num_heads=2, norm_layer=nn.RMSNorm, activation=nn.ReLU)
    assert isinstance(block.norm1, nn.RMSNorm) and isinstance(block.norm2, nn.RMSNorm)
    assert block.norm1 is not block.norm2
    assert isinstance(block.mlp.net[1], nn.ReLU)
    mlp = TransformerMLP(dim=8, hidden=3)
    assert mlp(torch.randn(2, 4, 8)).shape == (2, 4, 8)


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    layer = CausalSelfAttention(dim=8, num_heads=2, dropout=0.5)
    x = torch.randn(2, 6, 8)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    assert not torch.allclose(layer(x), layer(x))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 10, "num_heads": 3}, "does not split into 3 heads"),
        ({"dim": 0, "num_heads": 1}, "dim must be positive"),
        ({"dim": 8, "num_heads": 0}, "num_heads must be positive"),
    ],
)
def test_bad_shapes_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        CausalSelfAttention(**kwargs)
