"""Decoder-only transformer blocks: causal self-attention, an MLP, and the pre-norm residual block.

Attention runs through ``F.scaled_dot_product_attention``, which picks a fused kernel (flash or
memory-efficient) where the device has one and a plain one elsewhere; the blocks never build
the ``(T, T)`` mask themselves. Blocks take layer *types* (``norm_layer=nn.LayerNorm``), as the
rest of ``torchstyle.nn`` does.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from torchstyle.nn.errors import require
from torchstyle.nn.layers import LayerType

__all__ = ["CausalSelfAttention", "TransformerBlock", "TransformerMLP"]


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        require(value > 0, f"{name} must be positive, got {value}")


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position ``t`` sees positions ``<= t`` only.

    Args:
        dim: Model width (channels of a token).
        num_heads: Attention heads; ``dim`` must divide evenly among them.
        dropout: Dropout on the attention weights and on the output (training only).
        bias: Whether the projections have biases.
    """

    def __init__(
        self, *, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True
    ) -> None:
        super().__init__()
        _check_positive(dim=dim, num_heads=num_heads)
        require(
            dim % num_heads == 0, f"dim {dim} does not split into {num_heads} heads; pick a divisor"
        )
        self.num_heads = num_heads
        self.dropout = dropout
        # One matmul yields queries, keys and values: three small ones would each launch a kernel.
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Attends causally.

        Args:
            x: Tokens of shape ``(B, T, C)``.

        Returns:
            Output of the same shape.
        """
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)  # each (B, T, C)
        # (B, T, C) -> (B, H, T, C/H): heads become a batch dimension for the kernel.
        q, k, v = (
            z.view(b, t, self.num_heads, c // self.num_heads).transpose(1, 2) for z in (q, k, v)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, H, T, C/H)
        y = y.transpose(1, 2).reshape(b, t, c)  # (B, T, C)
        out: Tensor = self.out_dropout(self.proj(y))
        return out


class TransformerMLP(nn.Module):
    """The position-wise feed-forward part: widen, activate, project back.

    Args:
        dim: Model width.
        hidden: Hidden width (GPT uses ``4 * dim``).
        activation: Activation layer type.
        dropout: Dropout on the output (training only).
        bias: Whether the linear layers have biases.
    """

    def __init__(
        self,
        *,
        dim: int,
        hidden: int,
        activation: LayerType = nn.GELU,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_positive(dim=dim, hidden=hidden)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden, bias=bias),
            activation(),
            nn.Linear(hidden, dim, bias=bias),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Maps ``(B, T, C)`` to ``(B, T, C)``."""
        out: Tensor = self.net(x)
        return out


class TransformerBlock(nn.Module):
    """Pre-norm residual block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    Normalising the branch inputs (not the sum) keeps the residual stream an identity path,
    which is what lets deep stacks train without warm-up tricks.

    Args:
        dim: Model width.
        num_heads: Attention heads.
        mlp_ratio: Hidden width of the MLP over ``dim``.
        dropout: Dropout inside attention and MLP (training only).
        norm_layer: Normalisation layer type, called with ``dim``.
        activation: Activation layer type of the MLP.
        bias: Whether linear layers have biases.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        norm_layer: LayerType = nn.LayerNorm,
        activation: LayerType = nn.GELU,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_positive(mlp_ratio=mlp_ratio)
        self.norm1 = norm_layer(dim)
        self.attn = CausalSelfAttention(dim=dim, num_heads=num_heads, dropout=dropout, bias=bias)
        self.norm2 = norm_layer(dim)
        self.mlp = TransformerMLP(
            dim=dim,
            hidden=max(1, round(dim * mlp_ratio)),
            activation=activation,
            dropout=dropout,
            bias=bias,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Maps tokens ``(B, T, C)`` to ``(B, T, C)``."""
        x = x + self.attn(self.norm1(x))
        out: Tensor = x + self.mlp(self.norm2(x))
        return out
